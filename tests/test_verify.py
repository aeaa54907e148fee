"""Offline verification detects tampering with any stored byte.

One module-scoped chain holds a scenario and a "rich" block B with several
transactions (one of them invalid by MVCC, the last with two events) followed
by one more block. Each test changes the SQLite file directly (sqlite3, as an
attacker with file access would), runs verify, checks that the report names
block B (and the transaction where one can be told), and restores the file.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import CENTER, Clients, identifier_args, run_scenario

from chaincode.encoding import canonical_json
from ledger import crypto
from ledger.connect import EmbeddedConnection
from ledger.embedded import MVCC_READ_CONFLICT, VALID, EmbeddedNode, data_hash
from ledger.protocol import VerifyReport


@dataclass
class Chain:
    node: EmbeddedNode
    db: Path
    block: int  # the rich block B
    tx_id: str  # B's last transaction (valid, two events)
    tx_index: int
    key: str  # a head key whose latest version was written in B
    first_block: int  # the block of that key's first version

    def verify(self) -> VerifyReport:
        return self.node.verify()


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    node = EmbeddedNode(tmp_path_factory.mktemp("verify") / "ledger")
    try:
        yield _build(node)
    finally:
        node.close()


def _build(node: EmbeddedNode) -> Chain:
    ids = Clients(EmbeddedConnection(node))
    run_scenario(ids)
    ids("Taicang").submit("RegisterDepartment", {"code": "health", "name": "Health",
                                                 "duties": ["health"]})
    ks, ka = ids("Kunshan", "transport"), ids("Kunshan", "admin")
    made = [ks.submit("RegisterIdentifier", identifier_args(kind, scheme))
            for kind, scheme in (("object", "asset"), ("object", "asset"),
                                 ("place", "poi"), ("organisation", "uscc"))]
    obj, obj2, place, org = (r.result["id"] for r in made)
    ks.submit("LinkIdentifier", {"identifier_id": obj2, "target_id": place,
                                 "relation": "attached"})
    # Block B: the committer waits for exactly these four transactions.
    calls = [
        (ks, "LinkIdentifier", {"identifier_id": obj, "target_id": place,
                                "relation": "attached"}),
        (ka, "LinkIdentifier", {"identifier_id": obj, "target_id": org,
                                "relation": "organisation"}),  # stale: MVCC
        (ids("Taicang", "health"), "RegisterIdentifier", identifier_args()),
        (ka, "LinkIdentifier", {"identifier_id": obj2, "target_id": org,
                                "relation": "organisation"}),  # two events
    ]
    defaults = node.block_max_txs, node.block_timeout
    node.block_max_txs, node.block_timeout = len(calls), 30.0
    try:
        futures = [node.submit(*client._proposal(function, args))
                   for client, function, args in calls]
        receipts = [f.result(timeout=30) for f in futures]
    finally:
        node.block_max_txs, node.block_timeout = defaults
    assert [r.status for r in receipts] == [VALID, MVCC_READ_CONFLICT, VALID, VALID]
    assert len({r.block_number for r in receipts}) == 1, "B must be one block"
    assert len(receipts[-1].events) == 2
    ids(CENTER).submit("RunClearing", {"business_day": "2026-12-01"})
    history = node.history(f"a~{obj2}")
    assert history[-1].block_number == receipts[-1].block_number
    assert node.verify().ok
    return Chain(node, node.data_dir / "ledger.sqlite", receipts[-1].block_number,
                 receipts[-1].tx_id, 3, f"a~{obj2}", history[0].block_number)


# ------------------------------------------------------------ file surgery
def _sql(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    with closing(sqlite3.connect(db, isolation_level=None, timeout=10)) as conn:
        return list(conn.execute(sql, params).fetchall())


CLUSTERED = {"state": ("key",), "history": ("key", "block", "tx")}  # no rowid


def flip(text: str, offset: int) -> str:
    """The text with one character changed (hex digits stay hex digits)."""
    c = text[offset]
    new = "0123456789abcdef"[("0123456789abcdef".index(c) + 1) % 16] \
        if c in "0123456789abcdef" else chr(ord(c) ^ 1)
    return text[:offset] + new + text[offset + 1:]


@contextmanager
def changed(chain: Chain, table: str, column: str, where: str,
            params: tuple[Any, ...], offset: int | None = None) -> Iterator[str]:
    """Flip one character of one stored value; restore it afterwards."""
    # Address the row by its identity, as the change may hit the columns of
    # ``where``: the rowid, or the primary key of a table without one.
    ident = CLUSTERED.get(table, ("rowid",))
    rows = _sql(chain.db, f"SELECT {', '.join(ident)}, {column} FROM {table} "
                f"WHERE {where}", params)
    assert len(rows) == 1, f"{table}.{column} WHERE {where} {params}: {rows}"
    *row_id, old = rows[0]
    new = flip(old, len(old) // 2 if offset is None else offset)
    match = " AND ".join(f"{c} = ?" for c in ident)
    _sql(chain.db, f"UPDATE {table} SET {column} = ? WHERE {match}", (new, *row_id))
    try:
        yield new
    finally:
        key = [new if c == column else v for c, v in zip(ident, row_id, strict=True)]
        _sql(chain.db, f"UPDATE {table} SET {column} = ? WHERE {match}", (old, *key))
    assert chain.verify().ok, "restoring the file failed"


@contextmanager
def deleted(chain: Chain, table: str, where: str,
            params: tuple[Any, ...]) -> Iterator[None]:
    rows = _sql(chain.db, f"SELECT * FROM {table} WHERE {where}", params)
    assert len(rows) == 1
    _sql(chain.db, f"DELETE FROM {table} WHERE {where}", params)
    try:
        yield
    finally:
        marks = ", ".join("?" * len(rows[0]))
        _sql(chain.db, f"INSERT INTO {table} VALUES ({marks})", tuple(rows[0]))
    assert chain.verify().ok, "restoring the file failed"


def offsets(length: int, seed: str, count: int = 6) -> list[int]:
    rnd = random.Random(seed)
    return sorted({0, length - 1, *(rnd.randrange(length) for _ in range(count))})


def detected(chain: Chain, block: int, tx_ids: set[str | None] | None = None
             ) -> VerifyReport:
    report = chain.verify()
    assert report.ok is False, "tampering went unnoticed"
    assert report.error
    assert report.block_number == block, report
    if tx_ids is not None:
        assert report.tx_id in tx_ids, report
    return report


# ------------------------------------------------------------------- tests
def test_untampered_chain_verifies(chain: Chain) -> None:
    report = chain.verify()
    assert report.ok and report.error is None
    height = chain.node.height()
    txs = _sql(chain.db, "SELECT COUNT(*) FROM txs WHERE block > 0")[0][0]
    events = _sql(chain.db, "SELECT COUNT(*) FROM events")[0][0]
    assert (report.blocks, report.transactions, report.events) == (height, txs,
                                                                    events)


@pytest.mark.parametrize("column", ["header", "hash", "signature"])
def test_block_columns(chain: Chain, column: str) -> None:
    length = len(_sql(chain.db, f"SELECT {column} FROM blocks WHERE number = ?",
                      (chain.block,))[0][0])
    for offset in offsets(length, column):
        with changed(chain, "blocks", column, "number = ?", (chain.block,), offset):
            detected(chain, chain.block)


def test_genesis_block(chain: Chain) -> None:
    length = len(_sql(chain.db, "SELECT body FROM txs WHERE block = 0")[0][0])
    for offset in offsets(length, "genesis", 3):
        with changed(chain, "txs", "body", "block = 0", (), offset):
            detected(chain, 0)


def test_tx_body_at_random_offsets(chain: Chain) -> None:
    where, key = "tx_id = ?", (chain.tx_id,)
    length = len(_sql(chain.db, f"SELECT body FROM txs WHERE {where}", key)[0][0])
    for offset in offsets(length, "body", 12):
        with changed(chain, "txs", "body", where, key, offset):
            detected(chain, chain.block, {None, chain.tx_id})


def test_tx_id_column(chain: Chain) -> None:
    with changed(chain, "txs", "tx_id", "tx_id = ?", (chain.tx_id,)) as forged:
        detected(chain, chain.block, {chain.tx_id, forged})


@pytest.mark.parametrize("column", ["payload", "type", "tx_id"])
@pytest.mark.parametrize("event", [0, 1])
def test_event_columns(chain: Chain, column: str, event: int) -> None:
    with changed(chain, "events", column, "block = ? AND tx = ? AND idx = ?",
                 (chain.block, chain.tx_index, event)):
        detected(chain, chain.block, {chain.tx_id})


def test_deleted_event(chain: Chain) -> None:
    # B's last event; earlier transactions of B have events too, and the report
    # must name the transaction that lost one.
    with deleted(chain, "events", "block = ? AND tx = ? AND idx = 1",
                 (chain.block, chain.tx_index)):
        detected(chain, chain.block, {chain.tx_id})


def test_forged_event(chain: Chain) -> None:
    row = _sql(chain.db, "SELECT * FROM events WHERE block = ? AND tx = ? "
               "AND idx = 1", (chain.block, chain.tx_index))[0]
    _sql(chain.db, "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
         (row[0], row[1], 2, *row[3:]))
    try:
        detected(chain, chain.block, {chain.tx_id})
    finally:
        _sql(chain.db, "DELETE FROM events WHERE block = ? AND tx = ? AND idx = 2",
             (chain.block, chain.tx_index))
    assert chain.verify().ok


def test_deleted_last_tx_of_a_block(chain: Chain) -> None:
    with deleted(chain, "txs", "block = ? AND idx = ?",
                 (chain.block, chain.tx_index)):
        detected(chain, chain.block)


def test_state_value(chain: Chain) -> None:
    with changed(chain, "state", "value", "key = ?", (chain.key,)):
        detected(chain, chain.block)


def test_deleted_state_row(chain: Chain) -> None:
    with deleted(chain, "state", "key = ?", (chain.key,)):
        detected(chain, chain.block)


@pytest.mark.parametrize("which", ["latest", "first"])
def test_history_value(chain: Chain, which: str) -> None:
    block = chain.block if which == "latest" else chain.first_block
    with changed(chain, "history", "value", "key = ? AND block = ?",
                 (chain.key, block)):
        detected(chain, block)


def test_resealed_block_still_needs_the_node_key(chain: Chain) -> None:
    """Rewrite a tx, then recompute data hash, header and block hash: only the
    node's SM2 signature is left to give it away."""
    header_text, old_hash = _sql(chain.db, "SELECT header, hash FROM blocks "
                                 "WHERE number = ?", (chain.block,))[0]
    bodies = [b for (b,) in _sql(chain.db, "SELECT body FROM txs WHERE block = ? "
                                 "ORDER BY idx", (chain.block,))]
    forged = bodies[2].replace('"Taicang"', '"Shanghai"', 1)
    assert forged != bodies[2]
    header = json.loads(header_text)
    header["data_hash"] = data_hash([*bodies[:2], forged, *bodies[3:]])
    new_header = canonical_json(header).decode()
    new_hash = crypto.sm3_hex(new_header.encode())
    _sql(chain.db, "UPDATE txs SET body = ? WHERE block = ? AND idx = 2",
         (forged, chain.block))
    _sql(chain.db, "UPDATE blocks SET header = ?, hash = ? WHERE number = ?",
         (new_header, new_hash, chain.block))
    try:
        report = detected(chain, chain.block)
        assert "signature" in (report.error or "")
    finally:
        _sql(chain.db, "UPDATE txs SET body = ? WHERE block = ? AND idx = 2",
             (bodies[2], chain.block))
        _sql(chain.db, "UPDATE blocks SET header = ?, hash = ? WHERE number = ?",
             (header_text, old_hash, chain.block))
    assert chain.verify().ok


def test_truncated_chain(chain: Chain) -> None:
    """Dropping the newest block leaves world state that no block explains."""
    last = chain.node.height() - 1
    with deleted(chain, "blocks", "number = ?", (last,)):
        report = chain.verify()
        assert report.ok is False and report.block_number == last, report
