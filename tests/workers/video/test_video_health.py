"""A camera's health file: fps over the last seconds, the lag of the latest
frame, reconnecting while a live source is reopened, stopped at the end, and
stale once nobody updates it."""

from __future__ import annotations

import json
from pathlib import Path

from workers.video.health import HealthWriter, read_health, write_health


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_health_fps_lag_reconnecting_stopped_and_stale(tmp_path: Path) -> None:
    clock = Clock(1_800_000_000.0)
    w = HealthWriter(tmp_path, "cam-a", "Kunshan", "c7", window_s=5.0, clock=clock)
    for i in range(11):  # 10 frames a second for 10 s
        clock.t += 1.0
        w({"frames": 10.0 * (i + 1), "frame_at": clock.t - 0.25, "reconnects": 0})
    [h] = read_health(tmp_path, now=clock.t)
    assert (h["camera_id"], h["city"], h["camera_code"]) == ("cam-a", "Kunshan", "c7")
    assert h["status"] == "running" and h["fps"] == 10.0 and h["lag_s"] == 0.25
    assert h["last_frame_at"].startswith("2027-01-15T08:")
    clock.t += 2.0  # the stream dropped: no frame, a reconnect
    w({"frames": 110.0, "frame_at": clock.t - 2.25, "reconnects": 1})
    [h] = read_health(tmp_path, now=clock.t)
    assert h["status"] == "reconnecting" and h["lag_s"] == 2.25 and h["fps"] < 10
    clock.t += 1.0
    w({"frames": 120.0, "frame_at": clock.t, "reconnects": 1})
    assert read_health(tmp_path, now=clock.t)[0]["status"] == "running"
    assert read_health(tmp_path, now=clock.t + 31)[0]["status"] == "stale"
    w.stopped()
    [h] = read_health(tmp_path, now=clock.t + 3600)
    assert h["status"] == "stopped" and h["fps"] == 0 and h["frames"] == 120
    assert [p.name for p in tmp_path.iterdir()] == ["cam-a.json"]  # no temp left


def test_unreadable_health_files_are_skipped(tmp_path: Path) -> None:
    assert read_health(tmp_path / "none") == []
    write_health(tmp_path, "b", {"camera_id": "b", "status": "running",
                                 "updated_at": "2031-01-01T00:00:00+00:00"})
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "c.json").write_text(json.dumps({"camera_id": "c"}))
    assert [h["camera_id"] for h in read_health(tmp_path)] == ["b"]
