"""The embedded node: its directory, locks, wallet and genesis block, and the
parts it joins: endorsement, the commit queue and the reads."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from chaincode import contract
from chaincode.merkle import canonical_json
from chaincode.stub import Invoke
from ledger import crypto
from ledger.committer import Committer, writer_lock
from ledger.embedded.committing import CommitQueue
from ledger.embedded.endorse import EmbeddedStub, Endorser, endorsement
from ledger.embedded.reads import (
    read_block,
    read_events,
    read_history,
    read_transaction,
)
from ledger.msp import Identity, Membership, Wallet
from ledger.protocol import (
    CommittedEvent,
    CommittedTransaction,
    KeyVersion,
    LedgerError,
    Position,
    Receipt,
    VerifyReport,
)
from ledger.store import Store
from ledger.verify import verify_chain
from network.consortium import load_consortium


class EmbeddedNode:
    """One embedded ledger: storage, membership, endorsement and the committer."""

    def __init__(self, data_dir: str | Path, *, dsn: str | None = None,
                 block_max_txs: int = 500, block_timeout: float = 0.002,
                 backend: crypto.Backend | None = None,
                 read_only: bool = False, committer: str = "thread",
                 invoke: Invoke = contract.invoke) -> None:
        """Open (creating if needed) the ledger in ``data_dir``, or in PostgreSQL
        at ``dsn``. ``committer="process"`` commits in a process of its own, so
        that endorsement and commit run on different cores. ``invoke`` is the
        chaincode (as the chaincode server takes it)."""
        self.invoke = invoke
        if committer not in ("thread", "process"):
            raise ValueError(f"committer must be 'thread' or 'process', not "
                             f"{committer!r}")
        self.data_dir = Path(data_dir)
        self.backend = backend or crypto.get_backend()
        self.wallet = Wallet(self.data_dir)
        self.read_only = read_only
        self._node_identity: Identity | None = None
        self._lock_file = None
        self._writer_lock: Any = None
        if not read_only:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._lock_file = self._acquire_lock()
            try:
                self._writer_lock = writer_lock(self.data_dir)
            except TimeoutError as e:
                self._lock_file.close()
                raise LedgerError(str(e)) from None
            if not self.wallet.exists:
                self.wallet.create(self.backend)
        sqlite_file = self.data_dir / "ledger.sqlite"
        if read_only and dsn is None and not sqlite_file.exists():
            # not even an empty file: opening one would create it
            raise LedgerError(f"no ledger in {self.data_dir}")
        self.store = Store(dsn or sqlite_file)
        self._writer = Committer(self.store,
                                 lambda d: self._node().sign(d, self.backend),
                                 block_max_txs, block_timeout)
        if self.store.height() == 0:
            if read_only:
                self.store.close()
                raise LedgerError(f"no ledger in {self.data_dir}")
            self._write_genesis()
        self.config = self._genesis_config()
        if (not read_only and self.wallet.exists
                and self.wallet.config()["root"] != self.config["root"]):
            self.store.close()
            if self._lock_file is not None:
                self._writer_lock.close()
                self._lock_file.close()
            raise LedgerError(f"the ledger in {dsn or sqlite_file} belongs to another "
                              f"consortium than the keys in {self.wallet.root}")
        self.membership = Membership(self.config, self.backend)
        self._endorser = Endorser(self.store, self.membership, self.backend)
        self._commits = CommitQueue(self._writer, committer, self.data_dir,
                                    self.backend.name, self._writer_lock)
        self._closed = False

    @property
    def block_max_txs(self) -> int:
        """Cut a block at this many transactions (thread committer: live)."""
        return self._writer.block_max_txs

    @block_max_txs.setter
    def block_max_txs(self, value: int) -> None:
        self._writer.block_max_txs = value

    @property
    def block_timeout(self) -> float:
        """Cut a block this many seconds after its first transaction."""
        return self._writer.block_timeout

    @block_timeout.setter
    def block_timeout(self, value: float) -> None:
        self._writer.block_timeout = value

    # -------------------------------------------------------------- lifecycle
    def _acquire_lock(self) -> Any:
        f = open(self.data_dir / "ledger.lock", "a+")  # noqa: SIM115 - held open
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise LedgerError(f"the ledger in {self.data_dir} is in use by another "
                              "process (stop it, or open read-only)") from None
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        return f

    def close(self) -> None:
        self._commits.stop()
        self._closed = True
        self._commits.wake()
        self.store.close()
        if self._lock_file is not None:
            self._writer_lock.close()
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> EmbeddedNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _node(self) -> Identity:
        if self._node_identity is None:
            self._node_identity = self.wallet.identity(load_consortium().center.name,
                                                       "node")
        return self._node_identity

    def _write_genesis(self) -> None:
        config = self.wallet.config()
        body = canonical_json({"config": config,
                               "channel": load_consortium().channel}).decode()
        self._writer.write_block([("genesis", body)], [], [])

    def _genesis_config(self) -> dict[str, Any]:
        block = self.store.block(0)
        assert block is not None
        return dict(json.loads(block[3][0])["config"])

    # ----------------------------------------------------------- endorsement
    def simulate(self, proposal: dict[str, Any], signature: bytes,
                 transient: dict[str, bytes] | None) -> tuple[EmbeddedStub, bytes]:
        """Check the creator and run the contract; raises ContractError."""
        return self._endorser.simulate(self.invoke, proposal, signature, transient)

    def submit(self, proposal: dict[str, Any], signature: bytes,
               transient: dict[str, bytes] | None = None) -> Future[Receipt]:
        """Endorse now (raises a ContractError or EndorseError at once) and hand
        the transaction to the committer; the future gives its receipt, whose
        status says whether it committed VALID."""
        if self.read_only or self._closed:
            raise LedgerError("this ledger is read-only or closed")
        stub, response = self.simulate(proposal, signature, transient)
        endorsed, events = endorsement(stub, response, signature)
        return self._commits.put(endorsed, json.loads(response), events)

    # ---------------------------------------------------------------- reads
    def _wait_for_block(self) -> bool:
        if self._closed:
            return False
        with self._commits.committed:
            self._commits.committed.wait(timeout=0.5)
        return True

    def events(self, after: Position | None = None,
               follow: bool = False) -> Iterator[CommittedEvent]:
        return read_events(self.store, after, follow, self._wait_for_block)

    def history(self, key: str) -> list[KeyVersion]:
        return read_history(self.store, key)

    def block(self, number: int) -> dict[str, Any]:
        return read_block(self.store, number)

    def height(self) -> int:
        return self.store.height()

    def transaction(self, tx_id: str) -> CommittedTransaction | None:
        """The stored transaction ``tx_id`` (valid or not), from its body."""
        return read_transaction(self.store, tx_id)

    def verify(self, progress: Any = None) -> VerifyReport:
        return verify_chain(self.store, self.backend, progress)
