"""Settlement on every ledger: disputes that resolve (accepted, contested,
arbitrated, cleared later as an adjustment exactly once), statements confirmed
with SM2 and completed, settlement keys rotated, blacklisted cards flagged in
clearing. Tests share the ledger (conftest.py), so they use their own days,
records and cards, and look only for what they made."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from helpers import (
    CENTER,
    Clients,
    World,
    batch_args,
    card_record,
    event_types,
    fresh_day,
    rejected,
    sm3_hex,
    unique_hash,
)

from chaincode.encoding import canonical_json
from chaincode.errors import Conflict
from ledger import crypto
from ledger.protocol import Ledger


def _report(w: World, day: str, *records: dict[str, Any]) -> str:
    return str(w.ids("Kunshan", "admin").submit(
        "ReportTransactionBatch", batch_args(list(records), day)).result["id"])


def _clear(w: World, day: str) -> dict[str, Any]:
    return dict(w.ids(CENTER, "admin").submit("RunClearing",
                                              {"business_day": day}).result)


def test_dispute_accepted_contested_and_arbitrated_later(world: World) -> None:
    day = fresh_day()
    ok, gone, later = (world.unique(n) for n in ("ok", "gone", "later"))
    batch = _report(world, day, card_record(ok, "Shanghai", 1000),
                    card_record(gone, "Shanghai", 300),
                    card_record(later, "Shanghai", 450))
    sh, ks, center = (world.ids("Shanghai", "admin"), world.ids("Kunshan", "admin"),
                      world.ids(CENTER, "admin"))
    sh.submit("DisputeTransactions", {"batch_id": batch, "record_ids": [gone, later],
                                      "reason": "card not present"})
    r = ks.submit("RespondToDispute", {"batch_id": batch, "record_ids": [gone],
                                       "response": "accept"})
    assert event_types(r) == ["TransactionBatchDisputeAccepted"]
    evidence = sm3_hex("gate camera frame 08:00:01")
    r = ks.submit("RespondToDispute", {
        "batch_id": batch, "record_ids": [later], "response": "contest",
        "evidence_sm3": evidence, "note": "entry and exit gates both logged"})
    assert event_types(r) == ["TransactionBatchDisputeContested"]
    assert r.events[0]["data"]["evidence_sm3"] == evidence

    first = _clear(world, day)
    assert first["records"] == 1 and first["excluded_disputed"] == 2
    assert first["positions"]["Kunshan"] == 1000
    r = center.submit("ArbitrateDispute", {
        "batch_id": batch, "record_ids": [later], "decision": "acquirer",
        "reason": "evidence shows the tap"})
    assert event_types(r) == ["TransactionBatchDisputeResolved"]
    assert r.result["adjustment"] is True
    state = world.ids("Kunshan", "auditor").evaluate("GetBatch", {"id": batch})
    assert state["status"] == {ok: "reported", gone: "withdrawn", later: "upheld"}

    next_day = fresh_day()
    second = _clear(world, next_day)
    mine = [a for a in second["adjustments"] if a["batch_id"] == batch]
    assert mine == [{"batch_id": batch, "business_day": day,
                     "acquirer_city": "Kunshan", "issuer_cities": ["Shanghai"],
                     "record_ids": [later], "records": 1, "gross_fen": 450,
                     "fees_fen": mine[0]["fees_fen"]}]
    assert sum(second["positions"].values()) + second["center_fee_fen"] == 0
    # cleared once: the run after that has no adjustment of this batch
    third = _clear(world, fresh_day())
    assert all(a["batch_id"] != batch for a in third["adjustments"])
    # the statement of the later day lists the adjustment
    got = world.ids("Kunshan", "auditor").evaluate("GetSettlementStatement", {
        "business_day": next_day, "city": "Kunshan"})
    assert [a["batch_id"] for a in got["statement"]["adjustments"]].count(batch) == 1
    assert got["statement_sm3"] == sm3_hex(canonical_json(got["statement"]).decode())


def test_upheld_before_its_day_is_cleared_counts_in_that_day(world: World) -> None:
    day = fresh_day()
    rid = world.unique("early")
    batch = _report(world, day, card_record(rid, "Taicang", 800))
    world.ids("Taicang", "admin").submit("DisputeTransactions", {
        "batch_id": batch, "record_ids": [rid], "reason": "duplicate?"})
    world.ids("Kunshan", "admin").submit("RespondToDispute", {
        "batch_id": batch, "record_ids": [rid], "response": "contest",
        "evidence_sm3": unique_hash()})
    r = world.ids(CENTER, "admin").submit("ArbitrateDispute", {
        "batch_id": batch, "record_ids": [rid], "decision": "acquirer",
        "reason": "not a duplicate"})
    assert r.result["adjustment"] is False
    run = _clear(world, day)
    assert run["records"] == 1 and run["positions"]["Kunshan"] == 800
    assert all(a["batch_id"] != batch for a in run["adjustments"])


def test_arbitrated_for_the_issuer_is_withdrawn(world: World) -> None:
    day = fresh_day()
    rid = world.unique("lost")
    batch = _report(world, day, card_record(rid, "Shanghai", 500))
    world.ids("Shanghai", "admin").submit("DisputeTransactions", {
        "batch_id": batch, "record_ids": [rid], "reason": "stolen card"})
    world.ids("Kunshan", "admin").submit("RespondToDispute", {
        "batch_id": batch, "record_ids": [rid], "response": "contest",
        "evidence_sm3": unique_hash()})
    _clear(world, day)
    r = world.ids(CENTER, "admin").submit("ArbitrateDispute", {
        "batch_id": batch, "record_ids": [rid], "decision": "issuer",
        "reason": "reported stolen before"})
    assert r.result["adjustment"] is False
    assert all(a["batch_id"] != batch
               for a in _clear(world, fresh_day())["adjustments"])


def test_statement_confirmed_and_completed(world: World) -> None:
    day = world.settlement()  # Shanghai confirmed
    ks = world.ids("Kunshan", "admin")
    got = ks.evaluate("GetSettlementStatement", {"business_day": day,
                                                 "city": "Kunshan"})
    assert got["settlement"] is None
    assert got["statement"]["city"] == "Kunshan"
    assert got["statement"]["business_day"] == day
    r = ks.submit("ConfirmSettlement", world.confirmation("Kunshan", day))
    assert event_types(r) == ["SettlementConfirmed"]
    center = world.ids(CENTER, "admin")
    r = center.submit("CompleteSettlement", {
        "business_day": day, "city": "Kunshan", "payment_reference": "CNAPS-1"})
    assert event_types(r) == ["SettlementCompleted"]
    got = ks.evaluate("GetSettlementStatement", {"business_day": day,
                                                 "city": "Kunshan"})
    assert got["settlement"]["status"] == "completed"
    assert got["settlement"]["payment_reference"] == "CNAPS-1"
    rejected(world.ids, (CENTER, "admin"), "CompleteSettlement", {
        "business_day": day, "city": "Kunshan", "payment_reference": "CNAPS-2"},
        Conflict, "city", "already completed")


@pytest.mark.parametrize("signer", ["native", "gmssl"])
def test_statement_signatures_interoperate(ids: Clients[Ledger], signer: str) -> None:
    """Signed with either backend, verified on chain and offline by both; a
    changed statement byte fails under both."""
    backend = crypto.get_backend(signer)
    private, public = backend.sm2_generate()
    city = "Taicang"
    ids(city, "admin").submit("RegisterSettlementKey", {
        "public_key_pem": crypto.public_key_to_pem(public).decode()})
    day = fresh_day()
    ids(CENTER, "admin").submit("RunClearing", {"business_day": day})
    got = ids(city, "auditor").evaluate("GetSettlementStatement", {
        "business_day": day, "city": city})
    document = canonical_json(got["statement"])
    signature = backend.sm2_sign(private, document)
    r = ids(city, "admin").submit("ConfirmSettlement", {
        "business_day": day, "statement_sm3": got["statement_sm3"],
        "signature": base64.b64encode(crypto.signature_to_der(signature)).decode()})
    assert r.status == "VALID"
    changed = document.replace(b'"city":"Taicang"', b'"city":"Taicanh"')
    assert changed != document
    for name in ("native", "gmssl"):
        verifier = crypto.get_backend(name)
        assert verifier.sm2_verify(public, document, signature)
        assert not verifier.sm2_verify(public, changed, signature)


def test_settlement_key_rotates(ids: Clients[Ledger]) -> None:
    admin = ids("Taicang", "admin")
    first = admin.submit("RegisterSettlementKey", {"public_key_pem": crypto.
                         public_key_to_pem(crypto.get_backend().sm2_generate()[1])
                         .decode()})
    assert event_types(first)[0] in ("SettlementKeyRegistered",
                                     "SettlementKeyRotated")
    pem = crypto.public_key_to_pem(crypto.get_backend().sm2_generate()[1]).decode()
    second = admin.submit("RegisterSettlementKey", {"public_key_pem": pem})
    assert event_types(second) == ["SettlementKeyRotated"]
    assert second.result["version"] == first.result["version"] + 1
    rejected(ids, ("Taicang", "admin"), "RegisterSettlementKey",
             {"public_key_pem": pem}, Conflict, "public_key_pem", "already")


def test_blacklisted_card_is_flagged_from_its_time(world: World) -> None:
    card = unique_hash()
    r = world.ids("Shanghai", "admin").submit("BlacklistCards", {"cards": [
        {"card_id_hash": card, "reason": "lost", "since": "2026-11-20T09:00:00Z"}]})
    assert event_types(r) == ["CardBlacklisted"]
    rejected(world.ids, ("Shanghai", "admin"), "BlacklistCards", {"cards": [
        {"card_id_hash": card, "reason": "blocked", "since": "2026-11-20T10:00:00Z"}]},
        Conflict, "cards.0.card_id_hash", "already blacklisted")
    day = fresh_day()
    before, after = world.unique("before"), world.unique("after")
    batch = _report(
        world, day,
        {**card_record(before, "Shanghai"), "card_id_hash": card,
         "time": "2026-11-20T08:59:59Z"},
        {**card_record(after, "Shanghai"), "card_id_hash": card,
         "time": "2026-11-20T09:00:00.5Z"})
    run = _clear(world, day)
    assert run["records"] == 2  # flagged, still cleared
    assert [(f["batch_id"], f["record_id"]) for f in run["flagged"]] == [
        (batch, after)]
    got = world.ids("Shanghai", "auditor").evaluate("GetSettlementStatement", {
        "business_day": day, "city": "Shanghai"})
    assert got["statement"]["flagged_records"] == 1
