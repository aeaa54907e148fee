"""The embedded ledger: the contract, MVCC world state and an SM3/SM2 block chain
in one process, stored in SQLite (default) or PostgreSQL.

Flow, as on Fabric: a client signs a proposal; the node checks the creator's
certificate chain and signature and simulates the contract against committed
state, recording reads (with versions) and writes (endorsement); the committer
thread cuts blocks by count or time, marks a transaction whose reads went stale
``MVCC_READ_CONFLICT`` (its writes are not applied), links the block to the
previous one by SM3 hash, signs it with the node's SM2 key and writes it in one
database transaction. ``submit`` returns only after that commit.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaincode import contract
from chaincode.errors import ContractError
from chaincode.merkle import canonical_json
from chaincode.stub import Creator, KeyModification
from ledger import crypto
from ledger.msp import Identity, Membership, MembershipError, Wallet
from ledger.protocol import (
    CommitError,
    CommittedEvent,
    EndorseError,
    KeyVersion,
    LedgerError,
    Position,
    Receipt,
    SubmitError,
    VerifyReport,
)
from ledger.store import Store, Version
from network.consortium import load_consortium

GENESIS_PREVIOUS = "0" * 64
VALID = "VALID"
MVCC_READ_CONFLICT = "MVCC_READ_CONFLICT"
PHANTOM_READ_CONFLICT = "PHANTOM_READ_CONFLICT"


def tx_id_for(nonce: bytes, creator: Creator) -> str:
    """As Fabric: a hash of the nonce and the serialized creator (SM3 here)."""
    return crypto.sm3_hex(nonce + creator.msp_id.encode() + creator.id_bytes)


def data_hash(tx_bodies: list[str]) -> str:
    return crypto.sm3_hex(b"".join(crypto.sm3(b.encode()) for b in tx_bodies))


# ------------------------------------------------------------------ the stub
class EmbeddedStub:
    """The ``Stub`` over committed state, recording the read and write sets."""

    def __init__(self, store: Store, proposal: dict[str, Any],
                 transient: dict[str, bytes] | None) -> None:
        self.store = store
        self.proposal = proposal
        self.transient = transient or {}
        self.reads: dict[str, Version | None] = {}
        self.ranges: list[tuple[str, str, list[tuple[str, Version]]]] = []
        self.writes: dict[str, str | None] = {}
        self.event: tuple[str, bytes] | None = None

    def get_args(self) -> list[bytes]:
        return [self.proposal["function"].encode(), self.proposal["args"].encode()]

    def get_state(self, key: str) -> bytes | None:
        found = self.store.get_state(key)
        self.reads.setdefault(key, found[1] if found else None)
        return found[0].encode() if found else None

    def get_multiple_states(self, keys: list[str]) -> list[bytes | None]:
        found = self.store.get_states(keys)
        out: list[bytes | None] = []
        for key in keys:
            hit = found.get(key)
            self.reads.setdefault(key, hit[1] if hit else None)
            out.append(hit[0].encode() if hit else None)
        return out

    def put_state(self, key: str, value: bytes) -> None:
        if not key:
            raise ContractError("empty key")
        self.writes[key] = value.decode("utf-8")

    def del_state(self, key: str) -> None:
        self.writes[key] = None

    def get_state_by_range(self, start: str, end: str) -> Iterator[tuple[str, bytes]]:
        rows = self.store.range(start, end)
        self.ranges.append((start, end, [(k, v) for k, _, v in rows]))
        for key, value, _ in rows:
            yield key, value.encode()

    def get_history_for_key(self, key: str) -> Iterator[KeyModification]:
        for _block, _tx, value, body in self.store.history(key):
            proposal = json.loads(body)["proposal"]
            yield KeyModification(proposal["tx_id"], (value or "").encode(),
                                  datetime.fromisoformat(proposal["timestamp"]),
                                  value is None)

    def get_creator(self) -> Creator:
        c = self.proposal["creator"]
        return Creator(c["msp_id"], c["certificate"].encode())

    def get_tx_id(self) -> str:
        return str(self.proposal["tx_id"])

    def get_tx_timestamp(self) -> datetime:
        return datetime.fromisoformat(self.proposal["timestamp"])

    def get_transient(self) -> dict[str, bytes]:
        return dict(self.transient)

    def set_event(self, name: str, payload: bytes) -> None:
        self.event = (name, payload)  # as on Fabric, only the last one survives


@dataclass
class Endorsed:
    proposal: dict[str, Any]
    signature: str
    stub: EmbeddedStub
    response: dict[str, Any]
    events: list[dict[str, Any]]
    future: Future[Receipt] = field(default_factory=Future)


# ------------------------------------------------------------------ the node
class EmbeddedNode:
    """One embedded ledger: storage, membership, endorsement and the committer."""

    def __init__(self, data_dir: str | Path, *, dsn: str | None = None,
                 block_max_txs: int = 500, block_timeout: float = 0.002,
                 backend: crypto.Backend | None = None,
                 read_only: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.backend = backend or crypto.get_backend()
        self.wallet = Wallet(self.data_dir)
        self.block_max_txs = block_max_txs
        self.block_timeout = block_timeout
        self.read_only = read_only
        self._node_identity: Identity | None = None
        self._last: tuple[int, str] | None = None  # (number, hash) of the tip
        self._lock_file = None
        if not read_only:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._lock_file = self._acquire_lock()
            if not self.wallet.exists:
                self.wallet.create(self.backend)
        sqlite_file = self.data_dir / "ledger.sqlite"
        if read_only and dsn is None and not sqlite_file.exists():
            # not even an empty file: opening one would create it
            raise LedgerError(f"no ledger in {self.data_dir}")
        self.store = Store(dsn or sqlite_file)
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
                self._lock_file.close()
            raise LedgerError(f"the ledger in {dsn or sqlite_file} belongs to another "
                              f"consortium than the keys in {self.wallet.root}")
        self.membership = Membership(self.config, self.backend)
        self._queue: queue.Queue[Endorsed | None] = queue.Queue()
        self._committed = threading.Condition()
        self._closed = False
        self._committer: threading.Thread | None = None

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
        if self._committer is not None:
            self._queue.put(None)
            self._committer.join()
            self._committer = None
        self._closed = True
        with self._committed:
            self._committed.notify_all()
        self.store.close()
        if self._lock_file is not None:
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
        self._write_block(0, [("genesis", body)], [], [],
                          datetime.now(UTC).isoformat())

    def _genesis_config(self) -> dict[str, Any]:
        block = self.store.block(0)
        assert block is not None
        return dict(json.loads(block[3][0])["config"])

    def _write_block(self, number: int, txs: list[tuple[str, str]],
                     writes: list[tuple[int, list[tuple[str, str | None]]]],
                     events: list[tuple[int, int, str, str, str]],
                     timestamp: str) -> None:
        previous = GENESIS_PREVIOUS if number == 0 else self._tip(number - 1)
        header = canonical_json({
            "number": number, "previous_hash": previous,
            "data_hash": data_hash([b for _, b in txs]), "tx_count": len(txs),
            "timestamp": timestamp}).decode()
        block_hash = crypto.sm3_hex(header.encode())
        signature = self._node().sign(bytes.fromhex(block_hash), self.backend).hex()
        self.store.append_block(number, header, block_hash, signature, txs, writes,
                                events)
        self._last = (number, block_hash)

    def _tip(self, number: int) -> str:
        """Hash of block ``number``, the last one; kept in memory, since this
        node is the only writer (the lock file sees to that)."""
        if self._last is None or self._last[0] != number:
            found = self.store.block_hash(number)
            if found is None:
                raise LedgerError(f"block {number} is missing")
            self._last = (number, found)
        return self._last[1]

    # ----------------------------------------------------------- endorsement
    def _check(self, proposal: dict[str, Any], signature: bytes) -> None:
        creator = Creator(proposal["creator"]["msp_id"],
                          proposal["creator"]["certificate"].encode())
        try:
            public = self.membership.public_key_of(creator)
        except MembershipError as e:
            raise EndorseError(f"creator rejected: {e}", proposal["tx_id"]) from e
        if not self.backend.sm2_verify(public, canonical_json(proposal), signature):
            raise EndorseError("proposal signature does not verify",
                               proposal["tx_id"])

    def simulate(self, proposal: dict[str, Any], signature: bytes,
                 transient: dict[str, bytes] | None) -> tuple[EmbeddedStub, bytes]:
        """Check the creator and run the contract; raises ContractError."""
        self._check(proposal, signature)
        stub = EmbeddedStub(self.store, proposal, transient)
        return stub, contract.invoke(stub)

    def submit(self, proposal: dict[str, Any], signature: bytes,
               transient: dict[str, bytes] | None = None) -> Future[Receipt]:
        if self.read_only or self._closed:
            raise LedgerError("this ledger is read-only or closed")
        stub, response = self.simulate(proposal, signature, transient)
        events = json.loads(stub.event[1]) if stub.event else []
        endorsed = Endorsed(proposal, signature.hex(), stub, json.loads(response),
                            events)
        if self._committer is None:
            self._start_committer()
        self._queue.put(endorsed)
        return endorsed.future

    # ------------------------------------------------------------- committer
    def _start_committer(self) -> None:
        with self._committed:
            if self._committer is None:
                self._committer = threading.Thread(target=self._commit_loop,
                                                   name="committer", daemon=True)
                self._committer.start()

    def _commit_loop(self) -> None:
        try:
            self._commit_until_stopped()
        finally:  # the committer's own connection, which close() cannot reach
            self.store.close()

    def _commit_until_stopped(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + self.block_timeout
            while len(batch) < self.block_max_txs:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline -
                                                       time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                self._commit(batch)
            except Exception as e:  # the block was not written: fail its txs
                for tx in batch:
                    if not tx.future.done():
                        tx.future.set_exception(LedgerError(
                            f"commit failed: {e}", tx.proposal["tx_id"]))

    def _validate(self, tx: Endorsed, block_writes: dict[str, str | None],
                  current: dict[str, tuple[str, Version]]) -> str:
        """MVCC: every read must still be at the version seen in simulation,
        counting writes of earlier valid transactions in this block."""
        reads = tx.stub.reads
        if any(key in block_writes for key in reads):
            return MVCC_READ_CONFLICT
        for key, version in reads.items():
            hit = current.get(key)
            if (hit[1] if hit else None) != version:
                return MVCC_READ_CONFLICT
        for start, end, seen in tx.stub.ranges:
            if any(start <= k < end for k in block_writes):
                return PHANTOM_READ_CONFLICT
            now = [(k, v) for k, _, v in self.store.range(start, end)]
            if now != seen:
                return PHANTOM_READ_CONFLICT
        return VALID

    def _commit(self, batch: list[Endorsed]) -> None:
        number = self._last[0] + 1 if self._last else self.store.height()
        block_writes: dict[str, str | None] = {}
        bodies: list[tuple[str, str]] = []
        writes: list[tuple[int, list[tuple[str, str | None]]]] = []
        events: list[tuple[int, int, str, str, str]] = []
        statuses: list[str] = []
        seen = self.store.known_tx_ids([tx.proposal["tx_id"] for tx in batch])
        accepted = []
        for tx in batch:  # a replayed tx id is refused, never stored twice
            tx_id = tx.proposal["tx_id"]
            if tx_id in seen:
                tx.future.set_exception(SubmitError(f"duplicate tx id {tx_id}",
                                                    tx_id))
            else:
                seen.add(tx_id)
                accepted.append(tx)
        if not accepted:
            return
        batch[:] = accepted
        current = self.store.get_states(sorted({k for tx in batch
                                                for k in tx.stub.reads}))
        for index, tx in enumerate(batch):
            tx_id = tx.proposal["tx_id"]
            status = self._validate(tx, block_writes, current)
            wset = list(tx.stub.writes.items())
            body = canonical_json({
                "proposal": tx.proposal, "signature": tx.signature,
                "result": {"reads": sorted([k, list(v) if v else None]
                                           for k, v in tx.stub.reads.items()),
                           "writes": [[k, v] for k, v in wset],
                           "response": tx.response, "events": tx.events},
                "validation": status}).decode()
            bodies.append((tx_id, body))
            statuses.append(status)
            if status == VALID:
                block_writes.update(wset)
                writes.append((index, wset))
                events.extend((index, i, tx_id, ev["type"], canonical_json(ev)
                               .decode()) for i, ev in enumerate(tx.events))
        self._write_block(number, bodies, writes, events,
                          datetime.now(UTC).isoformat())
        with self._committed:
            self._committed.notify_all()
        for tx, status in zip(batch, statuses, strict=True):
            receipt = Receipt(tx.proposal["tx_id"], number, status, tx.response,
                              tx.events if status == VALID else [])
            tx.future.set_result(receipt)

    # ---------------------------------------------------------------- reads
    def events(self, after: Position | None = None,
               follow: bool = False) -> Iterator[CommittedEvent]:
        pos = after or Position(-1, -1, -1)
        while True:
            rows = self.store.events_after(*pos)
            for block, tx, idx, tx_id, payload in rows:
                ev = json.loads(payload)
                pos = Position(block, tx, idx)
                yield CommittedEvent(pos, tx_id, ev["type"], ev["aggregate_id"],
                                     ev["version"], ev["timestamp"], ev["data"])
            if rows:
                continue
            if not follow or self._closed:
                return
            with self._committed:
                self._committed.wait(timeout=0.5)

    def history(self, key: str) -> list[KeyVersion]:
        out = []
        for block, tx, value, body in self.store.history(key):
            p = json.loads(body)["proposal"]
            cert = json.loads(p["creator"]["certificate"])["subject"]
            out.append(KeyVersion(key, block, tx, p["tx_id"],
                                  f"{p['creator']['msp_id']}:{cert.get('name')}",
                                  p["timestamp"], value, value is None))
        return out

    def block(self, number: int) -> dict[str, Any]:
        found = self.store.block(number)
        if found is None:
            raise LedgerError(f"no block {number} (height {self.store.height()})")
        header, block_hash, signature, bodies = found
        return {"header": json.loads(header), "hash": block_hash,
                "signature": signature,
                "transactions": [json.loads(b) for b in bodies]}

    def height(self) -> int:
        return self.store.height()

    def verify(self, progress: Any = None) -> VerifyReport:
        from ledger.verify import verify_chain

        return verify_chain(self.store, self.backend, progress)


# ------------------------------------------------------------------ a client
class EmbeddedLedger:
    """The Ledger protocol for one identity on an embedded node."""

    def __init__(self, node: EmbeddedNode, identity: Identity) -> None:
        self.node = node
        self.identity = identity

    def _proposal(self, function: str, args: dict[str, Any]) -> tuple[dict[str, Any],
                                                                       bytes]:
        nonce = secrets.token_bytes(24)
        creator = self.identity.creator
        consortium = load_consortium()
        proposal = {
            "tx_id": tx_id_for(nonce, creator), "nonce": nonce.hex(),
            "channel": consortium.channel, "chaincode": consortium.chaincode,
            "function": function, "args": canonical_json(args).decode(),
            "creator": {"msp_id": creator.msp_id,
                        "certificate": creator.id_bytes.decode()},
            "timestamp": datetime.now(UTC).isoformat()}
        return proposal, self.identity.sign(canonical_json(proposal),
                                            self.node.backend)

    def submit(self, function: str, args: dict[str, Any],
               transient: dict[str, bytes] | None = None) -> Receipt:
        """Endorse, order and commit one command; raises ContractError when the
        contract rejects it (nothing written) and CommitError when it committed
        as invalid."""
        return self.submit_async(function, args, transient).result()

    def submit_async(self, function: str, args: dict[str, Any],
                     transient: dict[str, bytes] | None = None) -> Future[Receipt]:
        """Endorse now and return without waiting for the commit, like the
        Gateway's submit_async: the future gives the receipt, or raises
        CommitError. A contract rejection is raised here, before ordering."""
        proposal, signature = self._proposal(function, args)
        committed = self.node.submit(proposal, signature, transient)
        outcome: Future[Receipt] = Future()

        def settle(done: Future[Receipt]) -> None:
            try:
                receipt = done.result()
            except BaseException as e:
                outcome.set_exception(e)
                return
            if receipt.status != VALID:
                outcome.set_exception(CommitError(
                    f"transaction {receipt.tx_id} committed as {receipt.status}",
                    receipt.tx_id, receipt.status))
            else:
                outcome.set_result(receipt)

        committed.add_done_callback(settle)
        return outcome

    def evaluate(self, function: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run a query against committed state; nothing is written."""
        proposal, signature = self._proposal(function, args)
        _, response = self.node.simulate(proposal, signature, None)
        return dict(json.loads(response))

    def events(self, after: Position | None = None,
               follow: bool = False) -> Iterator[CommittedEvent]:
        return self.node.events(after, follow)

    def history(self, key: str) -> list[KeyVersion]:
        return self.node.history(key)

    def block(self, number: int) -> dict[str, Any]:
        return self.node.block(number)

    def height(self) -> int:
        return self.node.height()

    def verify(self) -> VerifyReport:
        return self.node.verify()


__all__ = ["ContractError", "EmbeddedLedger", "EmbeddedNode"]
