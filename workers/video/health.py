"""Each camera's health as the driver (``cityunion video watch``) sees it:
frames analysed per second over the last few seconds, the lag of the latest
frame, its time, the reconnect attempts and the last outage of a live source
(``gap_s``: from its last frame to the next) and the watch's status, in
``DATA_DIR/video/health/<camera id>.json`` (written atomically), which the
API lists at ``/api/cameras/health``. A file not updated for ``STALE_S``
seconds belongs to a driver that is gone: its status reads ``stale``."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
STALE_S = 30.0
WINDOW_S = 5.0
STATUSES = ("running", "reconnecting", "stopped", "stale")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def write_health(directory: Path, camera_id: str, health: dict[str, Any]) -> Path:
    """``health`` as ``directory/<camera_id>.json``; readers never see half."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{camera_id}.json"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".health-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(health, f, sort_keys=True)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_health(directory: Path, now: float | None = None,
                stale_s: float = STALE_S) -> list[dict[str, Any]]:
    """Every camera's health file, by camera id; a status not updated within
    ``stale_s`` seconds reads ``stale``. Unreadable files are skipped."""
    now = time.time() if now is None else now
    out = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            h = dict(json.loads(path.read_text("utf-8")))
            updated = datetime.fromisoformat(str(h["updated_at"])).timestamp()
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("camera health %s unreadable: %s", path, e)
            continue
        if h.get("status") != "stopped" and now - updated > stale_s:
            h["status"] = "stale"
        out.append(h)
    return out


@dataclass
class HealthWriter:
    """Turns the driver's progress reports (``CameraWatch.progress``) into the
    camera's health file: fps over the last ``window_s`` seconds, lag (now
    minus the time the latest frame was captured), status running, or
    reconnecting while a live source is being reopened."""

    directory: Path
    camera_id: str
    city: str
    camera_code: str | None = None
    window_s: float = WINDOW_S
    clock: Callable[[], float] = time.time
    _samples: deque[tuple[float, float]] = field(default_factory=deque)
    _reconnects: float = 0.0
    _last: dict[str, float] = field(default_factory=dict)

    def __call__(self, progress: dict[str, float]) -> None:
        self.update(progress)

    def update(self, progress: dict[str, float], status: str | None = None
               ) -> dict[str, Any]:
        """Write the health of this report; returns it."""
        health = self.snapshot(progress, status)
        write_health(self.directory, self.camera_id, health)
        return health

    def snapshot(self, progress: dict[str, float], status: str | None = None
                 ) -> dict[str, Any]:
        """The health for this report (what ``update`` writes)."""
        now = self.clock()
        frames = float(progress.get("frames", 0))
        self._samples.append((now, frames))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()
        t0, f0 = self._samples[0]
        fps = (frames - f0) / (now - t0) if now > t0 and status is None else 0.0
        reconnects = float(progress.get("reconnects", 0))
        if status is None:
            fresh = frames > float(self._last.get("frames", -1))
            status = ("reconnecting" if reconnects > self._reconnects and not fresh
                      else "running")
            if fresh:
                self._reconnects = reconnects
        self._last = dict(progress)
        frame_at = progress.get("frame_at") or None
        return {
            "camera_id": self.camera_id, "city": self.city,
            "camera_code": self.camera_code, "status": status,
            "fps": round(max(fps, 0.0), 2),
            "lag_s": round(max(now - frame_at, 0.0), 3) if frame_at else None,
            "last_frame_at": _iso(frame_at), "updated_at": _iso(now),
            "frames": int(frames), "dropped": int(progress.get("dropped", 0)),
            "reconnects": int(reconnects),
            "gap_s": round(float(progress.get("gap_s", 0.0)), 3),
            "alerts": int(progress.get("alerts", 0))}

    def stopped(self) -> dict[str, Any]:
        """The watch has ended (or the driver is stopping)."""
        return self.update(self._last, "stopped")
