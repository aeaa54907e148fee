"""The embedded ledger: the contract, MVCC world state and an SM3/SM2 block chain
in one process, stored in SQLite (default) or PostgreSQL.

Flow, as on Fabric: a client signs a proposal; the node checks the creator's
certificate chain and signature and simulates the contract against committed
state, recording reads (with versions) and writes (endorsement); the committer
(``ledger/committer.py``: a thread, or a process of its own) cuts blocks by count
or time, marks a transaction whose reads went stale ``MVCC_READ_CONFLICT`` (its
writes are not applied), links the block to the previous one by SM3 hash, signs
it with the node's SM2 key and writes it in one database transaction. A submit's
future resolves only after that commit.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import secrets
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaincode import contract
from chaincode.errors import ContractError
from chaincode.merkle import canonical_json
from chaincode.stub import Creator, Invoke, KeyModification
from ledger import crypto
from ledger.committer import (  # the status names are part of this module's API
    DUPLICATE_TXID,
    GENESIS_PREVIOUS,
    MVCC_READ_CONFLICT,
    PHANTOM_READ_CONFLICT,
    VALID,
    Committer,
    Endorsed,
    data_hash,
    tx_id_for,
    writer_lock,
)
from ledger.msp import Identity, Membership, MembershipError, Wallet
from ledger.protocol import (
    CommitError,
    CommittedEvent,
    CommittedTransaction,
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
        self.proposal_text = ""  # the signed bytes, set once they are checked

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


_DECODER = json.JSONDecoder()


def _split_events(payload: bytes) -> tuple[list[dict[str, Any]], list[str]]:
    """The chaincode event's list of domain events, parsed, and each one's own
    text: the contract writes canonical JSON (no whitespace), so the span the
    decoder consumed for an element is that element's canonical JSON."""
    text = payload.decode()
    events: list[dict[str, Any]] = []
    texts: list[str] = []
    try:
        pos = 1
        while text[pos] != "]":
            event, end = _DECODER.raw_decode(text, pos)
            events.append(event)
            texts.append(text[pos:end])
            pos = end + 1 if text[end] == "," else end
    except (ValueError, IndexError):
        pass
    if f"[{','.join(texts)}]" != text:  # not compact: parse and encode each one
        events = json.loads(text)
        texts = [canonical_json(ev).decode() for ev in events]
    return events, texts


# A submitted transaction's future, with the response and events for its receipt.
Waiting = tuple[Future[Receipt], dict[str, Any], list[dict[str, Any]]]


