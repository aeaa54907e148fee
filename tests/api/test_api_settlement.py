"""Settlement through the API on every ledger: statements as JSON, CSV and PDF,
confirmed and completed, overdue ones listed; disputes resolved and listed;
the blacklist delta sealed with the node's SM2 key and checked offline."""

from __future__ import annotations

import csv
import io
import secrets
from datetime import date, timedelta

import pytest
from apikit import (
    CENTER_ADMIN,
    KS_ADMIN,
    KS_AUDITOR,
    KS_TRANSPORT,
    SH_ADMIN,
    Api,
    name,
    new_day,
    problem,
)
from helpers import card_record, unique_hash

from chaincode.encoding import canonical_json, sm3_hex
from ledger import crypto
from ledger.crypto.errors import CryptoError
from ledger.crypto.sealed import unseal


def _statement_day(api: Api, amount: int = 1234) -> str:
    """A cleared day on which Kunshan acquired a Shanghai record."""
    _, _, day = api.batch(KS_ADMIN, ("Shanghai",), amount=amount)
    api.ok("/api/clearing-runs", {"business_day": day}, CENTER_ADMIN)
    return day


def test_statement_confirmed_then_completed(api: Api) -> None:
    day = _statement_day(api)
    got = api.get(f"/api/settlements/{day}/Kunshan", KS_ADMIN).json()
    statement = got["statement"]
    assert statement["position_fen"] == 1234 and got["settlement"] is None
    assert got["statement_sm3"] == sm3_hex(canonical_json(statement))
    api.sync()
    rows = api.get("/api/settlements", KS_ADMIN, business_day=day).json()["items"]
    assert [(r["city"], r["status"], r["overdue"]) for r in rows] == [
        ("Kunshan", "pending", False)]  # a city admin sees its own city

    private = api.settlement_key()
    api.ok(f"/api/settlements/{day}/confirmation", api.confirmation(day, private),
           KS_ADMIN)
    problem(api.post(f"/api/settlements/{day}/confirmation",
                     api.confirmation(day, private), KS_ADMIN), 409, "business_day")
    api.ok(f"/api/settlements/{day}/Kunshan/completion",
           {"payment_reference": "CNAPS 2031-0001"}, CENTER_ADMIN)
    api.sync()
    rows = api.get("/api/settlements", CENTER_ADMIN, business_day=day).json()["items"]
    by_city = {r["city"]: r for r in rows}
    assert set(by_city) == {"Kunshan", "Shanghai", "Taicang"}
    assert by_city["Kunshan"]["status"] == "completed"
    assert by_city["Kunshan"]["payment_reference"] == "CNAPS 2031-0001"
    assert by_city["Kunshan"]["statement_sm3"] == got["statement_sm3"]
    assert by_city["Shanghai"]["position_fen"] == -1234
    assert sum(r["position_fen"] for r in rows) == 0  # no fee rule that day


