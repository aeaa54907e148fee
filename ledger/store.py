"""Block store and world state in SQL: SQLite by default, PostgreSQL with a DSN.

One database transaction writes a whole block (block row, its transactions, their
events, the valid write sets into ``state`` and ``history``), so a crash leaves
either the complete block or none of it. Each thread gets its own connection;
reads are autocommit, so a read sees only committed blocks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ledger.sql import connect_sqlite, for_driver, is_postgres

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    number BIGINT PRIMARY KEY, header TEXT NOT NULL, hash TEXT NOT NULL,
    signature TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS txs (
    block BIGINT NOT NULL, idx INTEGER NOT NULL, tx_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL, PRIMARY KEY (block, idx));
CREATE TABLE IF NOT EXISTS events (
    block BIGINT NOT NULL, tx INTEGER NOT NULL, idx INTEGER NOT NULL,
    tx_id TEXT NOT NULL, type TEXT NOT NULL, payload TEXT NOT NULL,
    PRIMARY KEY (block, tx, idx));
CREATE TABLE IF NOT EXISTS state (
    key {key} PRIMARY KEY, value TEXT NOT NULL, block BIGINT NOT NULL,
    tx INTEGER NOT NULL){clustered};
CREATE TABLE IF NOT EXISTS history (
    key {key} NOT NULL, block BIGINT NOT NULL, tx INTEGER NOT NULL, value TEXT,
    PRIMARY KEY (key, block, tx)){clustered};
"""

# Keys compare and sort byte-wise, as on Fabric: range scans end at "\x7f" and
# rely on "~" sorting after letters and digits. SQLite's default BINARY collation
# does this; PostgreSQL must be told, or a language collation (en_US, ICU) that
# ignores punctuation would return wrong ranges.
KEY_TYPE = {"sqlite": "TEXT", "postgres": 'TEXT COLLATE "C"'}

Version = tuple[int, int]
Write = tuple[str, str | None]  # key, value (None = delete)