# ------------------------------------------------------------------ the node
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
        self._committer_kind = committer
        self._lock_file = None
        if not read_only:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._lock_file = self._acquire_lock()
            try:
                self._writer_lock: Any = writer_lock(self.data_dir)
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
        self._queue: queue.Queue[Endorsed | None] = queue.Queue()
        self._waiting: dict[str, deque[Waiting]] = {}  # by tx id
        self._waiting_lock = threading.Lock()
        self._committed = threading.Condition()
        self._closed = False
        self._committer: threading.Thread | None = None
        self._process: Any = None
        self._broken = ""  # why the committer process is gone, once it is

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
        if self._process is not None:
            self._queue.put(None)  # the process's inbox, in that mode
            if self._committer is not None:
                self._committer.join()  # the receiver ends on "closed"
            self._process.join(timeout=30)
            self._process = None
            self._committer = None
        if self._committer is not None:
            self._queue.put(None)
            self._committer.join()
            self._committer = None
        self._closed = True
        with self._committed:
            self._committed.notify_all()
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
    def _check(self, proposal: dict[str, Any], signature: bytes) -> bytes:
        """The proposal's signed bytes, once its creator and signature check."""
        creator = Creator(proposal["creator"]["msp_id"],
                          proposal["creator"]["certificate"].encode())
        try:
            public = self.membership.public_key_of(creator)
        except MembershipError as e:
            raise EndorseError(f"creator rejected: {e}", proposal["tx_id"]) from e
        signed = canonical_json(proposal)
        if not self.backend.sm2_verify(public, signed, signature):
            raise EndorseError("proposal signature does not verify",
                               proposal["tx_id"])
        return signed

    def simulate(self, proposal: dict[str, Any], signature: bytes,
                 transient: dict[str, bytes] | None) -> tuple[EmbeddedStub, bytes]:
        """Check the creator and run the contract; raises ContractError."""
        signed = self._check(proposal, signature)
        stub = EmbeddedStub(self.store, proposal, transient)
        stub.proposal_text = signed.decode()
        return stub, self.invoke(stub)

    def submit(self, proposal: dict[str, Any], signature: bytes,
               transient: dict[str, bytes] | None = None) -> Future[Receipt]:
        """Endorse now (raises a ContractError or EndorseError at once) and hand
        the transaction to the committer; the future gives its receipt, whose
        status says whether it committed VALID."""
        if self.read_only or self._closed:
            raise LedgerError("this ledger is read-only or closed")
        stub, response = self.simulate(proposal, signature, transient)
        events, event_texts = _split_events(stub.event[1] if stub.event else b"[]")
        # The tx body is canonical JSON with keys proposal < result < signature <
        # validation; every part but the status is known now, so it is built
        # here, beside endorsement, and the committer only appends the status.
        result = (f'{{"events":[{",".join(event_texts)}],"reads":'
                  + canonical_json(sorted([k, list(v) if v else None]
                                          for k, v in stub.reads.items())).decode()
                  + f',"response":{response.decode()},"writes":'
                  + canonical_json([[k, v] for k, v in stub.writes.items()]).decode()
                  + "}")
        endorsed = Endorsed(
            proposal["tx_id"],
            f'{{"proposal":{stub.proposal_text},"result":{result},"signature":'
            f'"{signature.hex()}","validation":"',
            stub.reads, stub.ranges, stub.writes,
            [(ev["type"], text) for ev, text in zip(events, event_texts,
                                                    strict=True)])
        future: Future[Receipt] = Future()
        with self._waiting_lock:
            if self._broken:
                raise LedgerError(self._broken, endorsed.tx_id)
            self._waiting.setdefault(endorsed.tx_id, deque()).append(
                (future, json.loads(response), events))
        if self._committer is None:
            self._start_committer()
        self._queue.put(endorsed)
        return future

    # ------------------------------------------------------------- committer
    def _start_committer(self) -> None:
        with self._committed:
            if self._committer is not None:
                return
            if self._committer_kind == "thread":
                target = self._commit_loop
            else:
                self._start_process()
                target = self._receive_loop
            self._committer = threading.Thread(target=target, name="committer",
                                               daemon=True)
            self._committer.start()

    def _commit_loop(self) -> None:
        def get(timeout: float | None) -> Endorsed | None:
            return self._queue.get(timeout=timeout)

        try:
            stop = False
            while not stop:
                batch, stop = self._writer.cut(get)
                if not batch:
                    continue
                try:
                    number, statuses = self._writer.commit(batch)
                except Exception as e:  # the block was not written
                    self._fail([tx.tx_id for tx in batch], repr(e))
                    continue
                self._resolve(number, [(tx.tx_id, s) for tx, s in
                                       zip(batch, statuses, strict=True)])
        finally:  # the committer's own connection, which close() cannot reach
            self.store.close()

    def _start_process(self) -> None:
        import multiprocessing

        from ledger import committer

        self._writer_lock.close()  # the committer process takes it over
        ctx = multiprocessing.get_context("spawn")
        inbox, self._outbox = ctx.Queue(), ctx.Queue()
        self._queue = inbox  # type: ignore[assignment]
        self._process = ctx.Process(
            target=committer.serve, name="cityunion-committer", daemon=True,
            args=(self.store.target, str(self.data_dir),
                  load_consortium().center.name, self.backend.name,
                  self._writer.block_max_txs, self._writer.block_timeout, inbox,
                  self._outbox, os.getpid()))
        self._process.start()

    def _receive_loop(self) -> None:
        why = "the committer stopped"
        while True:
            try:
                message = self._outbox.get(timeout=1.0)
            except queue.Empty:
                if self._process.is_alive():
                    continue
                why = (f"the committer process ended (exit code "
                       f"{self._process.exitcode}); see its error output")
                break
            if message[0] == "block":
                self._resolve(message[1], message[2])
            elif message[0] == "failed":
                self._fail(message[1], message[2])
            else:  # "closed"
                break
        with self._waiting_lock:  # no submit may wait on a committer now gone
            self._broken = why
        self._fail(list(self._waiting), why)

    def _take(self, tx_id: str) -> Waiting | None:
        with self._waiting_lock:
            waiting = self._waiting.get(tx_id)
            if not waiting:
                return None
            entry = waiting.popleft()
            if not waiting:
                del self._waiting[tx_id]
            return entry

    def _resolve(self, number: int, outcomes: list[tuple[str, str]]) -> None:
        with self._committed:  # followers read the block after this wakes them
            self._committed.notify_all()
        for tx_id, status in outcomes:
            entry = self._take(tx_id)
            if entry is None:
                continue
            future, response, events = entry
            if status == DUPLICATE_TXID:
                future.set_exception(SubmitError(f"duplicate tx id {tx_id}", tx_id))
            else:
                future.set_result(Receipt(tx_id, number, status, response,
                                          events if status == VALID else []))

    def _fail(self, tx_ids: list[str], why: str) -> None:
        for tx_id in tx_ids:
            while (entry := self._take(tx_id)) is not None:
                entry[0].set_exception(LedgerError(f"commit failed: {why}", tx_id))

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

    def transaction(self, tx_id: str) -> CommittedTransaction | None:
        """The stored transaction ``tx_id`` (valid or not), from its body."""
        found = self.store.transaction(tx_id)
        if found is None:
            return None
        block, body = found[0], json.loads(found[2])
        p, result = body["proposal"], body["result"]
        return CommittedTransaction(tx_id, block, body["validation"], p["function"],
                                    p["args"], result["response"], result["events"])

    def verify(self, progress: Any = None) -> VerifyReport:
        from ledger.verify import verify_chain

        return verify_chain(self.store, self.backend, progress)


