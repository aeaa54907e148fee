"""Cameras and video alerts on every ledger: the lifecycle raised → reviewed →
dispatched → handled, one alert per incident, and the rules beyond roles and
argument shapes (test_contract.py covers those for every command)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import (
    World,
    alert_args,
    camera_args,
    event_types,
    identifier_args,
    rejected,
    unique_name,
)

from chaincode.cameras import derive_alert_id, derive_camera_id
from chaincode.errors import (
    Conflict,
    ContractError,
    InvalidArgument,
    NotFound,
    Unauthorized,
)

Args = dict[str, Any]
MISSING = "00000000-0000-0000-0000-000000000007"


def test_alert_lifecycle(world: World) -> None:
    v = world.video
    terminal = world.ids("Kunshan", "terminal")
    transport, health = world.ids("Kunshan", "transport"), world.ids("Kunshan",
                                                                     "health")
    camera = transport.evaluate("GetCamera", {"id": v["camera"]})
    assert camera["department"] == "transport" and camera["city"] == "Kunshan"
    assert [z["zone"] for z in camera["zones"]] == ["plaza", "stall"]
    assert derive_camera_id("Kunshan", camera["camera_code"]) == v["camera"]
    # nothing about the stream is on chain
    assert not {"url", "source", "password", "credentials"} & set(camera)

    incident = unique_name("fire-stall")
    args = alert_args(v["camera"], incident)
    raised = terminal.submit("RaiseVideoAlert", args)
    assert event_types(raised) == ["VideoAlertRaised"]
    alert_id = raised.result["id"]
    assert alert_id == derive_alert_id(v["camera"], incident)
    steps = [
        (transport, "ReviewAlert", {"alert_id": alert_id, "verdict": "confirmed"},
         "VideoAlertReviewed", "confirmed"),
        (transport, "DispatchAlert", {"alert_id": alert_id, "department": "health"},
         "VideoAlertDispatched", "dispatched"),
        (health, "HandleAlert", {"alert_id": alert_id, "outcome": "put out"},
         "VideoAlertHandled", "handled"),
    ]
    for client, function, fargs, event, status in steps:
        receipt = client.submit(function, fargs)
        assert event_types(receipt) == [event]
        assert receipt.result["status"] == status
    alert = terminal.evaluate("GetVideoAlert", {"id": alert_id})
    assert alert["status"] == "handled" and alert["dispatched_to"] == "health"
    assert alert["evidence_sm3"] == args["evidence_sm3"]
    assert alert["confidence_permille"] == 870 and alert["zone"] == "stall"
    assert alert["raised_by"] == "Kunshan:terminal"


def test_one_alert_per_incident(world: World) -> None:
    terminal = world.ids("Kunshan", "terminal")
    args = alert_args(world.video["camera"], unique_name("crowd-plaza"), "crowd",
                      "plaza")
    terminal.submit("RaiseVideoAlert", args)
    # a restarted worker raising the same incident again: refused, nothing written
    again = {**args, "confidence_permille": 910}
    rejected(world.ids, ("Kunshan", "terminal"), "RaiseVideoAlert", again,
             Conflict, "incident", "already raised")


def test_false_alarm_is_closed(world: World) -> None:
    transport = world.ids("Kunshan", "transport")
    alert_id = world.video["raised"]
    receipt = transport.submit("ReviewAlert", {"alert_id": alert_id,
                                               "verdict": "false_alarm"})
    assert receipt.result["status"] == "false_alarm"
    rejected(world.ids, ("Kunshan", "transport"), "DispatchAlert",
             {"alert_id": alert_id, "department": "health"}, Conflict, "alert_id",
             "is false_alarm")


def test_city_admin_acts_for_any_department_of_its_city(world: World) -> None:
    admin = world.ids("Kunshan", "admin")
    r = admin.submit("HandleAlert", {"alert_id": world.video["dispatched"],
                                     "outcome": "cleared"})
    assert r.result["status"] == "handled"
    place = world.ids("Kunshan", "health").submit(
        "RegisterIdentifier", identifier_args("place", "poi")).result["id"]
    r = admin.submit("RegisterCamera", camera_args(place, unique_name("cam"),
                                                   "health"))
    assert event_types(r) == ["CameraRegistered"]


def _camera(**changes: Any) -> Callable[[World], Args]:
    def make(w: World) -> Args:
        args = camera_args(w.video["place"], unique_name("cam"))
        args.update({k: v(w) if callable(v) else v for k, v in changes.items()})
        return args
    return make


def _alert(**changes: Any) -> Callable[[World], Args]:
    def make(w: World) -> Args:
        args = alert_args(w.video["camera"], unique_name("inc"))
        args.update({k: v(w) if callable(v) else v for k, v in changes.items()})
        return args
    return make


def _on(alert: str, **extra: Any) -> Callable[[World], Args]:
    return lambda w: {"alert_id": w.video[alert], **extra}


def _zones(*names: str) -> list[Args]:
    return [{"zone": n, "polygon": [[0, 0], [10, 0], [10, 10]],
             "detectors": ["fire"]} for n in names]


KT, KH, KA = ("Kunshan", "transport"), ("Kunshan", "health"), ("Kunshan", "admin")
REJECTIONS: list[tuple[str, str, tuple[str, str], Callable[[World], Args],
                       type[ContractError], str | None, str]] = [
    ("camera-at-a-person", "RegisterCamera", KT, _camera(place_id=lambda w: w.person),
     InvalidArgument, "place_id", "needs an active place"),
    ("camera-at-nothing", "RegisterCamera", KT, _camera(place_id=MISSING), NotFound,
     "place_id", MISSING),
    ("camera-at-a-scheme", "RegisterCamera", KT, _camera(place_id=lambda w: w.scheme),
     NotFound, "place_id", "not an identifier"),
    ("camera-for-another-department", "RegisterCamera", KT,
     _camera(department="health"), Unauthorized, "department", "for itself"),
    ("camera-for-unregistered-department", "RegisterCamera", KA,
     _camera(department="water-nowhere"), InvalidArgument, "department",
     "not registered in Kunshan"),
    ("camera-at-another-citys-place", "RegisterCamera", ("Shanghai", "transport"),
     _camera(department="transport"), Unauthorized, "place_id", "belongs to Kunshan"),
    ("camera-zone-twice", "RegisterCamera", KT, _camera(zones=_zones("a", "b", "a")),
     InvalidArgument, "zones.2.zone", "appears twice"),
    ("camera-zone-two-points", "RegisterCamera", KT,
     _camera(zones=[{"zone": "a", "polygon": [[0, 0], [5, 5]],
                     "detectors": ["fire"]}]), InvalidArgument, "zones.0.polygon",
     "at least 3"),
    ("camera-zone-negative-point", "RegisterCamera", KT,
     _camera(zones=[{"zone": "a", "polygon": [[0, 0], [5, -5], [9, 9]],
                     "detectors": ["fire"]}]), InvalidArgument,
     "zones.0.polygon.1.1", "greater than or equal to 0"),
    ("camera-zone-unknown-detector", "RegisterCamera", KT,
     _camera(zones=[{"zone": "a", "polygon": [[0, 0], [5, 0], [9, 9]],
                     "detectors": ["smoke"]}]), InvalidArgument,
     "zones.0.detectors.0", "'crowd', 'fire' or 'garbage'"),
    ("camera-no-zone", "RegisterCamera", KT, _camera(zones=[]), InvalidArgument,
     "zones", "at least 1"),
    ("camera-code-twice", "RegisterCamera", KT,
     lambda w: camera_args(w.video["place"], w.video["camera_code"]), Conflict,
     "camera_code", "already registered"),
    ("alert-by-other-city", "RaiseVideoAlert", ("Shanghai", "terminal"), _alert(),
     Unauthorized, "camera_id", "only a terminal of Kunshan"),
    ("alert-missing-camera", "RaiseVideoAlert", ("Kunshan", "terminal"),
     _alert(camera_id=MISSING), NotFound, "camera_id", MISSING),
    ("alert-unknown-zone", "RaiseVideoAlert", ("Kunshan", "terminal"),
     _alert(zone="roof"), InvalidArgument, "zone", "accepted: plaza, stall"),
    ("alert-kind-not-watched", "RaiseVideoAlert", ("Kunshan", "terminal"),
     _alert(kind="crowd"), InvalidArgument, "kind", "fire, garbage, not crowd"),
    ("alert-confidence-over-1000", "RaiseVideoAlert", ("Kunshan", "terminal"),
     _alert(confidence_permille=1001), InvalidArgument, "confidence_permille",
     "less than or equal to 1000"),
    ("alert-confidence-float", "RaiseVideoAlert", ("Kunshan", "terminal"),
     _alert(confidence_permille=0.87), InvalidArgument, "confidence_permille",
     "integer"),
    ("alert-time-not-a-time", "RaiseVideoAlert", ("Kunshan", "terminal"),
     _alert(observed_at="2026-11-20T25:00:00Z"), InvalidArgument, "observed_at",
     "hour"),
    ("alert-time-not-utc", "RaiseVideoAlert", ("Kunshan", "terminal"),
     _alert(observed_at="2026-11-20T08:00:00+08:00"), InvalidArgument,
     "observed_at", "pattern"),
    ("alert-evidence-not-sm3", "RaiseVideoAlert", ("Kunshan", "terminal"),
     _alert(evidence_sm3="ab" * 16), InvalidArgument, "evidence_sm3", "pattern"),
    ("review-by-other-department", "ReviewAlert", KH,
     _on("raised", verdict="confirmed"), Unauthorized, None,
     "department transport may review"),
    ("review-by-other-city", "ReviewAlert", ("Shanghai", "admin"),
     _on("raised", verdict="confirmed"), Unauthorized, None, "only Kunshan's"),
    ("review-twice", "ReviewAlert", KT, _on("confirmed", verdict="false_alarm"),
     Conflict, "alert_id", "is confirmed"),
    ("review-unknown-verdict", "ReviewAlert", KT, _on("raised", verdict="maybe"),
     InvalidArgument, "verdict", "'confirmed' or 'false_alarm'"),
    ("review-a-camera", "ReviewAlert", KT,
     lambda w: {"alert_id": w.video["camera"], "verdict": "confirmed"}, NotFound,
     "alert_id", "not a video alert"),
    ("dispatch-unreviewed", "DispatchAlert", KT, _on("raised", department="health"),
     Conflict, "alert_id", "only a confirmed alert"),
    ("dispatch-to-unregistered", "DispatchAlert", KT,
     _on("confirmed", department="fire-brigade"), InvalidArgument, "department",
     "not registered"),
    ("dispatch-twice", "DispatchAlert", KT, _on("dispatched", department="health"),
     Conflict, "alert_id", "is dispatched"),
    ("handle-undispatched", "HandleAlert", KT, _on("confirmed", outcome="done"),
     Conflict, "alert_id", "only a dispatched alert"),
    ("handle-by-the-reviewer", "HandleAlert", KT, _on("dispatched", outcome="done"),
     Unauthorized, None, "department health may report"),
]


@pytest.mark.parametrize(
    ("function", "caller", "make", "error", "field", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in REJECTIONS])
def test_rejected_by_rule(shared: World, function: str, caller: tuple[str, str],
                          make: Callable[[World], Args], error: type[ContractError],
                          field: str | None, fragment: str) -> None:
    rejected(shared.ids, caller, function, make(shared), error, field, fragment)