class Store:
    """SQL storage for the embedded ledger."""

    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        self.is_postgres = is_postgres(self.target)
        self._local = threading.local()
        dialect = "postgres" if self.is_postgres else "sqlite"
        # SQLite: keyed tables without a rowid are one B-tree, not two.
        schema = SCHEMA.format(key=KEY_TYPE[dialect],
                               clustered="" if self.is_postgres else " WITHOUT ROWID")
        with self._tx() as cur:
            for stmt in schema.split(";"):
                if stmt.strip():
                    cur.execute(stmt)

    # ------------------------------------------------------------ connections
    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.is_postgres:
                import psycopg

                conn = psycopg.connect(self.target, autocommit=True)
            else:
                conn = connect_sqlite(self.target, "FULL")
            self._local.conn = conn
        return conn

    def _sql(self, sql: str) -> str:
        return for_driver(sql, self.is_postgres)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        cur = self._conn().execute(self._sql(sql), params)
        return list(cur.fetchall())

    class _Tx:
        def __init__(self, store: Store) -> None:
            self.store = store

        def __enter__(self) -> Any:
            conn = self.store._conn()
            if self.store.is_postgres:
                self.ctx = conn.transaction()
                self.ctx.__enter__()
                return conn.cursor()
            conn.execute("BEGIN IMMEDIATE")
            return conn.cursor()

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            conn = self.store._conn()
            if self.store.is_postgres:
                self.ctx.__exit__(exc_type, exc, tb)
            elif exc_type is None:
                conn.execute("COMMIT")
            else:
                conn.execute("ROLLBACK")

    def _tx(self) -> Store._Tx:
        return Store._Tx(self)

    def close(self) -> None:
        """Close the calling thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ------------------------------------------------------------------ reads
    def height(self) -> int:
        row = self._query("SELECT MAX(number) FROM blocks")
        return 0 if row[0][0] is None else int(row[0][0]) + 1

    def get_state(self, key: str) -> tuple[str, Version] | None:
        rows = self._query("SELECT value, block, tx FROM state WHERE key = ?", (key,))
        return (rows[0][0], (rows[0][1], rows[0][2])) if rows else None

    def get_states(self, keys: Sequence[str]) -> dict[str, tuple[str, Version]]:
        """Several keys at once: {key: (value, version)} for those that exist."""
        found: dict[str, tuple[str, Version]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            marks = ", ".join("?" * len(chunk))
            for key, value, block, tx in self._query(
                    f"SELECT key, value, block, tx FROM state WHERE key IN ({marks})",
                    chunk):
                found[key] = (value, (block, tx))
        return found

    def range(self, start: str, end: str) -> list[tuple[str, str, Version]]:
        rows = self._query("SELECT key, value, block, tx FROM state WHERE key >= ? "
                           "AND key < ? ORDER BY key", (start, end))
        return [(r[0], r[1], (r[2], r[3])) for r in rows]

    def history(self, key: str) -> list[tuple[int, int, str | None, str]]:
        """(block, tx, value or None for a delete, tx body) oldest first."""
        return [tuple(r) for r in self._query(  # type: ignore[misc]
            "SELECT h.block, h.tx, h.value, t.body FROM history h JOIN txs t "
            "ON t.block = h.block AND t.idx = h.tx WHERE h.key = ? "
            "ORDER BY h.block, h.tx", (key,))]

    def block(self, number: int) -> tuple[str, str, str, list[str]] | None:
        rows = self._query("SELECT header, hash, signature FROM blocks "
                           "WHERE number = ?", (number,))
        if not rows:
            return None
        txs = self._query("SELECT body FROM txs WHERE block = ? ORDER BY idx",
                          (number,))
        return rows[0][0], rows[0][1], rows[0][2], [t[0] for t in txs]

    def block_hash(self, number: int) -> str | None:
        rows = self._query("SELECT hash FROM blocks WHERE number = ?", (number,))
        return str(rows[0][0]) if rows else None

    def known_tx_ids(self, tx_ids: Sequence[str]) -> set[str]:
        """Those of ``tx_ids`` already in the chain."""
        found: set[str] = set()
        for i in range(0, len(tx_ids), 500):
            chunk = tx_ids[i:i + 500]
            marks = ", ".join("?" * len(chunk))
            found.update(r[0] for r in self._query(
                f"SELECT tx_id FROM txs WHERE tx_id IN ({marks})", chunk))
        return found

    def transaction(self, tx_id: str) -> tuple[int, int, str] | None:
        """(block, index, body) of the stored transaction ``tx_id``."""
        rows = self._query("SELECT block, idx, body FROM txs WHERE tx_id = ?",
                           (tx_id,))
        return (int(rows[0][0]), int(rows[0][1]), str(rows[0][2])) if rows else None

    def has_tx(self, tx_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM txs WHERE tx_id = ?", (tx_id,)))

    def events_after(self, block: int, tx: int, idx: int,
                     limit: int = 1000) -> list[tuple[int, int, int, str, str]]:
        return [tuple(r) for r in self._query(  # type: ignore[misc]
            "SELECT block, tx, idx, tx_id, payload FROM events WHERE "
            "(block, tx, idx) > (?, ?, ?) ORDER BY block, tx, idx LIMIT ?",
            (block, tx, idx, limit))]

    def events_of_block(self, number: int) -> list[tuple[int, int, str, str, str]]:
        return [tuple(r) for r in self._query(  # type: ignore[misc]
            "SELECT tx, idx, tx_id, type, payload FROM events WHERE block = ? "
            "ORDER BY tx, idx", (number,))]

    def tx_ids_of_block(self, number: int) -> list[str]:
        """The ids of block ``number``'s transactions, in block order."""
        return [str(r[0]) for r in self._query(
            "SELECT tx_id FROM txs WHERE block = ? ORDER BY idx", (number,))]

    def all_state(self) -> Iterator[tuple[str, str, int, int]]:
        yield from self._query("SELECT key, value, block, tx FROM state ORDER BY key")

    def all_history(self) -> Iterator[tuple[str, int, int, str | None]]:
        """Every (key, block, tx, value or None) of the key history, by key."""
        yield from self._query(
            "SELECT key, block, tx, value FROM history ORDER BY key, block, tx")

    # ----------------------------------------------------------------- writes
    def append_block(self, number: int, header: str, block_hash: str,
                     signature: str, txs: Sequence[tuple[str, str]],
                     writes: Sequence[tuple[int, Sequence[Write]]],
                     events: Sequence[tuple[int, int, str, str, str]]) -> None:
        """Write one block atomically.

        ``txs`` are (tx_id, body) in block order; ``writes`` (tx index, write set)
        for valid transactions only; ``events`` (tx, idx, tx_id, type, payload).
        """
        upsert = ("INSERT INTO state (key, value, block, tx) VALUES (?, ?, ?, ?) "
                  "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                  "block = excluded.block, tx = excluded.tx")
        with self._tx() as cur:
            cur.execute(self._sql("INSERT INTO blocks VALUES (?, ?, ?, ?)"),
                        (number, header, block_hash, signature))
            cur.executemany(self._sql("INSERT INTO txs VALUES (?, ?, ?, ?)"),
                            [(number, i, t[0], t[1]) for i, t in enumerate(txs)])
            hist: list[tuple[str, int, int, str | None]] = []
            final: dict[str, tuple[str | None, int]] = {}  # a later write wins
            for tx_index, wset in writes:
                for key, value in wset:
                    hist.append((key, number, tx_index, value))
                    final[key] = (value, tx_index)
            puts = [(k, v, number, t) for k, (v, t) in final.items() if v is not None]
            dels = [(k,) for k, (v, _) in final.items() if v is None]
            for batch, sql in ((puts, upsert),
                               (dels, "DELETE FROM state WHERE key = ?"),
                               (hist, "INSERT INTO history VALUES (?, ?, ?, ?)")):
                if batch:
                    cur.executemany(self._sql(sql), batch)
            if events:
                cur.executemany(self._sql("INSERT INTO events VALUES "
                                          "(?, ?, ?, ?, ?, ?)"),
                                [(number, *e) for e in events])
