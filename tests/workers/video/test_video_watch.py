"""The watch loop's plain parts: sampling, reconnecting with backoff, the
bounded queue, the checkpoint; and the CLI (``workers``, ``video watch``)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from helpers import Clients, identifier_args, register_departments
from test_video_onnx import build_model

from cli.main import main
from ledger.connect import connect
from workers import cluster
from workers.video.health import read_health
from workers.video.synthetic import make_video, scene_perspective, write_video
from workers.video.watch import (
    CameraWatch,
    Checkpoint,
    FrameSource,
    SourceLost,
    WatchConfig,
)

FRAME = np.zeros((18, 32, 3), np.uint8)


class FakeCapture:
    """A capture that yields ``frames`` frames, then fails (a dropped stream)."""

    def __init__(self, frames: int, fps: float = 30.0) -> None:
        self.left, self.fps, self.pos = frames, fps, 0

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, Any]:
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, FRAME

    def get(self, prop: int) -> float:
        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def set(self, prop: int, value: float) -> bool:
        self.left -= int(value)
        return True

    def release(self) -> None:
        pass


def test_file_is_sampled_to_the_rate() -> None:
    src = FrameSource("a.avi", 10.0, opener=lambda s: FakeCapture(90, 30.0))
    times = [round(t, 3) for t, _ in src.frames()]
    assert times == [round(i / 10, 3) for i in range(30)]
    resumed = FrameSource("a.avi", 10.0, opener=lambda s: FakeCapture(90, 30.0))
    assert [round(t, 3) for t, _ in resumed.frames(start_s=2.0)][:2] == [2.0, 2.1]


def test_live_stream_reconnects_with_backoff_then_gives_up() -> None:
    opened: list[str] = []
    sleeps: list[float] = []
    clock = iter(float(i) for i in range(1000))

    def opener(source: str) -> FakeCapture:
        opened.append(source)
        return FakeCapture(3 if len(opened) <= 2 else 0)

    src = FrameSource("rtsp://cam/1", 1.0, opener=opener, backoff_s=0.5,
                      max_backoff_s=2.0, max_attempts=4, clock=lambda: next(clock),
                      sleep=sleeps.append)
    got: list[float] = []
    with pytest.raises(SourceLost, match="after 4 reconnect attempts"):
        got.extend(t for t, _ in src.frames())
    assert len(got) == 6  # three frames from each of two connections
    # one drop after each good connection (reset), then 1, 2, 4 -> capped at 2
    assert sleeps == [0.5, 0.5, 1.0, 2.0, 2.0]
    assert src.reconnects == 5


def test_live_frames_are_dropped_when_analysis_lags(tmp_path: Path) -> None:
    """A live source never waits: with a queue of 2 and slow analysis the
    oldest frames are dropped and counted."""
    release = threading.Event()

    class SlowWatch(CameraWatch):
        def _analyse(self, t: float, frame: Any) -> None:
            release.wait(5)

    ticks = iter(range(10_000))
    src = FrameSource("rtsp://cam/1", 10.0, opener=lambda s: FakeCapture(50),
                      max_attempts=0, sleep=lambda s: None,
                      clock=lambda: next(ticks) * 0.2)
    zones = make_video("fire", 0, 32, 18).zones()
    config = WatchConfig("cam", "rtsp://cam/1", zones, scene_perspective(18),
                         tmp_path / "cp.json", tmp_path / "ev", queue_size=2)
    watch = SlowWatch(config, source=src, now=lambda: 0.0)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            watch.run()
        except SourceLost as e:  # the fake stream ends for good
            errors.append(e)

    runner = threading.Thread(target=run)
    runner.start()
    threading.Timer(0.5, release.set).start()
    runner.join(10)
    assert watch.stats["dropped"] >= 40
    assert watch.stats["frames"] + watch.stats["dropped"] == 50
    assert errors


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    cp = Checkpoint(1000.0, 12.5, [{"kind": "fire"}], [], ["fire-stall-1003"])
    cp.save(tmp_path / "c" / "cp.json")
    assert Checkpoint.load(tmp_path / "c" / "cp.json", 0.0) == cp
    assert Checkpoint.load(tmp_path / "none.json", 7.0) == Checkpoint(7.0)


JOIN = """
import sys
from pathlib import Path
from workers.cluster import join
address = join(Path(sys.argv[1]))
import ray
print(address, ray.get(ray.remote(lambda: 42).remote()))
"""


def test_workers_up_status_down(tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    d = ["--data-dir", str(tmp_path)]
    assert main(["workers", "status", *d]) == 1
    assert json.loads(capsys.readouterr().out) == {"running": False}
    assert main(["workers", "up", "--num-cpus", "1", *d]) == 0
    try:
        up = json.loads(capsys.readouterr().out)
        assert up["running"] and "token" not in up
        state = tmp_path / "workers" / "cluster.json"
        assert state.stat().st_mode & 0o077 == 0  # the token: owner only
        assert main(["workers", "up", *d]) == 0  # idempotent: the same head
        assert json.loads(capsys.readouterr().out)["pid"] == up["pid"]
        assert main(["workers", "status", *d]) == 0
        capsys.readouterr()
        # another process joins it with the token from the state file
        joined = subprocess.run([sys.executable, "-c", JOIN, str(tmp_path)],
                                capture_output=True, text=True, timeout=120)
        assert joined.stdout.split()[-2:] == [up["address"], "42"], joined.stderr
        # (without the token Ray refuses the join, after ~20 s of retries: not
        # worth the wait here)
    finally:
        assert main(["workers", "down", *d]) == 0
    assert json.loads(capsys.readouterr().out) == {"stopped": True}
    assert cluster.load(tmp_path) is None
    assert not Path(f"/proc/{up['pid']}").exists() or not cluster._alive(up["pid"])
    assert main(["workers", "up", "--num-cpus", "0", *d]) == 2


def test_video_watch_command(ray_cluster: None, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    conn = connect("embedded", data_dir=data)
    try:
        ids = Clients(conn)
        register_departments(ids)
        transport = ids("Kunshan", "transport")
        place = transport.submit("RegisterIdentifier", identifier_args(
            "place", "poi")).result["id"]
        video = make_video("litter", 303, 320, 180)
        zones = [{"zone": z.name, "polygon": [list(p) for p in z.polygon],
                  "detectors": list(z.detectors), "garbage_seconds": 5}
                 for z in video.zones()]
        transport.submit("RegisterCamera", {"camera_code": "cam-7", "place_id": place,
                                            "department": "transport",
                                            "zones": zones})
    finally:
        conn.close()
    source = write_video(video, tmp_path / "litter.avi")
    args = ["video", "watch", "--data-dir", str(data), "--city", "Kunshan",
            "--source", str(source), "--quiet"]
    assert main([*args, "--camera", "cam-7"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["alert_ids"]) == 1 and out["frames"] == 150
    [health] = read_health(data / "video" / "health")
    assert (health["camera_code"], health["city"], health["status"],
            health["frames"]) == ("cam-7", "Kunshan", "stopped", 150)
    assert health["last_frame_at"] and health["lag_s"] is not None
    assert main([*args, "--camera", "cam-8"]) == 2
    assert "--camera cam-8: no camera" in capsys.readouterr().err
    assert main([*args, "--camera", "cam-7", "--model", "m.onnx"]) == 2
    assert "--model and --names go together" in capsys.readouterr().err
    assert main([*args, "--camera", "cam-7", "--crowd-estimator",
                 "nowhere=hog"]) == 2
    assert "--crowd-estimator: crowd estimator for zone nowhere" in (
        capsys.readouterr().err)
    assert main([*args, "--camera", "cam-7", "--model-kinds", "smoke"]) == 2
    assert "--model-kinds smoke: accepted crowd, fire, garbage" in (
        capsys.readouterr().err)


def test_an_onnx_model_replaces_the_classical_detector(tmp_path: Path) -> None:
    """A static orange sign raises nothing classically; a (constant) model that
    sees a fire at the stall raises one fire incident, once."""
    rows = [[50, 25, 6, 6, 0.0, 0.93, 0.0]]  # a fire at (250, 55) in 320x180
    model = build_model(tmp_path / "fire.onnx", rows)
    (tmp_path / "names.txt").write_text("person\nfire\ngarbage\n", "utf-8")
    video = make_video("orange_sign", 304, 320, 180, seconds=8.0)
    source = write_video(video, tmp_path / "sign.avi")

    def watch(name: str, **model_args: Any) -> CameraWatch:
        w = CameraWatch(WatchConfig("cam", str(source), video.zones(),
                                    scene_perspective(180), tmp_path / name,
                                    tmp_path / "ev", **model_args))
        w.run()
        return w

    assert watch("classical.json").cp.pending == []
    with_model = watch("model.json", model=model, names=tmp_path / "names.txt",
                       model_kinds=("fire",))
    [alert] = with_model.cp.pending
    assert (alert["kind"], alert["zone"], alert["confidence_permille"]) == (
        "fire", "stall", 930)
    assert alert["incident"].startswith("fire-stall-")
    with pytest.raises(ValueError, match="none of the classes"):
        (tmp_path / "other.txt").write_text("cat\ndog\nbird\n", "utf-8")
        WatchConfig("cam", str(source), video.zones(), scene_perspective(180),
                    tmp_path / "x.json", tmp_path / "ev", model=model,
                    names=tmp_path / "other.txt").detectors()
