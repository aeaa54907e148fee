"""The embedded ledger: block structure and signatures, history and ranges, the
event feed, MVCC validation, batching of concurrent submits, endorsement
checks, reopening. Storage-dependent tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    ALL_IDENTITIES,
    CENTER,
    CITIES,
    DAY,
    Clients,
    StoreTarget,
    batch_args,
    build_world,
    card_record,
    identifier_args,
    register_departments,
    run_scenario,
    snapshot,
)

from chaincode.encoding import canonical_json
from chaincode.stub import prefix_range
from ledger import crypto
from ledger.connect import EmbeddedConnection
from ledger.embedded import (
    GENESIS_PREVIOUS,
    MVCC_READ_CONFLICT,
    PHANTOM_READ_CONFLICT,
    VALID,
    EmbeddedLedger,
    EmbeddedNode,
    data_hash,
)
from ledger.msp import MembershipError, parse_certificate
from ledger.protocol import (
    CommitError,
    CommittedEvent,
    EndorseError,
    LedgerError,
    Position,
    Receipt,
    SubmitError,
)


def _public_key(certificate: str | bytes) -> bytes:
    cert = certificate.encode() if isinstance(certificate, str) else certificate
    return bytes.fromhex(parse_certificate(cert)["public_key"])


def _tx(node: EmbeddedNode, receipt: Receipt) -> dict[str, Any]:
    txs = node.block(receipt.block_number)["transactions"]
    found = [t for t in txs if t["proposal"]["tx_id"] == receipt.tx_id]
    assert len(found) == 1, f"{receipt.tx_id} not once in its block"
    return found[0]


# ---------------------------------------------------------------- membership
def test_wallet_holds_every_identity(node: EmbeddedNode) -> None:
    roles = {"admin": "city_admin", "transport": "department",
             "health": "department", "terminal": "terminal", "auditor": "auditor"}
    for org, user in ALL_IDENTITIES:
        identity = node.wallet.identity(org, user)
        subject = identity.subject
        assert (subject["org"], subject["name"]) == (org, user)
        expected = {"admin": "center_admin", "auditor": "auditor",
                    "node": "auditor"}[user] if org == CENTER else roles[user]
        assert subject["role"] == expected
        assert subject.get("department") == (user if expected == "department"
                                             else None)
        assert identity.msp_id == f"{org}MSP"
        # the certificate chains to the root in the genesis block
        assert node.membership.public_key_of(identity.creator) == \
            _public_key(identity.certificate)
    with pytest.raises(MembershipError, match="known: admin, auditor"):
        node.wallet.identity("Kunshan", "mayor")
    with pytest.raises(MembershipError, match="unknown organisation"):
        node.wallet.identity("Beijing", "admin")


# ----------------------------------------------------------- blocks and txs
def test_blocks_link_sign_and_carry_their_transactions(store_target: StoreTarget
                                                       ) -> None:
    with store_target.open() as node:
        sqlite_file = store_target.data_dir / "ledger.sqlite"
        assert sqlite_file.exists() == (store_target.dsn is None)
        ids = Clients(EmbeddedConnection(node))
        receipts = run_scenario(ids)
        height = node.height()
        assert height == 1 + len(receipts)  # genesis + one block per submit here
        backend = node.backend
        node_public = _public_key(node.wallet.identity(CENTER, "node").certificate)

        genesis = node.block(0)
        assert genesis["header"]["number"] == 0
        assert genesis["header"]["previous_hash"] == GENESIS_PREVIOUS
        config = genesis["transactions"][0]["config"]
        assert set(config["organisations"]) == {
            "CenterMSP", *(f"{c}MSP" for c in CITIES)}
        previous = GENESIS_PREVIOUS
        for number in range(height):
            block = node.block(number)
            header = block["header"]
            assert set(header) == {"number", "previous_hash", "data_hash",
                                   "tx_count", "timestamp"}
            assert header["number"] == number
            assert header["previous_hash"] == previous
            assert block["hash"] == crypto.sm3_hex(canonical_json(header))
            assert backend.sm2_verify(node_public, bytes.fromhex(block["hash"]),
                                      bytes.fromhex(block["signature"]))
            bodies = [canonical_json(t).decode() for t in block["transactions"]]
            assert header["tx_count"] == len(bodies)
            assert header["data_hash"] == data_hash(bodies)
            previous = block["hash"]

        for name, receipt in receipts.items():
            caller = {"approve": CENTER, "clearing": CENTER, "arbitrate": CENTER,
                      "dispute": "Shanghai", "blacklist": "Shanghai",
                      "confirm": "Taicang"}.get(name, "Kunshan")
            tx = _tx(node, receipt)
            proposal = tx["proposal"]
            assert proposal["creator"]["msp_id"] == f"{caller}MSP"
            assert backend.sm2_verify(_public_key(proposal["creator"]["certificate"]),
                                      canonical_json(proposal),
                                      bytes.fromhex(tx["signature"]))
            assert tx["validation"] == VALID == receipt.status
            assert tx["result"]["events"] == receipt.events
            assert tx["result"]["response"] == receipt.result
            assert node.store.has_tx(receipt.tx_id)
        with pytest.raises(LedgerError, match=f"no block {height}"):
            node.block(height)
        report = node.verify()
        assert report.ok, report.error
        assert (report.blocks, report.transactions) == (height, len(receipts))
        assert report.events == sum(len(r.events) for r in receipts.values())


def test_history_and_range(store_target: StoreTarget) -> None:
    with store_target.open() as node:
        ids = Clients(EmbeddedConnection(node))
        receipts = run_scenario(ids)
        scheme = receipts["scheme"].result["id"]
        history = node.history(f"a~{scheme}")
        assert [(v.block_number, v.tx_id) for v in history] == [
            (receipts["scheme"].block_number, receipts["scheme"].tx_id),
            (receipts["approve"].block_number, receipts["approve"].tx_id)]
        assert [v.creator for v in history] == ["KunshanMSP:transport",
                                                "CenterMSP:admin"]
        assert [json.loads(v.value or "")["version"] for v in history] == [1, 2]
        assert not any(v.is_delete for v in history)
        assert history[1].timestamp == _tx(node, receipts["approve"])["proposal"][
            "timestamp"]
        assert node.history("no-such-key") == []

        # ranges are byte-ordered and stop exactly at the prefix
        day2 = "2026-11-21"
        later = [ids("Shanghai").submit("ReportTransactionBatch", batch_args(
            [card_record(f"q{i}", "Taicang", 10 + i)], day)).result["id"]
            for i, day in enumerate((DAY, day2, DAY))]
        start, end = prefix_range(f"day~{DAY}~")
        rows = node.store.range(start, end)
        keys = [k for k, _, _ in rows]
        assert keys == sorted(keys)
        expected = {later[0], later[2]}
        assert {v for _, v, _ in rows} == expected
        assert all(k.startswith(f"day~{DAY}~") for k in keys)
        assert len(node.store.range(*prefix_range(f"day~{day2}~"))) == 1
        assert len(node.store.range(*prefix_range("day~2026-11-2"))) == 3
        assert len(node.store.range(*prefix_range("day~"))) == 4  # + scenario
        # the contract's range read (clearing) sees the same batches
        cleared = ids(CENTER).submit("RunClearing", {"business_day": DAY})
        assert set(cleared.events[0]["data"]["batches"]) == expected


def test_events_resume_exactly_after_a_position(store_target: StoreTarget) -> None:
    with store_target.open() as node:
        ids = Clients(EmbeddedConnection(node))
        receipts = list(run_scenario(ids).values())
        ks = ids("Kunshan", "transport")
        made = [ks.submit("RegisterIdentifier", identifier_args(kind, scheme))
                for kind, scheme in (("object", "asset"), ("place", "poi"),
                                     ("organisation", "uscc"))]
        receipts += made
        obj, place, org = (r.result["id"] for r in made)
        receipts.append(ks.submit("LinkIdentifier", {
            "identifier_id": obj, "target_id": place, "relation": "attached"}))
        receipts.append(ks.submit("LinkIdentifier", {  # links and activates
            "identifier_id": obj, "target_id": org, "relation": "organisation"}))
        assert len(receipts[-1].events) == 2
        events = list(node.events())
        tail = events[-(len(receipts[-1].events) + len(receipts[-2].events)):]
        assert [(e.tx_id, e.type, e.aggregate_id, e.version, e.data)
                for e in tail] == [
            (r.tx_id, ev["type"], ev["aggregate_id"], ev["version"], ev["data"])
            for r in receipts[-2:] for ev in r.events]
        assert [e.tx_id for e in events[:len(receipts) - 2]] == [
            r.tx_id for r in receipts[:-2]]  # one event each
        positions = [e.position for e in events]
        assert positions == sorted(set(positions))
        assert positions[0] == Position(receipts[0].block_number, 0, 0)
        assert positions[-2:] == [Position(receipts[-1].block_number, 0, 0),
                                  Position(receipts[-1].block_number, 0, 1)]
        for k, event in enumerate(events):
            assert list(node.events(after=event.position)) == events[k + 1:]
        assert list(node.events(after=Position(-1, -1, -1))) == events
        # a position between stored ones resumes at the next stored event
        assert list(node.events(after=Position(positions[-1].block, -1, 5))) == \
            events[-2:]


def test_follow_sees_a_later_commit(node: EmbeddedNode, ids: Clients) -> None:
    first = ids("Kunshan").submit("RegisterDepartment", {
        "code": "transport", "name": "Transport", "duties": ["transport"]})
    last = list(node.events())[-1].position
    got: list[CommittedEvent] = []
    started = threading.Event()

    def follow() -> None:
        started.set()
        for ev in node.events(after=last, follow=True):
            got.append(ev)
            break

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    started.wait(5)
    time.sleep(0.2)
    assert got == [], "follow yielded an event that was never committed"
    later = ids("Kunshan", "transport").submit("RegisterIdentifier",
                                               identifier_args("person"))
    thread.join(timeout=5)
    assert not thread.is_alive(), "follow=True did not see the commit"
    assert got[0].tx_id == later.tx_id != first.tx_id
    assert got[0].type == "IdentifierRegistered"
    assert got[0].position == Position(later.block_number, 0, 0)


def test_follow_ends_when_the_node_closes(tmp_path: Path) -> None:
    node = EmbeddedNode(tmp_path / "ledger")
    done = threading.Event()

    def follow() -> None:
        for _ in node.events(follow=True):
            pass
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    time.sleep(0.1)
    node.close()
    assert done.wait(5), "a follower must stop when the node closes"


# ---------------------------------------------------------------------- MVCC
def _links(node: EmbeddedNode, ids: Clients, identifier: str) -> list[Any]:
    state = ids("Kunshan", "auditor").evaluate("GetIdentifier", {"id": identifier})
    return list(state["links"])


def _assert_not_applied(node: EmbeddedNode, tx_id: str, status: str) -> None:
    body = [t for n in range(1, node.height())  # block 0 holds the config
            for t in node.block(n)["transactions"]
            if t["proposal"]["tx_id"] == tx_id]
    assert len(body) == 1 and body[0]["validation"] == status
    assert body[0]["result"]["writes"], "the invalid tx's write set is kept"
    assert not [e for e in node.events() if e.tx_id == tx_id]
    for key, _ in body[0]["result"]["writes"]:
        assert all(v.tx_id != tx_id for v in node.history(key))


def test_mvcc_conflict_in_one_block(store_target: StoreTarget) -> None:
    with store_target.open() as node:
        world = build_world(Clients(EmbeddedConnection(node)))
        place = world.ids("Kunshan", "transport").submit(
            "RegisterIdentifier", identifier_args("place", "poi")).result["id"]
    # Reopen so that a block waits for two transactions: both are simulated
    # against the same committed state before either commits.
    with store_target.open(block_max_txs=2, block_timeout=10) as node:
        ids = Clients(EmbeddedConnection(node))
        height = node.height()
        links = [{"identifier_id": world.obj, "target_id": world.org,
                  "relation": "organisation"},
                 {"identifier_id": world.obj, "target_id": place,
                  "relation": "attached"}]
        outcomes: list[Receipt | CommitError] = []

        def link(args: dict[str, Any], user: str) -> None:
            try:
                outcomes.append(ids("Kunshan", user).submit("LinkIdentifier", args))
            except CommitError as e:
                outcomes.append(e)

        threads = [threading.Thread(target=link, args=(a, u))
                   for a, u in zip(links, ("transport", "admin"), strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        valid = [o for o in outcomes if isinstance(o, Receipt)]
        invalid = [o for o in outcomes if isinstance(o, CommitError)]
        assert len(valid) == 1 and len(invalid) == 1, outcomes
        assert invalid[0].status == MVCC_READ_CONFLICT
        assert invalid[0].tx_id and invalid[0].tx_id in str(invalid[0])
        assert node.height() == height + 1
        assert valid[0].block_number == height
        assert node.store.has_tx(invalid[0].tx_id)  # recorded, as invalid
        _assert_not_applied(node, invalid[0].tx_id, MVCC_READ_CONFLICT)
        assert len(_links(node, ids, world.obj)) == 1
        assert [v.tx_id for v in node.history(f"a~{world.obj}")][-1] == \
            valid[0].tx_id
        report = node.verify()
        assert report.ok, report.error


def test_stale_read_from_an_earlier_block_is_invalid(
        node: EmbeddedNode, ids: Clients, monkeypatch: pytest.MonkeyPatch) -> None:
    world = build_world(ids)
    client = ids("Kunshan", "transport")
    proposal, signature = client._proposal("LinkIdentifier", {
        "identifier_id": world.obj, "target_id": world.person,
        "relation": "attached"})
    endorsed = node.simulate(proposal, signature, None)  # reads a~obj v1
    ids("Kunshan", "admin").submit("LinkIdentifier", {
        "identifier_id": world.obj, "target_id": world.org,
        "relation": "organisation"})  # a~obj is now at v2
    before = snapshot(EmbeddedConnection(node))
    monkeypatch.setattr(node, "simulate", lambda *_: endorsed)
    receipt = node.submit(proposal, signature).result(timeout=10)
    assert receipt.status == MVCC_READ_CONFLICT
    assert receipt.events == []
    assert snapshot(EmbeddedConnection(node))[1] == before[1], \
        "an invalid tx changed world state"
    assert node.height() == before[0] + 1
    monkeypatch.undo()
    _assert_not_applied(node, proposal["tx_id"], MVCC_READ_CONFLICT)
    assert [ln["relation"] for ln in _links(node, ids, world.obj)] == [
        "organisation"]
    assert node.verify().ok


def test_batch_reported_after_clearing_was_simulated_is_a_phantom(
        node: EmbeddedNode, ids: Clients, monkeypatch: pytest.MonkeyPatch) -> None:
    world = build_world(ids)
    proposal, signature = ids(CENTER)._proposal("RunClearing",
                                                {"business_day": world.day})
    endorsed = node.simulate(proposal, signature, None)  # ranges over its batches
    late = ids("Shanghai").submit("ReportTransactionBatch", batch_args(
        [card_record("late", "Kunshan", 5000)], world.day)).result["id"]
    monkeypatch.setattr(node, "simulate", lambda *_: endorsed)
    receipt = node.submit(proposal, signature).result(timeout=10)
    monkeypatch.undo()
    assert receipt.status == PHANTOM_READ_CONFLICT and receipt.events == []
    _assert_not_applied(node, proposal["tx_id"], PHANTOM_READ_CONFLICT)
    rerun = ids(CENTER).submit("RunClearing", {"business_day": world.day})
    assert set(rerun.events[0]["data"]["batches"]) == {world.batch, late}
    assert node.verify().ok


# ------------------------------------------------------------------ batching
def test_concurrent_submits_are_batched_and_all_commit(store_target: StoreTarget
                                                       ) -> None:
    users = [(c, u) for c in CITIES for u in ("transport", "health", "admin")][:8]
    per_thread = 6
    with store_target.open(block_timeout=0.05) as node:
        ids = Clients(EmbeddedConnection(node))
        register_departments(ids)
        height, registered = node.height(), node.verify().transactions
        barrier = threading.Barrier(len(users))
        receipts: list[Receipt] = []
        errors: list[BaseException] = []

        def work(client: EmbeddedLedger) -> None:
            barrier.wait(10)
            for _ in range(per_thread):
                try:
                    receipts.append(client.submit("RegisterIdentifier",
                                                  identifier_args("person")))
                except BaseException as e:  # reported below, not swallowed
                    errors.append(e)

        threads = [threading.Thread(target=work, args=(ids(*u),)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        total = len(users) * per_thread
        assert len(receipts) == total
        assert all(r.status == VALID for r in receipts)
        blocks = {r.block_number for r in receipts}
        assert len(blocks) < total, "concurrent submits were not batched"
        assert node.height() == height + len(blocks)
        assert sum(node.block(b)["header"]["tx_count"] for b in blocks) == total
        assert all(node.store.has_tx(r.tx_id) for r in receipts)
        assert len({r.result["id"] for r in receipts}) == total
        report = node.verify()
        assert report.ok and report.transactions == registered + total, report


# ----------------------------------------------------- endorsement and replay
def test_bad_signatures_and_foreign_creators_are_not_endorsed(
        node: EmbeddedNode, ids: Clients, tmp_path: Path) -> None:
    client = ids("Kunshan")
    args = {"code": "transport", "name": "Transport", "duties": ["transport"]}
    before = snapshot(EmbeddedConnection(node))
    proposal, signature = client._proposal("RegisterDepartment", args)
    flipped = signature[:-1] + bytes([signature[-1] ^ 1])
    with pytest.raises(EndorseError, match="signature") as info:
        node.submit(proposal, flipped)
    assert info.value.tx_id == proposal["tx_id"]
    altered = {**proposal, "args": canonical_json({**args, "code": "x"}).decode()}
    with pytest.raises(EndorseError, match="signature"):
        node.submit(altered, signature)
    claimed = {**proposal, "creator": {**proposal["creator"],
                                       "msp_id": "ShanghaiMSP"}}
    with pytest.raises(EndorseError, match="creator rejected"):
        node.submit(claimed, client.identity.sign(canonical_json(claimed)))
    with EmbeddedNode(tmp_path / "other") as other:  # another consortium's keys
        stranger = EmbeddedLedger(node, other.wallet.identity("Kunshan", "admin"))
        with pytest.raises(EndorseError, match="creator rejected"):
            stranger.submit("RegisterDepartment", args)
    assert snapshot(EmbeddedConnection(node)) == before


def test_a_replayed_transaction_is_refused(node: EmbeddedNode, ids: Clients,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # The same signed proposal handed in twice (say, to two endorsers): both
    # endorsements pass, so only the committer's tx-id check can refuse it.
    proposal, signature = ids("Kunshan")._proposal("RegisterDepartment", {
        "code": "transport", "name": "Transport", "duties": ["transport"]})
    endorsed = node.simulate(proposal, signature, None)
    monkeypatch.setattr(node, "simulate", lambda *_: endorsed)
    first = node.submit(proposal, signature).result(timeout=10)
    assert first.status == VALID
    before = snapshot(EmbeddedConnection(node))
    with pytest.raises(SubmitError, match="duplicate tx id") as info:
        node.submit(proposal, signature).result(timeout=10)
    assert info.value.tx_id == proposal["tx_id"]
    assert snapshot(EmbeddedConnection(node)) == before


# ------------------------------------------------------------- reopening
def test_reopen_keeps_the_chain_and_one_writer(tmp_path: Path) -> None:
    data = tmp_path / "ledger"
    with EmbeddedNode(data) as node:
        receipts = run_scenario(Clients(EmbeddedConnection(node)))
        before = snapshot(EmbeddedConnection(node))
        with pytest.raises(LedgerError, match="in use"):
            EmbeddedNode(data)
        reader = EmbeddedNode(data, read_only=True)
        assert reader.height() == before[0]
        with pytest.raises(LedgerError, match="read-only"):
            EmbeddedLedger(reader, reader.wallet.identity("Kunshan")).submit(
                "RegisterDepartment", {"code": "x", "name": "X", "duties": ["x"]})
        reader.close()
    with EmbeddedNode(data) as node:
        assert snapshot(EmbeddedConnection(node)) == before
        assert node.store.has_tx(receipts["clearing"].tx_id)
        more = Clients(EmbeddedConnection(node))("Taicang").submit(
            "RegisterDepartment", {"code": "health", "name": "Health",
                                   "duties": ["health"]})
        assert more.block_number == before[0]
        assert node.verify().ok
    with pytest.raises(LedgerError, match="no ledger"):
        EmbeddedNode(tmp_path / "empty", read_only=True)


def test_keys_of_another_consortium_are_refused(tmp_path: Path) -> None:
    EmbeddedNode(tmp_path / "a").close()
    EmbeddedNode(tmp_path / "b").close()
    (tmp_path / "b" / "ledger.sqlite").unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / "b" / f"ledger.sqlite{suffix}").unlink(missing_ok=True)
    import shutil
    shutil.copy(tmp_path / "a" / "ledger.sqlite", tmp_path / "b" / "ledger.sqlite")
    with pytest.raises(LedgerError, match="another consortium"):
        EmbeddedNode(tmp_path / "b")
    EmbeddedNode(tmp_path / "b", read_only=True).close()  # auditors may still read


def test_a_committer_process_commits_what_a_thread_would(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same scenario, MVCC conflict and replay refusal with the committer in
    a process of its own; followers are woken by its receipts."""
    with EmbeddedNode(tmp_path / "p", committer="process") as node:
        ids = Clients(EmbeddedConnection(node))
        receipts = run_scenario(ids)
        assert all(r.status == VALID for r in receipts.values())
        assert [e.tx_id for e in node.events()][-1] == list(receipts.values())[-1].tx_id
        ks = ids("Kunshan", "transport")
        made = [ks.submit("RegisterIdentifier", identifier_args(kind)).result["id"]
                for kind in ("object", "place")]
        # two links of the same object, simulated before either commits
        pending = [node.submit(*ks._proposal("LinkIdentifier", {
            "identifier_id": made[0], "target_id": made[1], "relation": rel}))
            for rel in ("attached", "contains")]
        statuses = sorted(f.result(timeout=30).status for f in pending)
        assert statuses == [MVCC_READ_CONFLICT, VALID]
        proposal, signature = ks._proposal("RegisterIdentifier", identifier_args())
        endorsed = node.simulate(proposal, signature, None)
        with monkeypatch.context() as m:  # a replay that passed endorsement
            m.setattr(node, "simulate", lambda *_: endorsed)
            assert node.submit(proposal, signature).result(timeout=30).status == VALID
            with pytest.raises(SubmitError, match="duplicate tx id"):
                node.submit(proposal, signature).result(timeout=30)
        last = list(node.events())[-1].position
        got: list[CommittedEvent] = []
        follower = threading.Thread(target=lambda: got.append(
            next(node.events(after=last, follow=True))), daemon=True)
        follower.start()
        later = ks.submit("RegisterIdentifier", identifier_args())
        follower.join(10)
        assert got and got[0].tx_id == later.tx_id
        height = node.height()
    with EmbeddedNode(tmp_path / "p") as node:  # reopened with a thread committer
        assert node.height() == height
        report = node.verify()
        assert report.ok, report


