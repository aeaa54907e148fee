"""Fixtures of the foundation tests: an embedded node, clients per identity, and
the storage targets (SQLite always; PostgreSQL when CITYUNION_TEST_PG_DSN is set,
required when CI is set)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Clients, StoreTarget, pg_base_dsn, with_database

from ledger.embedded import EmbeddedNode


@pytest.fixture
def node(tmp_path: Path) -> Iterator[EmbeddedNode]:
    """A fresh embedded ledger (SQLite) under tmp_path, closed afterwards."""
    n = EmbeddedNode(tmp_path / "ledger")
    yield n
    n.close()


@pytest.fixture
def ids(node: EmbeddedNode) -> Clients:
    """``ids(org, user)`` is that identity's EmbeddedLedger client on ``node``."""
    return Clients(node)


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A DSN of a fresh PostgreSQL database, dropped afterwards.

    The database uses an ICU language collation (en-US) where the server has
    ICU, so that code relying on the server's collation for key order fails
    here rather than on some production server.
    """
    import psycopg

    base = pg_base_dsn()
    name = f"cu_test_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as admin:
        try:
            admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 "
                          "LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
        except psycopg.Error:  # no ICU, or a server older than 15
            admin.execute(f"CREATE DATABASE {name}")
    try:
        yield with_database(base, name)
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", pytest.param("postgres",
                                               marks=pytest.mark.postgres)])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    """Each storage the embedded ledger supports; open a node with ``.open()``."""
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    return StoreTarget(request.param, dsn, tmp_path / "ledger")
