"""End to end: a recorded video → a Ray actor per camera → an alert on the
ledger → reviewed → dispatched → handled; an actor killed mid-stream is
restarted and resumes without a second alert for the same incident."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from helpers import Clients, identifier_args, register_departments

from chaincode.cameras import derive_alert_id
from ledger.connect import connect
from ledger.protocol import Connection, Ledger
from workers.video.actor import Raiser, drive, start_actor, zones_of
from workers.video.evidence import EvidenceStore, load_manifest
from workers.video.synthetic import make_video, scene_perspective, write_video
from workers.video.watch import Checkpoint, WatchConfig

W, H = 320, 180


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connection]:
    c = connect("embedded", data_dir=tmp_path_factory.mktemp("video") / "ledger")
    try:
        yield c
    finally:
        c.close()


def _camera(ids: Clients[Ledger], code: str) -> str:
    """A Kunshan transport camera whose zones are the synthetic scene's."""
    register_departments(ids)
    transport = ids("Kunshan", "transport")
    place = transport.submit("RegisterIdentifier", identifier_args(
        "place", "poi")).result["id"]
    zones = [{"zone": z.name, "polygon": [list(p) for p in z.polygon],
              "detectors": list(z.detectors), "min_people": z.min_people,
              "hold_seconds": int(z.hold_s), "garbage_seconds": int(z.garbage_s)}
             for z in make_video("fire", 0, W, H).zones()]
    return str(transport.submit("RegisterCamera", {
        "camera_code": code, "place_id": place, "department": "transport",
        "zones": zones}).result["id"])


def _alerts_of(ledger: Ledger, camera_id: str) -> list[dict[str, Any]]:
    return [e.data for e in ledger.events()
            if e.type == "VideoAlertRaised" and e.data["camera_id"] == camera_id]


def test_video_to_handled_alert_surviving_a_killed_worker(
        ray_cluster: None, conn: Connection, tmp_path: Path) -> None:
    ids: Clients[Ledger] = Clients(conn)
    camera_id = _camera(ids, "cam-fire")
    source = write_video(make_video("fire", 301, W, H), tmp_path / "fire.avi")
    camera = ids("Kunshan", "auditor").evaluate("GetCamera", {"id": camera_id})
    config = WatchConfig(camera_id, str(source), zones_of(camera),
                         scene_perspective(H), tmp_path / "cp.json",
                         tmp_path / "worker-evidence", pace=4.0)
    store = EvidenceStore(tmp_path / "evidence")
    raiser = Raiser(ids("Kunshan", "terminal"), camera_id, store)
    actor = start_actor(config)
    first_pid = ray.get(actor.pid.remote())
    seen: list[dict[str, float]] = []
    result: dict[str, Any] = {}
    driver = threading.Thread(target=lambda: result.update(
        drive(actor, raiser, seen.append, poll_s=0.2)))
    driver.start()
    deadline = time.monotonic() + 60
    # The fire is on the ledger and burning for longer than the worker re-reads
    # after a restart (warmup_s): kill the worker now.
    while not (raiser.raised and seen[-1]["t"] >= 10.0):
        assert time.monotonic() < deadline and driver.is_alive(), seen[-1:]
        time.sleep(0.05)
    killed_at = seen[-1]["t"]
    ray.kill(actor, no_restart=False)
    driver.join(timeout=90)
    assert not driver.is_alive()
    assert ray.get(actor.pid.remote()) != first_pid  # restarted
    assert result["t"] > killed_at + 2, "the restarted worker went on"
    assert result["resumed_at"] >= killed_at - 1, "from its checkpoint"

    alerts = _alerts_of(ids("Kunshan", "auditor"), camera_id)
    assert [(a["kind"], a["zone"]) for a in alerts] == [("fire", "stall")]
    alert_id = derive_alert_id(camera_id, alerts[0]["incident"])
    assert raiser.raised == [alert_id]
    manifest = load_manifest(store, alerts[0]["evidence_sm3"])
    assert manifest["kind"] == "fire" and store.get(str(manifest["clip"]))
    cp = Checkpoint.load(tmp_path / "cp.json", 0)
    assert cp.raised == [alerts[0]["incident"]] and not cp.pending

    transport, health = ids("Kunshan", "transport"), ids("Kunshan", "health")
    transport.submit("ReviewAlert", {"alert_id": alert_id, "verdict": "confirmed"})
    transport.submit("DispatchAlert", {"alert_id": alert_id, "department": "health"})
    health.submit("HandleAlert", {"alert_id": alert_id, "outcome": "put out"})
    final = health.evaluate("GetVideoAlert", {"id": alert_id})
    assert final["status"] == "handled"


def test_watching_again_from_the_checkpoint_raises_nothing(
        ray_cluster: None, conn: Connection, tmp_path: Path) -> None:
    ids: Clients[Ledger] = Clients(conn)
    camera_id = _camera(ids, "cam-litter")
    source = write_video(make_video("litter", 302, W, H), tmp_path / "l.avi")
    camera = ids("Kunshan", "auditor").evaluate("GetCamera", {"id": camera_id})
    config = WatchConfig(camera_id, str(source), zones_of(camera),
                         scene_perspective(H), tmp_path / "cp.json",
                         tmp_path / "worker-evidence")
    raiser = Raiser(ids("Kunshan", "terminal"), camera_id,
                    EvidenceStore(tmp_path / "evidence"))
    drive(start_actor(config), raiser)
    assert len(_alerts_of(ids("Kunshan", "auditor"), camera_id)) == 1
    # the same checkpoint again: it resumes at the end and raises nothing new
    again = drive(start_actor(config), raiser)
    assert raiser.duplicates == 0 and len(raiser.raised) == 1
    assert again["frames"] <= 60  # only the warm-up was re-read