def block_summary(block: dict[str, Any]) -> dict[str, Any]:
    """A stored block in the Ledger protocol's common shape (``raw`` keeps it
    whole); the genesis configuration is not listed as a transaction."""
    h = block["header"]
    txs = []
    for body in block["transactions"]:
        if "proposal" not in body:
            continue
        p = body["proposal"]
        subject = json.loads(p["creator"]["certificate"]).get("subject", {})
        txs.append({"tx_id": p["tx_id"], "function": p["function"],
                    "creator_msp": p["creator"]["msp_id"],
                    "creator": str(subject.get("name", "")),
                    "timestamp": p["timestamp"], "validation": body["validation"],
                    "signature": body["signature"],
                    "events": [e["type"] for e in body["result"]["events"]]})
    return {"number": h["number"], "hash": block["hash"],
            "previous_hash": h["previous_hash"], "data_hash": h["data_hash"],
            "timestamp": h["timestamp"], "tx_count": h["tx_count"],
            "signature": block["signature"], "transactions": txs, "raw": block}


# ------------------------------------------------------------------ a client
class EmbeddedLedger:
    """The Ledger protocol for one identity on an embedded node."""

    def __init__(self, node: EmbeddedNode, identity: Identity) -> None:
        self.node = node
        self.identity = identity

    def _proposal(self, function: str, args: dict[str, Any],
                  nonce: bytes | None = None) -> tuple[dict[str, Any], bytes]:
        nonce = secrets.token_bytes(24) if nonce is None else nonce
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
               transient: dict[str, bytes] | None = None, *,
               nonce: bytes | None = None) -> Receipt:
        """Endorse, order and commit one command; raises ContractError when the
        contract rejects it (nothing written), CommitError when it committed
        as invalid and SubmitError when ``nonce`` names a transaction the
        ledger already holds."""
        return self.submit_async(function, args, transient, nonce=nonce).result()

    def submit_async(self, function: str, args: dict[str, Any],
                     transient: dict[str, bytes] | None = None, *,
                     nonce: bytes | None = None) -> Future[Receipt]:
        """Endorse now and return without waiting for the commit, like the
        Gateway's submit_async: the future gives the receipt, or raises
        CommitError. A contract rejection is raised here, before ordering."""
        proposal, signature = self._proposal(function, args, nonce)
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

    def tx_id(self, nonce: bytes) -> str:
        """The id of this identity's transaction with ``nonce``."""
        return tx_id_for(nonce, self.identity.creator)

    def transaction(self, tx_id: str) -> CommittedTransaction | None:
        """The committed transaction ``tx_id`` (any creator's), or None."""
        return self.node.transaction(tx_id)

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
        return block_summary(self.node.block(number))

    def height(self) -> int:
        return self.node.height()

    def verify(self) -> VerifyReport:
        return self.node.verify()


__all__ = ["GENESIS_PREVIOUS", "MVCC_READ_CONFLICT", "PHANTOM_READ_CONFLICT",
           "VALID", "ContractError", "EmbeddedLedger", "EmbeddedNode", "data_hash"]