def test_statement_as_csv_and_pdf(api: Api) -> None:
    day = _statement_day(api, 98_765)
    r = api.get(f"/api/settlements/{day}/Kunshan", KS_ADMIN, format="csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(r.text)))
    summary = dict(row for row in lines[1:] if len(row) == 2)
    assert summary["position_fen"] == "98765" and summary["status"] == "pending"
    header = lines.index(["acquirer_city", "issuer_city", "records", "gross_fen",
                          "acquirer_fee_fen", "issuer_fee_fen", "net_fen"])
    assert lines[header + 1] == ["Kunshan", "Shanghai", "1", "98765", "0", "0",
                                 "98765"]
    r = api.get(f"/api/settlements/{day}/Kunshan", KS_ADMIN, format="pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF-") and len(r.content) > 1000


def test_statement_of_another_city_is_refused(api: Api) -> None:
    day = _statement_day(api)
    problem(api.get(f"/api/settlements/{day}/Shanghai", KS_ADMIN), 403, "city")
    assert api.get(f"/api/settlements/{day}/Shanghai", KS_AUDITOR).status_code == 200
    problem(api.get(f"/api/settlements/{day}/Beijing", CENTER_ADMIN), 400, "city")


def test_unconfirmed_statement_past_its_day_is_overdue(api: Api) -> None:
    day = (date(2001, 1, 1) + timedelta(days=secrets.randbelow(7000))).isoformat()
    api.ok("/api/clearing-runs", {"business_day": day}, CENTER_ADMIN)
    api.sync()
    rows = api.get("/api/settlements", CENTER_ADMIN, business_day=day,
                   status="overdue").json()["items"]
    assert {r["city"] for r in rows} == {"Kunshan", "Shanghai", "Taicang"}
    assert all(r["overdue"] and r["status"] == "pending" for r in rows)


def test_dispute_resolution_is_listed(api: Api) -> None:
    batch, rid = api.disputed(contested=True)
    api.sync()
    rows = api.get("/api/disputes", KS_ADMIN, status="contested").json()["items"]
    mine = [r for r in rows if r["batch_id"] == batch]
    assert len(mine) == 1 and mine[0]["record_id"] == rid
    assert mine[0]["evidence_sm3"] and mine[0]["reason"] == "not my card"
    api.ok(f"/api/card-batches/{batch}/arbitration", {
        "record_ids": [rid], "decision": "acquirer", "reason": "tap logged"},
        CENTER_ADMIN, 200)
    api.sync()
    rows = api.get("/api/disputes", SH_ADMIN, status="upheld").json()["items"]
    mine = [r for r in rows if r["batch_id"] == batch]
    assert [(r["decision"], r["decision_reason"]) for r in mine] == [
        ("acquirer", "tap logged")]
    problem(api.post(f"/api/card-batches/{batch}/dispute-response", {
        "record_ids": [rid], "response": "accept"}, KS_ADMIN), 409, "record_ids")
    problem(api.get("/api/disputes", KS_TRANSPORT, city="Shanghai"), 403, "city")


def test_contest_needs_evidence(api: Api) -> None:
    batch, rid = api.disputed()
    problem(api.post(f"/api/card-batches/{batch}/dispute-response", {
        "record_ids": [rid], "response": "contest"}, KS_ADMIN), 400, "evidence_sm3")


def test_blacklist_delta_is_sealed_and_checks_offline(api: Api) -> None:
    card = unique_hash()
    before = api.height() - 1
    api.ok("/api/card-blacklist", {"cards": [{
        "card_id_hash": card, "reason": "lost", "since": "2031-01-01T08:00:00Z"}]},
        SH_ADMIN)
    # a block after ours, so the blacklist's block is wholly projected
    api.batch(KS_ADMIN, ("Taicang",))
    api.sync()
    key = api.get("/api/signing-key", KS_TRANSPORT).json()
    public = crypto.public_key_from_pem(key["public_key_pem"].encode())
    assert key["key_sm3"] == sm3_hex(public)
    sealed = api.get("/api/card-blacklist/delta", KS_TRANSPORT, since=before).json()
    document = unseal(sealed, public)
    assert document["complete"] is True
    cards = {c["card_id_hash"]: c for c in document["cards"]}
    assert cards[card]["reason"] == "lost" and cards[card]["issuer_city"] == "Shanghai"
    assert document["through_block"] >= cards[card]["block"] > before
    later = unseal(api.get("/api/card-blacklist/delta", KS_TRANSPORT,
                           since=document["through_block"]).json(), public)
    assert card not in {c["card_id_hash"] for c in later["cards"]}
    tampered = {**sealed, "document": {**document, "cards": []}}
    with pytest.raises(CryptoError, match="SM3"):
        unseal(tampered, public)
    problem(api.post("/api/card-blacklist", {"cards": [{
        "card_id_hash": card, "reason": "lost", "since": "2031-01-01T08:00:00Z"}]},
        SH_ADMIN), 409, "cards.0.card_id_hash")


def test_fees_in_the_run_and_every_rule_version_listed(api: Api) -> None:
    # parking: no other API test's records are parking, so its fees stay here
    day = new_day()
    api.ok("/api/card-batches", {"business_day": day, "records": [{
        **card_record(name("p"), "Shanghai", 10_000), "scene": "parking"}]},
        KS_ADMIN)
    for bps in (30, 40):  # two versions: the later one is in effect
        effective = day if bps == 40 else "2030-12-31"
        r = api.post("/api/fee-rules", {
            "scene": "parking", "party": "acquirer", "rate_bps": bps,
            "min_fee_fen": 0, "max_fee_fen": 10_000, "effective_day": effective},
            CENTER_ADMIN)
        assert r.status_code in (201, 409), r.text  # 2030-12-31: maybe already
    api.ok("/api/clearing-runs", {"business_day": day}, CENTER_ADMIN)
    api.sync()
    run = api.get(f"/api/clearing-runs/{day}", KS_ADMIN).json()
    assert run["center_fee_fen"] == 40  # 0.4% of 100.00 yuan, the acquirer's
    kunshan = next(p for p in run["positions"] if p["city"] == "Kunshan")
    assert (kunshan["gross_fen"], kunshan["fees_fen"], kunshan["net_fen"]) == (
        10_000, 40, 9_960)
    assert kunshan["settlement"] == "pending"
    assert sum(p["net_fen"] for p in run["positions"]) + run["center_fee_fen"] == 0
    rules = api.get("/api/fee-rules", KS_TRANSPORT).json()["rules"]
    mine = {(r["effective_day"], r["rate_bps"]) for r in rules
            if (r["scene"], r["party"]) == ("parking", "acquirer")}
    assert (day, 40) in mine
