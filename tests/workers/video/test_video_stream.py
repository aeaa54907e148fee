"""A real live stream: Motion JPEG over HTTP from a server in a subprocess
(``workers.video.mjpeg``), read by OpenCV's FFmpeg backend. The server is
killed while a fire burns and restarted seconds later: the watch reconnects
with capped backoff, reports the reconnects and the outage, and raises the
fire once. Killed for good, the watch ends with a clear error after its
configured reconnect attempts. The password of the stream's URL appears in no
report, log or message.

Here the fire detector keeps its state across the outage and sees the fire in
the first frame after it, so the incident would go on even if the outage
counted as absence. It does not (``Debounce.skip``): that matters when a
detector must warm up again (a worker restarted on a live stream), and the
unit test below shows the difference."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from workers.video.health import HealthWriter, read_health
from workers.video.model import Debounce, Detection, Zone
from workers.video.service import LocalWatch
from workers.video.synthetic import make_video, scene_perspective
from workers.video.watch import WatchConfig

W, H = 320, 180
ROOT = Path(__file__).parents[3]
PASSWORD = "pa55-w0rd"


def free_port(start: int = 27000) -> int:
    for port in range(start, start + 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port from 27000")


class Camera:
    """The MJPEG server as a process; ``kill`` and ``start`` again with the
    same epoch (the scene goes on as a real camera's would)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.epoch: float | None = None
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        args = [sys.executable, "-m", "workers.video.mjpeg", "--scenario", "fire",
                "--seed", "301", "--width", str(W), "--height", str(H),
                "--seconds", "60", "--port", str(self.port), "--user", "cam",
                "--password", PASSWORD]
        if self.epoch is not None:
            args += ["--epoch", repr(self.epoch)]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # once it listens
        assert line.startswith("serving"), line
        self.epoch = self.epoch or float(line.rsplit("epoch=", 1)[1])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)  # no goodbye: a cable pulled
        self.proc.wait(10)

    @property
    def url(self) -> str:
        return f"http://cam:{PASSWORD}@127.0.0.1:{self.port}/stream"


@pytest.fixture
def camera() -> Iterator[Camera]:
    cam = Camera(free_port())
    try:
        yield cam
    finally:
        if cam.proc is not None and cam.proc.poll() is None:
            cam.kill()


def wait_for(what: Callable[[], bool], watch: LocalWatch, seconds: float = 60
             ) -> None:
    """A liveness bound, not a speed test."""
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, f"gave up waiting: {watch.describe()}"
        time.sleep(0.1)


