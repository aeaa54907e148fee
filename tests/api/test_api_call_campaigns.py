"""Call campaigns through the API: a department starts and completes one; the
read model lists it for its city (every city for the center), with the counts."""

from __future__ import annotations

import uuid

from apikit import CENTER_ADMIN, KS_ADMIN, KS_TRANSPORT, SH_ADMIN, Api, name, problem
from helpers import call_campaign_args, call_records_args


def test_start_complete_and_read(api: Api) -> None:
    campaign = name("c")
    started = api.ok("/api/call-campaigns", call_campaign_args(campaign, 3),
                     KS_TRANSPORT)
    cid = started["result"]["id"]
    api.sync()
    got = api.get(f"/api/call-campaigns/{cid}", KS_ADMIN).json()
    assert (got["status"], got["outcomes"], got["contact_count"]) == (
        "started", None, 3)
    api.ok(f"/api/call-campaigns/{campaign}/complete",
           {"outcomes": {"satisfied": 2, "busy": 1}}, KS_TRANSPORT, 200)
    api.sync()
    got = api.get(f"/api/call-campaigns/{cid}", KS_TRANSPORT).json()
    assert got["status"] == "completed"
    assert got["outcomes"] == {"busy": 1, "satisfied": 2}
    assert got["completed_by"] == "Kunshan:department/transport"
    listed = api.get("/api/call-campaigns", KS_ADMIN, status="completed",
                     department="transport", limit=500).json()
    assert cid in {c["id"] for c in listed["items"]}
    assert {c["city"] for c in listed["items"]} == {"Kunshan"}
    every = api.get("/api/call-campaigns", CENTER_ADMIN, limit=500).json()
    assert cid in {c["id"] for c in every["items"]}
    problem(api.get(f"/api/call-campaigns/{cid}", SH_ADMIN), 403)
    problem(api.get("/api/call-campaigns", SH_ADMIN, city="Kunshan"), 403, "city")
    problem(api.get(f"/api/call-campaigns/{uuid.UUID(int=9)}", KS_ADMIN), 404,
            "campaign_id")
    problem(api.get("/api/call-campaigns", KS_ADMIN, status="done"), 422, "status")


def test_counts_must_add_up(api: Api) -> None:
    campaign = name("c")
    api.ok("/api/call-campaigns", call_campaign_args(campaign, 3), KS_TRANSPORT)
    r = api.post(f"/api/call-campaigns/{campaign}/complete",
                 {"outcomes": {"satisfied": 2}}, KS_TRANSPORT)
    problem(r, 400, "outcomes")
    r = api.post("/api/call-campaigns", {**call_campaign_args(name("c")),
                                         "numbers": ["13800000000"]}, KS_TRANSPORT)
    problem(r, 422, "numbers")


KS_HEALTH = ("Kunshan", "department", "health")


def test_per_call_records(api: Api) -> None:
    """Batches of per-call records: the campaign counts them as they come, the
    records are listed by campaign, outcome and day, each role sees its own."""
    campaign = name("c")
    cid = api.ok("/api/call-campaigns", call_campaign_args(campaign, 3),
                 KS_TRANSPORT)["result"]["id"]
    first = call_records_args(campaign, 0, ("satisfied", "busy"), "2026-12-01")
    body = {k: v for k, v in first.items() if k != "campaign"}
    api.ok(f"/api/call-campaigns/{campaign}/calls", body, KS_TRANSPORT, 200)
    api.sync()
    got = api.get(f"/api/call-campaigns/{cid}", KS_ADMIN).json()
    assert (got["status"], got["recorded"], got["recorded_total"]) == (
        "started", {"busy": 1, "satisfied": 1}, 2)
    problem(api.post(f"/api/call-campaigns/{campaign}/calls", body, KS_TRANSPORT),
            409, "batch")
    second = call_records_args(campaign, 1, ("satisfied",), "2026-12-02")
    api.ok(f"/api/call-campaigns/{campaign}/calls",
           {k: v for k, v in second.items() if k != "campaign"}, KS_TRANSPORT, 200)
    api.sync()
    mine = api.get("/api/call-records", KS_TRANSPORT, campaign_id=cid).json()
    assert mine["total"] == 3
    assert {(r["contact"], r["outcome"], r["day"]) for r in mine["items"]} == {
        (c["contact"], c["outcome"], c["day"])
        for c in first["calls"] + second["calls"]}
    assert {r["campaign"] for r in mine["items"]} == {campaign}
    satisfied = api.get("/api/call-records", KS_ADMIN, campaign_id=cid,
                        outcome="satisfied").json()
    assert satisfied["total"] == 2
    day = api.get("/api/call-records", CENTER_ADMIN, campaign_id=cid,
                  day="2026-12-02").json()
    assert [r["contact"] for r in day["items"]] == [second["calls"][0]["contact"]]
    # Another department of the city sees none of them; another city may not ask.
    other = api.get("/api/call-records", KS_HEALTH, campaign_id=cid).json()
    assert other["total"] == 0
    problem(api.get("/api/call-records", KS_HEALTH, department="transport"), 403,
            "department")
    problem(api.get("/api/call-records", SH_ADMIN, city="Kunshan"), 403, "city")
    assert api.get("/api/call-records", SH_ADMIN, campaign_id=cid).json()[
        "total"] == 0
    problem(api.get("/api/call-records", KS_ADMIN, outcome="Not An Outcome"), 422,
            "outcome")
    problem(api.get("/api/call-records", KS_ADMIN, day="2026-13-01"), 422, "day")
    problem(api.get("/api/call-records", KS_ADMIN, campaign_id="x"), 422,
            "campaign_id")
    # The completion must carry the records' counts.
    problem(api.post(f"/api/call-campaigns/{campaign}/complete",
                     {"outcomes": {"satisfied": 3}}, KS_TRANSPORT), 400, "outcomes")
    api.ok(f"/api/call-campaigns/{campaign}/complete",
           {"outcomes": {"satisfied": 2, "busy": 1}}, KS_TRANSPORT, 200)
    bad = {**body, "calls": [{**body["calls"][0], "contact": "13800000000"}]}
    problem(api.post(f"/api/call-campaigns/{campaign}/calls", bad, KS_TRANSPORT),
            422, "calls.0.contact")
