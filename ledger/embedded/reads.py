"""Reads of the embedded chain: events, key history, blocks and transactions,
decoded from the stored JSON into the Ledger protocol's shapes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from ledger.msp import creator_name
from ledger.protocol import (
    CommittedEvent,
    CommittedTransaction,
    KeyVersion,
    LedgerError,
    Position,
)
from ledger.store import Store


def read_events(store: Store, after: Position | None, follow: bool,
           wait: Callable[[], bool]) -> Iterator[CommittedEvent]:
    """The committed events after ``after``; with ``follow``, then those still
    to come: ``wait()`` waits for a block, or returns False when none will."""
    pos = after or Position(-1, -1, -1)
    while True:
        rows = store.events_after(*pos)
        for block, tx, idx, tx_id, payload in rows:
            ev = json.loads(payload)
            pos = Position(block, tx, idx)
            yield CommittedEvent(pos, tx_id, ev["type"], ev["aggregate_id"],
                                 ev["version"], ev["timestamp"], ev["data"])
        if rows:
            continue
        if not follow or not wait():
            return


def read_history(store: Store, key: str) -> list[KeyVersion]:
    """Every version of ``key``, oldest first, with the transaction that wrote it."""
    out = []
    for block, tx, value, body in store.history(key):
        p = json.loads(body)["proposal"]
        name = creator_name(p["creator"]["certificate"])
        out.append(KeyVersion(key, block, tx, p["tx_id"],
                              f"{p['creator']['msp_id']}:{name}",
                              p["timestamp"], value, value is None))
    return out


def read_block(store: Store, number: int) -> dict[str, Any]:
    """Block ``number`` as stored: header, hash, signature, transaction bodies."""
    found = store.block(number)
    if found is None:
        raise LedgerError(f"no block {number} (height {store.height()})")
    header, block_hash, signature, bodies = found
    return {"header": json.loads(header), "hash": block_hash,
            "signature": signature,
            "transactions": [json.loads(b) for b in bodies]}


def read_transaction(store: Store, tx_id: str) -> CommittedTransaction | None:
    """The stored transaction ``tx_id`` (valid or not), from its body."""
    found = store.transaction(tx_id)
    if found is None:
        return None
    number, body = found[0], json.loads(found[2])
    p, result = body["proposal"], body["result"]
    return CommittedTransaction(tx_id, number, body["validation"], p["function"],
                                p["args"], result["response"], result["events"])


def block_summary(block: dict[str, Any]) -> dict[str, Any]:
    """A stored block in the Ledger protocol's common shape (``raw`` keeps it
    whole); the genesis configuration is not listed as a transaction."""
    h = block["header"]
    txs = []
    for body in block["transactions"]:
        if "proposal" not in body:
            continue
        p = body["proposal"]
        txs.append({"tx_id": p["tx_id"], "function": p["function"],
                    "creator_msp": p["creator"]["msp_id"],
                    "creator": creator_name(p["creator"]["certificate"]),
                    "timestamp": p["timestamp"], "validation": body["validation"],
                    "signature": body["signature"],
                    "events": [e["type"] for e in body["result"]["events"]]})
    return {"number": h["number"], "hash": block["hash"],
            "previous_hash": h["previous_hash"], "data_hash": h["data_hash"],
            "timestamp": h["timestamp"], "tx_count": h["tx_count"],
            "signature": block["signature"], "transactions": txs, "raw": block}