def test_a_dropped_stream_is_reconnected_and_its_fire_raised_once(
        camera: Camera, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level("DEBUG")
    camera.start()
    config = WatchConfig("cam-1", camera.url, make_video("fire", 0, W, H).zones(),
                         scene_perspective(H), tmp_path / "cp.json",
                         tmp_path / "evidence", backoff_s=0.25, max_backoff_s=1.0,
                         reconnect_attempts=12)
    raised: list[dict[str, Any]] = []

    def raise_alerts(alerts: list[dict[str, Any]]) -> list[str]:
        raised.extend(alerts)
        return [a["incident"] for a in alerts]

    watch = LocalWatch(config, {"city": "Kunshan", "department": "transport",
                                "camera_code": "cam-1"}, raise_alerts,
                       HealthWriter(tmp_path / "health", "cam-1", "Kunshan"),
                       "test", poll_s=0.1)
    watch.start()
    assert watch._watch is not None
    debounce = watch._watch.analyzer.debounce
    skipped: list[float] = []
    skip = debounce.skip

    def recorded(seconds: float) -> None:
        skipped.append(seconds)
        skip(seconds)

    monkeypatch.setattr(debounce, "skip", recorded)
    try:
        # the fire is raised, and burns on: pull the cable
        wait_for(lambda: bool(raised) and watch.describe()["frames"] >= 80, watch)
        camera.kill()
        states = set()
        down = time.monotonic()
        while time.monotonic() - down < 6.0:
            states.add(watch.describe()["state"])
            time.sleep(0.05)
        assert "reconnecting" in states
        camera.start()
        back = watch.describe()["frames"]
        # five seconds of the fire after the outage (a second incident would
        # have held its three seconds by then)
        wait_for(lambda: watch.describe()["frames"] >= back + 60, watch)
        view = watch.describe()
        assert view["state"] == "running"
        assert view["reconnects"] >= 3  # refused while down: backoff 0.25, 0.5, 1..
        # the outage outlasted the debounce's clear time: without skipping it,
        # the fire seen again would be a second incident
        assert view["gap_s"] > Debounce([]).clear_s, view
        [gap] = skipped  # the outage, less one sampling period, was skipped
        assert view["gap_s"] - 0.5 < gap < view["gap_s"]
        assert len(raised) == 1 and view["alerts"] == 1, raised
        [health] = read_health(tmp_path / "health")
        assert health["reconnects"] == view["reconnects"] and health["gap_s"] > 5

        # gone for good: the watch gives up after its 12 attempts, and says so
        camera.kill()
        wait_for(lambda: watch.ended, watch)
    finally:
        watch.stop()
    view = watch.describe()
    assert view["state"] == "failed" and len(raised) == 1
    assert view["last_error"] == (
        f"SourceLost: http://***:***@127.0.0.1:{camera.port}/stream: no frames "
        "after 12 reconnect attempts")
    assert view["source"] == f"http://***:***@127.0.0.1:{camera.port}/stream"
    [health] = read_health(tmp_path / "health")
    assert health["status"] == "stopped"
    out, err = capfd.readouterr()
    assert "reconnecting in" in caplog.text
    assert PASSWORD not in caplog.text + out + err + str(view) + str(health)


def test_an_outage_is_neither_presence_nor_absence() -> None:
    """A fire seen for 5 s, 8 s without frames, then 1.5 s of frames without
    the finding (a detector warming up), then the fire again: one incident
    when the outage is skipped, two when it counts as absence, and two after
    an outage longer than ``blind_s``."""
    fire = [Detection("fire", "stall", 0.9)]

    def incidents(skip: float | None) -> int:
        d = Debounce([Zone("stall", ((0, 0), (9, 0), (9, 9)), ("fire",))])
        opened = [i for n in range(50) for i in d.update(fire, n / 10)]
        if skip is not None:
            d.skip(skip)
        offset = 0.0 if skip is None else skip - 8.0
        opened += [i for n in range(130, 145)
                   for i in d.update([], n / 10 + offset)]
        opened += [i for n in range(145, 200)
                   for i in d.update(fire, n / 10 + offset)]
        return len(opened)

    assert incidents(8.0) == 1
    assert incidents(None) == 2
    assert incidents(400.0) == 2  # beyond blind_s (300 s): a new incident


def test_a_watch_waiting_to_reconnect_stops_when_asked(tmp_path: Path) -> None:
    """Stopping does not wait out the backoff (here 30 s): the watch ends as
    stopped, not failed."""
    url = f"http://127.0.0.1:{free_port()}/stream"  # nobody listens
    config = WatchConfig("cam-2", url, make_video("fire", 0, W, H).zones(),
                         scene_perspective(H), tmp_path / "cp.json",
                         tmp_path / "evidence", backoff_s=30.0, max_backoff_s=30.0)
    watch = LocalWatch(config, {"city": "Kunshan", "department": "transport"},
                       lambda alerts: [],
                       HealthWriter(tmp_path / "health", "cam-2", "Kunshan"),
                       "test", poll_s=0.1)
    watch.start()
    wait_for(lambda: watch.describe().get("reconnects", 0) >= 1, watch)
    watch.stop(timeout=10)
    assert watch.ended and watch.describe()["state"] == "stopped"
    assert watch.last_error is None
