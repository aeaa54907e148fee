"""The one SQL dialect layer over SQLite and PostgreSQL, shared by the ledger's
block store and the read-model database.

Statements are written once, with ``?`` placeholders and the SQL both engines
share; PostgreSQL (psycopg 3) gets ``%s``. The placeholder is rewritten as text,
so a statement must not hold a literal ``?``: pass such values as parameters.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def is_postgres(target: str | Path) -> bool:
    """Whether ``target`` is a PostgreSQL DSN (otherwise a SQLite file)."""
    return str(target).startswith(("postgresql://", "postgres://"))


def for_driver(sql: str, postgres: bool) -> str:
    """``sql`` with the placeholders its driver takes."""
    return sql.replace("?", "%s") if postgres else sql


def connect_sqlite(target: str | Path, synchronous: str) -> sqlite3.Connection:
    """An autocommit connection in WAL mode, usable from any thread (each of
    ours is still used by one thread at a time), with ``PRAGMA synchronous``
    set to ``synchronous`` (FULL, NORMAL)."""
    conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False,
                           timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn
