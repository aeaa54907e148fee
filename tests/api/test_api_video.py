"""Cameras and video alerts through the API: the lifecycle as commands, then
the read model listed by status, camera, kind and day, scoped to the city."""

from __future__ import annotations

from typing import Any

from apikit import (
    KS_ADMIN,
    KS_AUDITOR,
    KS_TERMINAL,
    KS_TRANSPORT,
    SH_ADMIN,
    Api,
    name,
    problem,
)
from helpers import unique_hash

Who = tuple[str, ...]


def _alert(api: Api, camera: str, kind: str, zone: str, at: str) -> str:
    return str(api.ok(f"/api/cameras/{camera}/alerts", {
        "incident": name(kind), "kind": kind, "confidence_permille": 900,
        "observed_at": at, "zone": zone, "evidence_sm3": unique_hash()},
        KS_TERMINAL)["result"]["id"])


def _camera(api: Api, zones: list[dict[str, Any]]) -> str:
    place = api.identifier("place", scheme="poi")
    return str(api.ok(f"/api/identifiers/{place}/cameras", {
        "camera_code": name("cam"), "department": "transport", "zones": zones},
        KS_TRANSPORT)["result"]["id"])


def test_video_alerts_lifecycle_and_lists(api: Api) -> None:
    camera = _camera(api, [{"zone": "plaza", "polygon": [[0, 0], [9, 0], [9, 9]],
                   "detectors": ["crowd"], "min_people": 12},
                  {"zone": "stall", "polygon": [[10, 0], [19, 0], [19, 9]],
                   "detectors": ["fire", "garbage"]}])
    fire = _alert(api, camera, "fire", "stall", "2031-05-04T10:00:00Z")
    crowd = _alert(api, camera, "crowd", "plaza", "2031-05-04T11:30:00.25Z")
    litter = _alert(api, camera, "garbage", "stall", "2031-05-05T07:00:00Z")
    api.ok(f"/api/video-alerts/{fire}/review", {"verdict": "confirmed"},
           KS_TRANSPORT, 200)
    api.ok(f"/api/video-alerts/{fire}/dispatch", {"department": "health"},
           KS_TRANSPORT, 200)
    api.ok(f"/api/video-alerts/{fire}/handle", {"outcome": "put out"},
           ("Kunshan", "department", "health"), 200)
    api.ok(f"/api/video-alerts/{crowd}/review",
           {"verdict": "false_alarm", "note": "a queue at the bus stop"}, KS_ADMIN,
           200)
    api.sync()

    def ids(who: Who = KS_AUDITOR, **params: Any) -> list[str]:
        r = api.get("/api/video-alerts", who, camera_id=camera, **params)
        assert r.status_code == 200, r.text
        return [item["id"] for item in r.json()["items"]]

    assert ids() == [litter, crowd, fire]  # newest observation first
    assert ids(status="handled") == [fire]
    assert ids(status="false_alarm") == [crowd]
    assert ids(kind="garbage") == [litter]
    assert ids(day="2031-05-04") == [crowd, fire]
    assert ids(KS_TRANSPORT, status="raised") == [litter]
    one = api.get(f"/api/video-alerts/{fire}", KS_TRANSPORT).json()
    assert (one["status"], one["dispatched_to"], one["outcome"]) == (
        "handled", "health", "put out")
    assert one["handled_by"] == "Kunshan:department/health"
    assert one["version"] == 4
    # another city's admin sees none of Kunshan's alerts
    assert ids(SH_ADMIN) == []
    problem(api.get(f"/api/video-alerts/{fire}", SH_ADMIN), 403, "alert_id")
    problem(api.get("/api/video-alerts", SH_ADMIN, city="Kunshan"), 403, "city")
    problem(api.get("/api/video-alerts", KS_AUDITOR, status="lost"), 422)
    board = api.get("/api/dashboard/summary", KS_ADMIN).json()
    counts = {(c["kind"], c["status"]): c["count"]
              for c in board["video_alerts_by_kind"]}
    assert {("fire", "handled"), ("crowd", "false_alarm"),
            ("garbage", "raised")} <= set(counts)


def test_raising_an_incident_twice_is_409_and_unknown_ids_404(api: Api) -> None:
    camera = _camera(api, [{"zone": "stall", "polygon": [[0, 0], [9, 0], [9, 9]],
                            "detectors": ["fire"]}])
    body = {"incident": name("fire"), "kind": "fire",
            "confidence_permille": 900, "observed_at": "2031-05-04T10:00:00Z",
            "zone": "stall", "evidence_sm3": unique_hash()}
    api.ok(f"/api/cameras/{camera}/alerts", body, KS_TERMINAL)
    problem(api.post(f"/api/cameras/{camera}/alerts", body, KS_TERMINAL), 409,
            "incident")
    nothing = "00000000-0000-0000-0000-000000000009"
    problem(api.post(f"/api/cameras/{nothing}/alerts", body, KS_TERMINAL), 404,
            "camera_id")
    problem(api.post(f"/api/identifiers/{nothing}/cameras", {
        "camera_code": name("cam"), "department": "transport",
        "zones": [{"zone": "a", "polygon": [[0, 0], [9, 0], [9, 9]],
                   "detectors": ["fire"]}]}, KS_TRANSPORT), 404, "place_id")
