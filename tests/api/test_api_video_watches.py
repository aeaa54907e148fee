"""Video watches through the API: bad input refused naming the field with
nothing started, a recording analysed to an alert on the ledger, a running
watch followed and stopped, credentials never shown."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
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

from workers.video.synthetic import make_video, write_video

W, H = 320, 180
WATCHES = "/api/video/watches"


def camera(api: Api, place: str | None = None) -> tuple[str, str]:
    """A Kunshan transport camera watching the synthetic scene's zones: (its
    id, its place)."""
    place = place or api.identifier("place", scheme="poi")
    zones = [{"zone": z.name, "polygon": [list(p) for p in z.polygon],
              "detectors": list(z.detectors), "min_people": z.min_people,
              "hold_seconds": int(z.hold_s), "garbage_seconds": int(z.garbage_s)}
             for z in make_video("fire", 0, W, H).zones()]
    cid = str(api.ok(f"/api/identifiers/{place}/cameras", {
        "camera_code": name("cam"), "department": "transport", "zones": zones},
        KS_TRANSPORT)["result"]["id"])
    api.token(KS_TERMINAL)  # the node's wallet holds Kunshan's terminal
    return cid, place


def recording(data_dir: Path, scenario: str = "fire", seed: int = 301) -> str:
    """A synthetic recording under the node's recordings; its name there."""
    directory = data_dir / "video" / "recordings"
    directory.mkdir(parents=True, exist_ok=True)
    file = f"{scenario}-{seed}.avi"
    if not (directory / file).exists():
        write_video(make_video(scenario, seed, W, H), directory / file)
    return file


def until(api: Api, watch_id: str, done: Callable[[dict[str, Any]], bool],
          seconds: float = 60) -> dict[str, Any]:
    """The watch, polled until ``done`` (a liveness bound, not a speed test)."""
    deadline = time.monotonic() + seconds
    while not done(got := watch_of(api, watch_id)):
        assert time.monotonic() < deadline, f"gave up waiting: {got}"
        time.sleep(0.1)
    return got


def watch_of(api: Api, watch_id: str, who: tuple[str, ...] = KS_TRANSPORT
             ) -> dict[str, Any]:
    r = api.get(f"{WATCHES}/{watch_id}", who)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def watched(api: Api, cam: str) -> list[dict[str, Any]]:
    r = api.get(WATCHES, CENTER_ADMIN)
    assert r.status_code == 200, r.text
    return [w for w in r.json() if w["camera_id"] == cam]