def test_chaincode_event_lists_split_into_canonical_events() -> None:
    from ledger.embedded import _split_events

    events = [{"type": "A", "data": {"b": [1, 2], "a": "x,y]"}}, {"type": "B"}]
    compact = canonical_json(events)
    assert _split_events(compact) == (events, [canonical_json(e).decode()
                                               for e in events])
    spaced = json.dumps(events, indent=1).encode()  # not as the contract writes
    assert _split_events(spaced) == _split_events(compact)
    assert _split_events(b"[]") == ([], [])


def test_a_dead_committer_process_fails_submits_instead_of_hanging(
        tmp_path: Path) -> None:
    with EmbeddedNode(tmp_path / "p", committer="process") as node:
        node_key = node.wallet.root / "Center" / "users" / "node.key"
        key = node_key.read_bytes()
        node_key.unlink()  # the committer process cannot start without it
        # A city admin: a department would first need its department registered.
        client = Clients(EmbeddedConnection(node))("Kunshan", "admin")
        try:
            with pytest.raises(LedgerError, match="committer process ended"):
                client.submit("RegisterIdentifier", identifier_args())
            with pytest.raises(LedgerError, match="committer process ended"):
                client.submit("RegisterIdentifier", identifier_args())
        finally:
            node_key.write_bytes(key)


def test_the_node_runs_the_chaincode_it_is_given(tmp_path: Path) -> None:
    """As the chaincode server, the node takes the contract's ``invoke``."""
    from chaincode.stub import Stub

    calls: list[list[bytes]] = []

    def echo(stub: Stub) -> bytes:
        calls.append(stub.get_args())
        stub.put_state("echo", stub.get_args()[1])
        return b'{"echoed": true}'

    with EmbeddedNode(tmp_path / "ledger", invoke=echo) as node:
        client = Clients(EmbeddedConnection(node))("Kunshan", "admin")
        receipt = client.submit("Anything", {"x": 1})
        assert receipt.result == {"echoed": True} and receipt.status == "VALID"
        assert calls == [[b"Anything", b'{"x":1}']]
        assert node.store.get_state("echo")[0] == '{"x":1}'  # type: ignore[index]
