"""Fixtures of the scenario suite: the same tests on every ledger.

``conn`` is one ``Connection`` per ledger kind for the whole session: an embedded
node in a temporary directory, and the Fabric network of ``fabric_connection``
(tests/conftest.py: it starts the network once, and skips or fails where the
Fabric binaries are missing). Starting a Fabric network takes far too long to do
per test, so tests share the ledger: each makes what it needs under natural keys
no other test uses (``World.unique``, ``unique_name``, ``unique_hash``,
``fresh_day``) and expects nothing of the ledger it did not make. The embedded
ledger is shared the same way, which shows that the tests need no fresh ledger.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import Clients, World, build_world

from ledger.connect import connect
from ledger.protocol import Connection, Ledger


@pytest.fixture(scope="session", params=[
    "embedded", pytest.param("fabric", marks=pytest.mark.fabric)])
def conn(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connection]:
    """The ledger the scenarios run on, shared by the session."""
    if request.param == "fabric":
        yield request.getfixturevalue("fabric_connection")  # closed by its owner
        return
    embedded = connect("embedded",
                       data_dir=tmp_path_factory.mktemp("scenarios") / "ledger")
    try:
        yield embedded
    finally:
        embedded.close()


# A department identity whose department no test registers (other suites share
# the Fabric network and register departments of their own, so the wallet's
# standard department users cannot serve as "unregistered").
GHOST = "ghost"
GHOST_DEPARTMENT = "never-registered"


@pytest.fixture(scope="session")
def ids(conn: Connection) -> Clients[Ledger]:
    """``ids(org, user)`` is that identity's client of ``conn``; every city has a
    ``ghost`` department identity of a department never registered."""
    for city in ("Shanghai", "Kunshan", "Taicang"):
        if conn.find_user(city, "department", GHOST_DEPARTMENT) is None:
            conn.enrol(city, GHOST, "department", GHOST_DEPARTMENT)
    return Clients(conn)


@pytest.fixture(scope="module")
def shared(ids: Clients[Ledger]) -> World:
    """One world for the rejection tests of a module (none of them may change
    it)."""
    return build_world(ids)


@pytest.fixture
def world(ids: Clients[Ledger]) -> World:
    """A world of its own, for tests that change it."""
    return build_world(ids)
