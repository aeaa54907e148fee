"""Faults on the native network: a member city's peer down, a Raft orderer down,
the chaincode service killed, a client's peer restarted under its event stream.
Each test puts the network back as it found it (other suites share it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from helpers import unique_hash

from ledger.connect import connect
from ledger.protocol import CommittedEvent, Connection, Position, Receipt
from network.launcher import Network

pytestmark = pytest.mark.fabric


@contextmanager
def stopped(network: Network, name: str, kill: bool = False) -> Iterator[None]:
    assert network.stop_node(name, kill=kill), f"{name} was not running"
    try:
        yield
    finally:
        network.start_node(name)


def register(conn: Connection, city: str = "Kunshan") -> Receipt:
    return conn.client(city, "admin").submit("RegisterDepartment", {
        "code": f"f{unique_hash()[:10]}", "name": "Fault test", "duties": ["x"]})


def wait_for(check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_city_peer_down_majority_still_commits_then_it_catches_up(
        fabric_network: Network, fabric_connection: Connection) -> None:
    with stopped(fabric_network, "peer0.shanghai"):
        receipts = [register(fabric_connection, city) for city in ("Kunshan",
                                                                  "Taicang")]
        assert all(r.status == "VALID" for r in receipts)
    # restarted: Shanghai's peer pulls the blocks it missed from the orderers
    shanghai = connect("fabric", network=fabric_network.layout.root)
    try:
        wait_for(lambda: shanghai.client("Shanghai", "auditor").height()
                 > receipts[-1].block_number)
        assert register(fabric_connection, "Shanghai").status == "VALID"
    finally:
        shanghai.close()


def test_a_raft_orderer_down_transactions_still_commit(
        fabric_network: Network, fabric_connection: Connection) -> None:
    for name in ("orderer0", "orderer2"):  # whichever leads, one of them goes
        with stopped(fabric_network, name):
            assert register(fabric_connection).status == "VALID"
    assert register(fabric_connection).status == "VALID"


def test_chaincode_service_killed_and_restarted(
        fabric_network: Network, fabric_connection: Connection) -> None:
    with stopped(fabric_network, "chaincode", kill=True):
        pass  # killed, then started again with the same package id
    assert register(fabric_connection).status == "VALID"


def test_event_stream_resumes_after_its_peer_restarts(
        fabric_network: Network, fabric_connection: Connection) -> None:
    follower = connect("fabric", network=fabric_network.layout.root)
    reader = follower.client("Kunshan", "auditor")  # its Gateway: Kunshan's peer
    height = reader.height()
    seen: list[CommittedEvent] = []
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            for event in reader.events(Position(height - 1, 1 << 30, 0),
                                       follow=True):
                seen.append(event)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        first = register(fabric_connection, "Kunshan")
        wait_for(lambda: any(e.tx_id == first.tx_id for e in seen))
        with stopped(fabric_network, "peer0.kunshan"):
            second = register(fabric_connection, "Taicang")  # through Taicang
        third = register(fabric_connection, "Taicang")
        wanted = [first.tx_id, second.tx_id, third.tx_id]
        wait_for(lambda: all(any(e.tx_id == t for e in seen) for t in wanted))
    finally:
        follower.close()
        thread.join(timeout=10)
    assert not errors, errors
    positions = [e.position for e in seen]
    assert positions == sorted(set(positions)), "events repeated or out of order"
    order = [e.tx_id for e in seen if e.tx_id in wanted]
    assert order == wanted
