"""The read-model database, over SQLite or PostgreSQL.

Statements are written once, in the dialect of ``ledger.sql`` (``?``
placeholders, ``INSERT ... ON CONFLICT``, row-value comparisons,
``LIMIT/OFFSET``), as the block store's are. SQLite (the default, a file in the data
directory) uses one connection per thread in WAL mode, so API readers never
block the projection writer; PostgreSQL uses a psycopg 3 connection pool.
Reads are autocommit; writes go through :meth:`Database.transaction`, which
commits everything done on its cursor at once or nothing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ledger.sql import connect_sqlite, for_driver, is_postgres

Row = dict[str, Any]


class Cursor:
    """Executes our dialect inside one open transaction."""

    def __init__(self, raw: Any, postgres: bool) -> None:
        self._raw = raw
        self._postgres = postgres

    def _sql(self, sql: str) -> str:
        return for_driver(sql, self._postgres)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        self._raw.execute(self._sql(sql), params)
        return int(self._raw.rowcount)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._raw.executemany(self._sql(sql), rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._raw.execute(self._sql(sql), params)
        names = [d[0] for d in self._raw.description]
        return [dict(zip(names, r, strict=True)) for r in self._raw.fetchall()]


class Database:
    """SQLite file (default) or PostgreSQL DSN holding the read models."""

    def __init__(self, target: str | Path, pool_size: int = 10) -> None:
        self.target = str(target)
        self.postgres = is_postgres(self.target)
        self._local = threading.local()
        self._sqlite_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pool: Any = None
        if self.postgres:
            from psycopg_pool import ConnectionPool

            self._pool = ConnectionPool(self.target, min_size=1, max_size=pool_size,
                                        kwargs={"autocommit": True}, open=True)
        else:
            Path(self.target).parent.mkdir(parents=True, exist_ok=True)

    def _sqlite(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # A crash may lose the last commits, but each commit holds a view
            # update together with its position, so the follower redoes them.
            conn = connect_sqlite(self.target, "NORMAL")
            self._local.conn = conn
            with self._lock:
                self._sqlite_conns.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """One atomic unit of work: committed on exit, rolled back on error."""
        if self._pool is not None:
            with self._pool.connection() as conn, conn.transaction():
                yield Cursor(conn.cursor(), True)
            return
        conn = self._sqlite()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield Cursor(conn.cursor(), False)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of one read (autocommit: it sees only committed data)."""
        if self._pool is not None:
            with self._pool.connection() as conn:
                return Cursor(conn.cursor(), True).query(sql, params)
        return Cursor(self._sqlite().cursor(), False).query(sql, params)

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def script(self, statements: str) -> None:
        """Run ``;``-separated DDL in one transaction."""
        with self.transaction() as cur:
            for stmt in statements.split(";"):
                if stmt.strip():
                    cur.execute(stmt)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        with self._lock:
            for conn in self._sqlite_conns:
                conn.close()
            self._sqlite_conns.clear()
        self._local = threading.local()
