"""Ordering and committing: cut endorsed transactions into blocks, validate their
reads (MVCC), link and sign each block and write it in one database transaction.

The committer runs as a thread of the node (the default) or in a process of its
own (``EmbeddedNode(committer="process")``). Python threads share one interpreter
lock, so a committer process lets endorsement and commit use both cores; the
receipts come back over a queue and the node resolves its futures with them.
"""

from __future__ import annotations

import fcntl
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaincode.encoding import canonical_json
from chaincode.stub import Creator
from ledger import crypto
from ledger.store import Store, Version


def tx_id_for(nonce: bytes, creator: Creator) -> str:
    """As Fabric: a hash of the nonce and the serialized creator (SM3 here)."""
    return crypto.sm3_hex(nonce + creator.msp_id.encode() + creator.id_bytes)


GENESIS_PREVIOUS = "0" * 64
VALID = "VALID"
MVCC_READ_CONFLICT = "MVCC_READ_CONFLICT"
PHANTOM_READ_CONFLICT = "PHANTOM_READ_CONFLICT"
DUPLICATE_TXID = "DUPLICATE_TXID"  # refused: never stored


def data_hash(tx_bodies: list[str]) -> str:
    return crypto.sm3_hex(b"".join(crypto.sm3(b.encode()) for b in tx_bodies))


@dataclass
class Endorsed:
    """A simulated transaction waiting for its block (picklable, so that it can
    travel to a committer process)."""

    tx_id: str
    body_prefix: str  # the canonical tx body up to its validation status
    reads: dict[str, Version | None]
    ranges: list[tuple[str, str, list[tuple[str, Version]]]]
    writes: dict[str, str | None]
    events: list[tuple[str, str]]  # (type, canonical JSON) of each event


Sign = Callable[[bytes], bytes]
# ``get(None)`` blocks for the next transaction, ``get(t)`` raises queue.Empty
# after t seconds; None means stop.
Get = Callable[[float | None], Endorsed | None]


def writer_lock(data_dir: Path, wait: float = 15.0) -> Any:
    """Hold ``committer.lock`` in ``data_dir``: whoever writes blocks holds it,
    a thread of the node or a committer process. A committer process left over
    by a killed node finishes its block and exits within a second or two; this
    waits for it rather than letting two writers race."""
    f = open(data_dir / "committer.lock", "a+")  # noqa: SIM115 - held open
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if time.monotonic() > deadline:
                f.close()
                raise TimeoutError(f"another committer still writes to the "
                                   f"ledger in {data_dir}") from None
            time.sleep(0.05)


