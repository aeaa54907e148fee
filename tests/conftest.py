"""Fixtures of the foundation tests: an embedded node, clients per identity, and
the storage targets (SQLite always; PostgreSQL when CITYUNION_TEST_PG_DSN is set,
required when CI is set)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import Clients, StoreTarget, pg_base_dsn, with_database

from ledger.connect import EmbeddedConnection
from ledger.embedded import EmbeddedLedger, EmbeddedNode

if TYPE_CHECKING:
    from ledger.protocol import Connection
    from network.launcher import Network


@pytest.fixture
def node(tmp_path: Path) -> Iterator[EmbeddedNode]:
    """A fresh embedded ledger (SQLite) under tmp_path, closed afterwards."""
    n = EmbeddedNode(tmp_path / "ledger")
    yield n
    n.close()


@pytest.fixture
def ids(node: EmbeddedNode) -> Clients[EmbeddedLedger]:
    """``ids(org, user)`` is that identity's EmbeddedLedger client on ``node``."""
    return Clients(EmbeddedConnection(node))


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


# ------------------------------------------------------------------ Fabric
FABRIC_REQUIRED = ("Fabric binaries are not built: run `cityunion network binaries` "
                   "(required in CI)")


@pytest.fixture(scope="session")
def fabric_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """One real Fabric 2.5 network (3 Raft orderers, 4 peers, 4 CAs, the
    chaincode service) for the whole session, on the first free port range from
    $CITYUNION_TEST_FABRIC_PORT (default 17000); stopped afterwards."""
    from network import binaries
    from network.launcher import Network
    from network.processes import port_in_use

    if not binaries.is_built():
        if os.environ.get("CI"):
            pytest.fail(FABRIC_REQUIRED)
        pytest.skip(FABRIC_REQUIRED)
    base = int(os.environ.get("CITYUNION_TEST_FABRIC_PORT", "17000"))
    root = tmp_path_factory.mktemp("fabric") / "network"
    while any(port_in_use(p) for p in Network(root, base_port=base).ports()):
        base += 400  # another session's network (or anything else) is there
    net = Network(root, base_port=base)
    try:
        net.up()
        yield net
    finally:
        net.down()


@pytest.fixture(scope="session")
def fabric_connection(fabric_network: Network) -> Iterator[Connection]:
    """A ``Connection`` to the session's Fabric network (its CA-enrolled wallet)."""
    from ledger.connect import connect

    conn = connect("fabric", network=fabric_network.layout.root)
    yield conn
    conn.close()
