"""Cameras and video alerts through the API: the lifecycle as commands, then
the read model listed by status, camera, kind and day, scoped to the city."""

from __future__ import annotations

import functools
import json
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from apikit import (
    CENTER_ADMIN,
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

from workers.video.evidence import EvidenceStore, save_evidence
from workers.video.health import HealthWriter

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


def _evidence(data_dir: Path) -> tuple[str, bytes]:
    """Evidence stored as `video watch` stores it: (the manifest's SM3, the
    annotated frame's JPEG bytes)."""
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[10:30, 20:40] = (0, 128, 255)
    store = EvidenceStore(data_dir / "video" / "evidence")
    ev = save_evidence(store, frame, [(20, 10, 20, 20)], "fire 0.90", [frame], 5.0,
                       {"incident": name("fire")})
    return ev.digest, store.get(ev.frame)


def test_an_alerts_evidence_frame_is_served_checked(api: Api, data_dir: Path) -> None:
    camera = _camera(api, [{"zone": "stall", "polygon": [[0, 0], [9, 0], [9, 9]],
                            "detectors": ["fire"]}])
    digest, jpeg = _evidence(data_dir)
    alert = str(api.ok(f"/api/cameras/{camera}/alerts", {
        "incident": name("fire"), "kind": "fire", "confidence_permille": 900,
        "observed_at": "2031-05-04T10:00:00Z", "zone": "stall",
        "evidence_sm3": digest}, KS_TERMINAL)["result"]["id"])
    elsewhere = _alert(api, camera, "fire", "stall", "2031-05-04T10:05:00Z")
    api.sync()
    r = api.get(f"/api/video-alerts/{alert}/evidence", KS_TRANSPORT)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg" and r.content == jpeg
    assert api.get(f"/api/video-alerts/{alert}/evidence", KS_AUDITOR).content == jpeg
    # another city's admin may not read it; evidence not on this node is 404
    problem(api.get(f"/api/video-alerts/{alert}/evidence", SH_ADMIN), 403,
            "alert_id")
    body = problem(api.get(f"/api/video-alerts/{elsewhere}/evidence", KS_ADMIN),
                   404, "alert_id")
    assert elsewhere in body["detail"] and "not on this node" in body["detail"]
    problem(api.get("/api/video-alerts/00000000-0000-0000-0000-000000000009"
                    "/evidence", KS_ADMIN), 404, "alert_id")
    # an altered frame is refused, naming the alert
    manifest = json.loads(EvidenceStore(data_dir / "video" / "evidence").get(digest))
    path = EvidenceStore(data_dir / "video" / "evidence").path(manifest["frame"])
    path.write_bytes(jpeg[:-2] + b"\x00\xd9")
    body = problem(api.get(f"/api/video-alerts/{alert}/evidence", KS_ADMIN), 409,
                   "alert_id")
    assert alert in body["detail"] and "SM3" in body["detail"]


def test_camera_health_lists_this_nodes_drivers_by_city(api: Api,
                                                        data_dir: Path) -> None:
    health = data_dir / "video" / "health"
    now = time.time()
    ks, ks_old, sh = (str(uuid.uuid4()) for _ in range(3))
    for cam, city, age in ((ks, "Kunshan", 1), (ks_old, "Kunshan", 120),
                           (sh, "Shanghai", 1)):
        clock = functools.partial(float.__sub__, now, float(age))
        HealthWriter(health, cam, city, f"c-{cam[:4]}", clock=clock)(
            {"frames": 30.0, "frame_at": now - age - 0.5, "reconnects": 0})
    (health / "junk.json").write_text("{}")

    def listed(who: Who, **params: Any) -> dict[str, dict[str, Any]]:
        r = api.get("/api/cameras/health", who, **params)
        assert r.status_code == 200, r.text
        return {h["camera_id"]: h for h in r.json()
                if h["camera_id"] in (ks, ks_old, sh)}

    every = listed(CENTER_ADMIN)
    assert set(every) == {ks, ks_old, sh}
    assert every[ks]["status"] == "running" and every[ks]["lag_s"] == 0.5
    assert every[ks_old]["status"] == "stale"
    assert every[ks]["camera_code"] == f"c-{ks[:4]}" and every[ks]["frames"] == 30
    assert set(listed(KS_ADMIN)) == set(listed(KS_TRANSPORT)) == {ks, ks_old}
    assert set(listed(CENTER_ADMIN, city="Shanghai")) == {sh}
    assert set(listed(SH_ADMIN)) == {sh}
    problem(api.get("/api/cameras/health", SH_ADMIN, city="Kunshan"), 403, "city")