class Committer:
    """Writes blocks to one store; the only writer of that store."""

    def __init__(self, store: Store, sign: Sign, block_max_txs: int = 500,
                 block_timeout: float = 0.002) -> None:
        self.store = store
        self.sign = sign
        self.block_max_txs = block_max_txs
        self.block_timeout = block_timeout
        self._last: tuple[int, str] | None = None  # (number, hash) of the tip

    def cut(self, get: Get) -> tuple[list[Endorsed], bool]:
        """One block's worth: the first transaction waited for, then whatever
        arrives within ``block_timeout``, up to ``block_max_txs``. ``get(None)``
        blocks; ``get(t)`` raises queue.Empty after t seconds; None means stop.
        Returns (batch, stop)."""
        first = get(None)
        if first is None:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self.block_timeout
        while len(batch) < self.block_max_txs:
            try:
                item = get(max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def tip(self) -> tuple[int, str] | None:
        """(number, hash) of the last block, kept in memory after the first
        read, since this is the only writer."""
        if self._last is None:
            height = self.store.height()
            if height:
                found = self.store.block_hash(height - 1)
                assert found is not None
                self._last = (height - 1, found)
        return self._last

    def write_block(self, txs: list[tuple[str, str]],
                    writes: list[tuple[int, list[tuple[str, str | None]]]],
                    events: list[tuple[int, int, str, str, str]]) -> int:
        """Link, sign and store one block; returns its number."""
        tip = self.tip()
        number, previous = (tip[0] + 1, tip[1]) if tip else (0, GENESIS_PREVIOUS)
        header = canonical_json({
            "number": number, "previous_hash": previous,
            "data_hash": data_hash([b for _, b in txs]), "tx_count": len(txs),
            "timestamp": datetime.now(UTC).isoformat()}).decode()
        block_hash = crypto.sm3_hex(header.encode())
        signature = self.sign(bytes.fromhex(block_hash)).hex()
        self.store.append_block(number, header, block_hash, signature, txs, writes,
                                events)
        self._last = (number, block_hash)
        return number

    def _validate(self, tx: Endorsed, block_writes: dict[str, str | None],
                  current: dict[str, tuple[str, Version]]) -> str:
        """MVCC: every read must still be at the version seen in simulation,
        counting writes of earlier valid transactions in this block."""
        if any(key in block_writes for key in tx.reads):
            return MVCC_READ_CONFLICT
        for key, version in tx.reads.items():
            hit = current.get(key)
            if (hit[1] if hit else None) != version:
                return MVCC_READ_CONFLICT
        for start, end, seen in tx.ranges:
            if any(start <= k < end for k in block_writes):
                return PHANTOM_READ_CONFLICT
            if [(k, v) for k, _, v in self.store.range(start, end)] != seen:
                return PHANTOM_READ_CONFLICT
        return VALID

    def commit(self, batch: list[Endorsed]) -> tuple[int, list[str]]:
        """Validate and write one block; returns its number (-1 when nothing
        was written) and each transaction's status, in batch order."""
        known = self.store.known_tx_ids([tx.tx_id for tx in batch])
        statuses: list[str] = []
        accepted: list[Endorsed] = []
        for tx in batch:  # a replayed tx id is refused, never stored twice
            statuses.append(DUPLICATE_TXID if tx.tx_id in known else "")
            if tx.tx_id not in known:
                known.add(tx.tx_id)
                accepted.append(tx)
        if not accepted:
            return -1, statuses
        current = self.store.get_states(sorted({k for tx in accepted
                                                for k in tx.reads}))
        block_writes: dict[str, str | None] = {}
        bodies: list[tuple[str, str]] = []
        writes: list[tuple[int, list[tuple[str, str | None]]]] = []
        events: list[tuple[int, int, str, str, str]] = []
        results: list[str] = []
        for index, tx in enumerate(accepted):
            status = self._validate(tx, block_writes, current)
            bodies.append((tx.tx_id, f'{tx.body_prefix}{status}"}}'))
            results.append(status)
            if status == VALID:
                wset = list(tx.writes.items())
                block_writes.update(wset)
                writes.append((index, wset))
                events.extend((index, i, tx.tx_id, kind, text)
                              for i, (kind, text) in enumerate(tx.events))
        number = self.write_block(bodies, writes, events)
        it = iter(results)
        return number, [s or next(it) for s in statuses]


    def run(self, get: Get, committed: Callable[[int, list[tuple[str, str]]], None],
            failed: Callable[[list[str], str], None]) -> None:
        """The commit loop, of the committer thread and the committer process
        alike: cut and commit blocks until ``get`` gives None (see ``cut``).
        Each written block goes to ``committed(number, [(tx id, status)])``; a
        block that could not be written to ``failed(tx ids, why)``, and the loop
        goes on with the next one."""
        stop = False
        while not stop:
            batch, stop = self.cut(get)
            if not batch:
                continue
            try:
                number, statuses = self.commit(batch)
            except Exception as e:  # the block was not written
                failed([tx.tx_id for tx in batch], repr(e))
                continue
            committed(number, [(tx.tx_id, s)
                               for tx, s in zip(batch, statuses, strict=True)])


def serve(target: str, data_dir: str, center: str, backend: str,
          block_max_txs: int, block_timeout: float, inbox: Any, outbox: Any,
          parent: int) -> None:
    """Entry point of a committer process: commit what arrives in ``inbox`` and
    answer ("block", number, [(tx id, status)]) or ("failed", [tx ids], why) on
    ``outbox``. Ends on None, or when the node's process is gone."""
    from ledger.msp import Wallet

    lock = writer_lock(Path(data_dir))  # released when this process ends
    identity = Wallet(Path(data_dir)).identity(center, "node")
    crypto_backend = crypto.get_backend(backend)
    store = Store(target)
    committer = Committer(store, lambda d: identity.sign(d, crypto_backend),
                          block_max_txs, block_timeout)

    def get(timeout: float | None) -> Endorsed | None:
        while timeout is None:
            try:
                return inbox.get(timeout=1.0)  # type: ignore[no-any-return]
            except queue.Empty:
                if os.getppid() != parent:  # orphaned: the node was killed
                    return None
        return inbox.get(timeout=timeout)  # type: ignore[no-any-return]

    def committed(number: int, outcomes: list[tuple[str, str]]) -> None:
        outbox.put(("block", number, outcomes))

    def failed(tx_ids: list[str], why: str) -> None:
        outbox.put(("failed", tx_ids, why))

    try:
        committer.run(get, committed, failed)
    finally:
        store.close()
        lock.close()
        outbox.put(("closed",))


__all__ = ["Committer", "Endorsed", "data_hash", "serve", "tx_id_for"]
