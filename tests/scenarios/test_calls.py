"""Call campaigns on every ledger: a department starts one with its template's
SM3 and contact count and completes it with counts per outcome; nothing else
may, and no phone number is ever an argument."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import (
    VALID,
    Clients,
    World,
    call_campaign_args,
    call_records_args,
    event_types,
    register_departments,
    rejected,
    unique_name,
)

from chaincode.errors import Conflict, InvalidArgument, NotFound, Unauthorized
from ledger.protocol import Ledger


def _get(w: World, city: str, department: str, campaign: str) -> dict[str, Any]:
    return w.ids("Kunshan", "auditor").evaluate("GetCallCampaign", {
        "city": city, "department": department, "campaign": campaign})


def test_start_and_complete(ids: Clients[Ledger]) -> None:
    register_departments(ids)
    name = unique_name("heat-survey")
    start = ids("Taicang", "health").submit("StartCallCampaign",
                                            call_campaign_args(name, 5))
    assert event_types(start) == ["CallCampaignStarted"]
    data = start.events[0]["data"]
    assert data == {"city": "Taicang", "department": "health", "campaign": name,
                    "template_name": "bus-survey", "template_version": 1,
                    "template_sm3": call_campaign_args(name)["template_sm3"],
                    "contact_count": 5, "started_by": "Taicang:department/health"}
    done = ids("Taicang", "health").submit("CompleteCallCampaign", {
        "campaign": name, "outcomes": {"satisfied": 2, "busy": 1, "no_answer": 1,
                                       "do_not_call": 1}})
    assert event_types(done) == ["CallCampaignCompleted"]
    state = ids("Taicang", "auditor").evaluate("GetCallCampaign", {
        "city": "Taicang", "department": "health", "campaign": name})
    assert state["status"] == "completed"
    assert state["outcomes"] == {"busy": 1, "do_not_call": 1, "no_answer": 1,
                                 "satisfied": 2}


def _complete(w: World, **outcomes: int) -> dict[str, Any]:
    return {"campaign": w.campaign, "outcomes": outcomes}


@pytest.mark.parametrize(("caller", "make", "error", "field", "fragment"), [
    pytest.param(("Kunshan", "transport"),
                 lambda w: call_campaign_args(w.campaign), Conflict, "campaign",
                 "already started", id="start-twice"),
    pytest.param(("Kunshan", "transport"),
                 lambda w: _complete(w, satisfied=2), InvalidArgument, "outcomes",
                 "add up to 2", id="counts-short"),
    pytest.param(("Kunshan", "transport"),
                 lambda w: _complete(w, satisfied=4), InvalidArgument, "outcomes",
                 "3 contacts", id="counts-over"),
    pytest.param(("Kunshan", "transport"),
                 lambda w: {"campaign": "never-started", "outcomes": {"x": 3}},
                 NotFound, "campaign", "does not exist", id="unknown-campaign"),
    # Another department's campaign of the same name is not its own to complete.
    pytest.param(("Kunshan", "health"), lambda w: _complete(w, satisfied=3),
                 NotFound, "campaign", "does not exist", id="other-department"),
    pytest.param(("Shanghai", "transport"), lambda w: _complete(w, satisfied=3),
                 NotFound, "campaign", "does not exist", id="other-city"),
])
def test_rejected(shared: World, caller: tuple[str, str], make: Any,
                  error: type[Exception], field: str, fragment: str) -> None:
    function = "StartCallCampaign" if "template_sm3" in make(shared) \
        else "CompleteCallCampaign"
    rejected(shared.ids, caller, function, make(shared), error,  # type: ignore[arg-type]
             field, fragment)


@pytest.mark.parametrize(("function", "changes", "field"), [
    ("StartCallCampaign", {"contact_count": 0}, "contact_count"),
    ("StartCallCampaign", {"contact_count": 10_000_001}, "contact_count"),
    ("StartCallCampaign", {"template_sm3": "ab" * 16}, "template_sm3"),
    ("StartCallCampaign", {"template_version": 0}, "template_version"),
    ("StartCallCampaign", {"campaign": "热线 回访"}, "campaign"),
    # a phone number has no field to go in
    ("StartCallCampaign", {"numbers": ["13800000000"]}, "numbers"),
    ("CompleteCallCampaign", {"outcomes": {}}, "outcomes"),
    ("CompleteCallCampaign", {"outcomes": {"satisfied": -1}}, "outcomes.satisfied"),
    ("CompleteCallCampaign", {"outcomes": {"Satisfied": 3}},
     "outcomes.Satisfied.[key]"),
    ("CompleteCallCampaign", {"outcomes": {"satisfied": 2.5}},
     "outcomes.satisfied"),
    ("RecordCallOutcomes", {"calls": []}, "calls"),
    ("RecordCallOutcomes", {"batch": -1}, "batch"),
    # a number where the keyed hash goes
    ("RecordCallOutcomes", {"calls": [{"contact": "13800000000",
                                       "outcome": "satisfied", "attempts": 1,
                                       "day": "2026-12-01", "talk_s": 3}]},
     "calls.0.contact"),
    ("RecordCallOutcomes", {"calls": [{"contact": "a" * 64, "outcome": "ok",
                                       "attempts": 1, "day": "2026-02-30",
                                       "talk_s": 3}]}, "calls.0.day"),
    ("RecordCallOutcomes", {"calls": [{"contact": "a" * 64, "outcome": "ok",
                                       "attempts": 1, "day": "2026-02-03",
                                       "talk_s": 3, "number": "13800000000"}]},
     "calls.0.number"),
])
def test_malformed(shared: World, function: str, changes: dict[str, Any],
                   field: str) -> None:
    caller, make = VALID[function]
    args = {**make(shared), **changes}
    rejected(shared.ids, caller, function, args, InvalidArgument, field)


def test_completed_campaign_is_closed(world: World) -> None:
    ks = world.ids("Kunshan", "transport")
    ks.submit("CompleteCallCampaign", _complete(world, satisfied=3))
    assert _get(world, "Kunshan", "transport", world.campaign)["status"] == \
        "completed"
    rejected(world.ids, ("Kunshan", "transport"), "CompleteCallCampaign",
             _complete(world, satisfied=3), Conflict, "campaign", "already completed")


def test_center_and_city_admin_may_not_start(shared: World) -> None:
    for caller in (("Center", "admin"), ("Kunshan", "admin"),
                   ("Kunshan", "terminal")):
        rejected(shared.ids, caller, "StartCallCampaign",
                 call_campaign_args(unique_name("x")), Unauthorized, None,
                 "StartCallCampaign may be called by department")


def test_per_call_records_in_batches(ids: Clients[Ledger]) -> None:
    """Batches in order, each once; the completion's counts are theirs."""
    register_departments(ids)
    name = unique_name("records")
    ks = ids("Kunshan", "health")
    ks.submit("StartCallCampaign", call_campaign_args(name, 4))
    first = call_records_args(name, 0, ("satisfied", "busy"))
    got = ks.submit("RecordCallOutcomes", first)
    assert event_types(got) == ["CallCampaignCallsRecorded"]
    data = got.events[0]["data"]
    assert data["calls"] == first["calls"] and data["batch"] == 0
    assert data["counts"] == {"busy": 1, "satisfied": 1}
    kh = ("Kunshan", "health")
    rejected(ids, kh, "RecordCallOutcomes", first, Conflict, "batch",
             "already recorded")
    rejected(ids, kh, "RecordCallOutcomes", call_records_args(name, 2), InvalidArgument,
             "batch", "the next batch")
    twice = call_records_args(name, 1, ("busy", "busy"))
    twice["calls"][1]["contact"] = twice["calls"][0]["contact"]
    rejected(ids, kh, "RecordCallOutcomes", twice, InvalidArgument, "calls",
             "appears twice")
    rejected(ids, kh, "RecordCallOutcomes", call_records_args(name, 1),
             InvalidArgument, "calls", "5 records, but the campaign has 4")
    again = call_records_args(name, 1, ("busy", "no_answer"))
    again["calls"][1]["contact"] = first["calls"][0]["contact"]  # had its outcome
    rejected(ids, kh, "RecordCallOutcomes", again, Conflict, "calls.1.contact",
             "already has an outcome")
    ks.submit("RecordCallOutcomes", call_records_args(name, 1, ("busy", "no_answer")))
    state = ks.evaluate("GetCallCampaign", {"city": "Kunshan",
                                            "department": "health",
                                            "campaign": name})
    assert (state["batches"], state["recorded"]) == (
        2, {"busy": 2, "no_answer": 1, "satisfied": 1})
    rejected(ids, kh, "CompleteCallCampaign",
             {"campaign": name, "outcomes": {"satisfied": 2, "busy": 2}},
             InvalidArgument, "outcomes", "differ from the per-call records")
    ks.submit("CompleteCallCampaign", {"campaign": name, "outcomes": {
        "busy": 2, "no_answer": 1, "satisfied": 1}})
    rejected(ids, kh, "RecordCallOutcomes", call_records_args(name, 2, ("busy",)),
             Conflict, "campaign", "already completed")
