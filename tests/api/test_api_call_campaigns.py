"""Call campaigns through the API: a department starts and completes one; the
read model lists it for its city (every city for the center), with the counts."""

from __future__ import annotations

import uuid

from apikit import CENTER_ADMIN, KS_ADMIN, KS_TRANSPORT, SH_ADMIN, Api, name, problem
from helpers import call_campaign_args


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