def test_bad_input_names_the_field_and_starts_nothing(
        api: Api, data_dir: Path, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level("DEBUG")
    cam, place = camera(api)
    file = recording(data_dir)

    def refused(body: dict[str, Any], status: int, field: str,
                who: tuple[str, ...] = KS_TRANSPORT) -> str:
        return str(problem(api.post(WATCHES, {"camera": cam, "source": file,
                                              **body}, who), status, field)["detail"])

    assert "no such camera" in refused(
        {"camera": "00000000-0000-0000-0000-000000000009"}, 422, "camera")
    assert "no such camera" in refused({"camera": "no-such-code"}, 422, "camera")
    assert "rtsp, rtsps, http, https" in refused({"source": "ftp://h/x"}, 422,
                                                  "source")
    refused({"source": "/etc/hostname"}, 422, "source")
    refused({"source": "../recordings/" + file}, 422, "source")
    assert "no recording" in refused({"source": "none.avi"}, 422, "source")
    refused({"options": {"sample_fps": 0}}, 422, "options.sample_fps")
    refused({"options": {"turbo": True}}, 422, "options.turbo")
    assert "zone nowhere" in refused(
        {"options": {"crowd_estimator": {"nowhere": "hog"}}}, 422,
        "options.crowd_estimator")
    r = api.post(WATCHES, {"camera": cam, "source": file,
                           "options": {"crowd_estimator": "yolo"}}, KS_TRANSPORT)
    assert problem(r, 422)["field"].startswith("options.crowd_estimator")
    refused({}, 403, "camera", SH_ADMIN)  # another city's
    refused({}, 403, "camera", ("Kunshan", "department", "health"))  # another dept
    refused({}, 403, "role", KS_TERMINAL)
    refused({}, 403, "role", KS_AUDITOR)
    # a stream that cannot be read: refused, its password never shown
    detail = refused({"source": "rtsp://admin:s3cret@127.0.0.1:9/live"}, 422,
                     "source")
    assert "s3cret" not in detail and "***:***@127.0.0.1:9" in detail
    out, err = capfd.readouterr()  # OpenCV's and FFmpeg's own messages too
    assert "s3cret" not in caplog.text + out + err
    # a camera whose place was revoked is inactive
    api.ok(f"/api/identifiers/{place}/revoke", {"reason": "closed"}, KS_TRANSPORT,
           200)
    assert "revoked" in refused({}, 409, "camera")
    assert watched(api, cam) == []


def test_a_recording_watched_through_the_api_raises_its_alert(
        api: Api, data_dir: Path) -> None:
    cam, _ = camera(api)
    r = api.post(WATCHES, {"camera": cam, "source": recording(data_dir),
                           "options": {"pace": 4}}, KS_ADMIN)
    assert r.status_code == 201, r.text
    started = r.json()
    assert started["camera_id"] == cam and started["started_by"] == (
        "Kunshan:city_admin")
    done = until(api, started["id"], lambda w: w["state"] == "finished")
    assert done["frames"] == 150 and done["alerts"] == 1, done
    assert done["last_error"] is None and done["lag_s"] is not None
    api.sync()
    alerts = api.get("/api/video-alerts", KS_TRANSPORT, camera_id=cam).json()
    assert [(a["kind"], a["zone"], a["status"]) for a in alerts["items"]] == [
        ("fire", "stall", "raised")]
    # the camera's health table shows the ended watch
    [health] = [h for h in api.get("/api/cameras/health", KS_ADMIN).json()
                if h["camera_id"] == cam]
    assert health["status"] == "stopped" and health["frames"] == 150
    # watching it again resumes from the checkpoint: no second alert
    again = api.ok(WATCHES, {"camera": cam, "source": recording(data_dir)},
                   KS_TRANSPORT)
    until(api, again["id"], lambda w: w["state"] == "finished")
    api.sync()
    assert api.get("/api/video-alerts", KS_TRANSPORT,
                   camera_id=cam).json()["total"] == 1


def test_a_running_watch_is_followed_and_stopped(api: Api, data_dir: Path
                                                 ) -> None:
    cam, _ = camera(api)
    body = {"camera": cam, "source": recording(data_dir, "litter", 305),
            "options": {"pace": 1}}
    key = {"Idempotency-Key": name("k"), **api.headers(KS_TRANSPORT)}
    r = api.client.post(WATCHES, json=body, headers=key)
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    replay = api.client.post(WATCHES, json=body, headers=key)
    assert replay.json()["id"] == wid and replay.headers["Idempotent-Replayed"]
    problem(api.client.post(WATCHES, json={**body, "options": {}}, headers=key),
            422, "Idempotency-Key")
    # one running watch per camera
    assert "already watched" in problem(api.post(WATCHES, body, KS_ADMIN), 409,
                                        "camera")["detail"]
    running = until(api, wid, lambda w: w["frames"] >= 10)
    assert running["state"] == "running" and running["fps"] > 0
    assert running["last_frame_at"] and running["source"] == body["source"]
    # listed for the city; not for another city; nor stoppable by it
    assert [w["id"] for w in watched(api, cam)] == [wid]
    assert wid not in [w["id"] for w in api.get(WATCHES, SH_ADMIN).json()]
    problem(api.client.delete(f"{WATCHES}/{wid}", headers=api.headers(SH_ADMIN)),
            404, "watch_id")
    problem(api.client.delete(f"{WATCHES}/{wid}",
                              headers=api.headers(KS_AUDITOR)), 403, "role")
    r = api.client.delete(f"{WATCHES}/{wid}", headers=api.headers(KS_TRANSPORT))
    assert r.status_code == 200, r.text
    stopped = r.json()
    assert stopped["state"] == "stopped" and stopped["frames"] < 150
    assert watched(api, cam) == []
    problem(api.client.delete(f"{WATCHES}/{wid}", headers=api.headers(KS_ADMIN)),
            404, "watch_id")
