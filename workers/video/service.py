"""Starting camera watches: what ``cityunion video watch`` and the API share
(the source and option checks, the ``WatchConfig`` of a camera on the ledger),
and the API's way of running them: ``LocalWatch``, a ``CameraWatch`` in
threads of the server process, driven as ``workers.video.actor.drive`` drives
an actor (alerts raised with the city's terminal identity, progress into the
camera's health file).

Why threads and not Ray actors in the server: ``CameraWatch`` is built to run
in threads (a reader and the analysis, with a lock for the rest), OpenCV
releases the GIL while it decodes and filters, and the server would otherwise
start or join a Ray cluster (seconds and ~700 MiB) to gain placement and
restarts only. A watch lives as long as the server: after a restart it is
started again and resumes from its checkpoint, raising no incident twice.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from chaincode.errors import Conflict
from ledger.idempotency import StartedKeys
from ledger.protocol import Ledger
from workers.video.health import HealthWriter
from workers.video.sources import LIVE_PREFIXES, mask_source

if TYPE_CHECKING:  # the API imports this module without OpenCV and Ray
    from workers.video.evidence import EvidenceStore
    from workers.video.model import Zone
    from workers.video.watch import CameraWatch, WatchConfig

log = logging.getLogger(__name__)
SCHEMES = ", ".join(p.removesuffix("://") for p in LIVE_PREFIXES)


class WatchError(ValueError):
    """A watch cannot start: ``field`` names the bad input."""

    def __init__(self, message: str, field: str, accepted: str | None = None
                 ) -> None:
        super().__init__(message)
        self.field = field
        self.accepted = accepted


def check_source(source: str, recordings: Path | None = None) -> str:
    """The source to open. A URL must be rtsp(s):// or http(s)://. A file is
    any path for the command line (``recordings`` None); for the API it must
    be a relative path to a file under ``recordings``, so that a token holder
    cannot make the server open files elsewhere."""
    if "://" in source:
        if not source.startswith(LIVE_PREFIXES):
            raise WatchError(f"{mask_source(source)}: a stream must be one of "
                             f"{SCHEMES}", "source", f"{SCHEMES} URL, or a "
                             "recording's file name")
        return source
    if recordings is None:
        return source
    rel = PurePosixPath(source)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise WatchError(f"{source}: a recording is named by its path under "
                         "the node's recordings directory (relative, no '..')",
                         "source", f"{SCHEMES} URL, or a recording's file name")
    path = recordings / rel
    if not path.is_file():
        raise WatchError(f"no recording {source} on this node", "source")
    return str(path)


def watch_config(camera: dict[str, Any], source: str, data_dir: Path,
                 **options: Any) -> WatchConfig:
    """The config of a watch of ``camera`` (as GetCamera answers) on
    ``source``; its checkpoint and evidence under ``data_dir/video``. Opens
    the source once for its frame size (the perspective's guess) and loads
    the model, if any, so that a bad one fails here, not in the worker."""
    from workers.video.watch import WatchConfig, default_perspective, frame_size

    try:
        _, height = frame_size(source)
    except FileNotFoundError as e:
        raise WatchError(str(e), "source") from None
    base = data_dir / "video"
    config = WatchConfig(str(camera["id"]), source, zones_of(camera),
                         default_perspective(height),
                         base / "checkpoints" / f"{camera['id']}.json",
                         base / "evidence", **options)
    try:
        config.detectors()
    except (ValueError, OSError) as e:
        raise WatchError(str(e), "model") from None
    try:
        from workers.video.analyzer import Analyzer

        Analyzer(config.analysed_zones(), config.sample_fps, config.perspective)
    except ValueError as e:
        raise WatchError(str(e), "crowd_estimator",
                         "foreground or hog, for every zone or by zone") from None
    return config


def zones_of(camera: dict[str, Any]) -> list[Zone]:
    """A camera's zones as recorded on chain (GetCamera)."""
    from workers.video.model import Zone

    return [Zone(z["zone"], tuple((int(x), int(y)) for x, y in z["polygon"]),
                 tuple(z["detectors"]), int(z["min_people"]),
                 float(z["hold_seconds"]), float(z["garbage_seconds"]))
            for z in camera["zones"]]


@dataclass
class Raiser:
    """Submits pending alerts as the worker identity; stores their evidence in
    the driver's store first (checked against its digest)."""

    ledger: Ledger
    camera_id: str
    store: EvidenceStore
    raised: list[str] = field(default_factory=list)  # alert ids, this run
    duplicates: int = 0

    def __call__(self, alerts: list[dict[str, Any]]) -> list[str]:
        done = []
        for a in alerts:
            for digest, blob in a["blobs"].items():
                if self.store.put(blob) != digest:
                    raise ValueError(f"evidence {digest} arrived corrupt")
            args = {k: a[k] for k in ("incident", "kind", "confidence_permille",
                                      "observed_at", "zone", "evidence_sm3")}
            try:
                receipt = self.ledger.submit("RaiseVideoAlert",
                                             {"camera_id": self.camera_id, **args})
                self.raised.append(str(receipt.result["id"]))
            except Conflict as e:
                if e.field != "incident":
                    raise
                self.duplicates += 1  # raised before a restart: once is enough
            done.append(a["incident"])
        return done


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


@dataclass
class LocalWatch:
    """One camera's watch in threads of this process: ``CameraWatch.run`` in
    one, and a driver that every ``poll_s`` hands its pending alerts to
    ``raise_alerts`` (``workers.video.actor.Raiser``), acknowledges those
    raised and turns its progress into the camera's health. A failed raise
    (the ledger away) is retried at the next poll; the alerts stay pending."""

    config: WatchConfig
    camera: dict[str, Any]
    raise_alerts: Callable[[list[dict[str, Any]]], list[str]]
    health: HealthWriter
    started_by: str
    shown_source: str | None = None  # as the caller named it (else the path)
    poll_s: float = 0.5
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_at: str = field(default_factory=lambda: _iso(time.time()))
    state: str = "starting"
    last_error: str | None = None
    view: dict[str, Any] = field(default_factory=dict)
    _watch: CameraWatch | None = None
    _stopping: bool = False
    _thread: threading.Thread | None = None

    def start(self) -> None:
        from workers.video.watch import CameraWatch

        self._watch = CameraWatch(self.config)
        self._thread = threading.Thread(target=self._drive, daemon=True,
                                        name=f"watch-{self.id[:8]}")
        self._thread.start()

    @property
    def ended(self) -> bool:
        return self.state in ("finished", "stopped", "failed")

    def request_stop(self) -> None:
        """Ask the watch to stop (it raises what it found first)."""
        self._stopping = True
        if self._watch is not None:
            self._watch.stop()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the watch to stop; wait (up to ``timeout``) until it has."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def _drive(self) -> None:
        assert self._watch is not None
        watch, error = self._watch, list[BaseException]()
        runner = threading.Thread(target=lambda: _run(watch, error), daemon=True,
                                  name=f"watch-{self.id[:8]}-run")
        runner.start()
        while runner.is_alive():
            runner.join(self.poll_s)
            self._deliver(watch)
        self._deliver(watch)
        if error:
            self.last_error = f"{type(error[0]).__name__}: {error[0]}"
            log.warning("watch %s of camera %s failed: %s", self.id,
                        self.config.camera_id, self.last_error)
        self.view = self._health(self.health.stopped)
        self.state = ("failed" if error else "stopped" if self._stopping
                      else "finished")

    def _deliver(self, watch: CameraWatch) -> None:
        try:
            alerts = watch.take_alerts()
            if alerts:
                watch.ack(self.raise_alerts(alerts))
        except Exception as e:  # the ledger away: try again at the next poll
            self.last_error = f"raising alerts: {type(e).__name__}: {e}"
            log.warning("watch %s: %s", self.id, self.last_error)
        progress = watch.progress()
        self.view = self._health(lambda: self.health.update(progress))
        if not self.ended:
            self.state = self.view["status"]

    def _health(self, write: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return write()
        except OSError as e:  # health is advisory: never stop the watch
            log.warning("camera health not written: %s", e)
            return self.view

    def describe(self) -> dict[str, Any]:
        """What the API shows: the watch, its camera and its latest health."""
        progress = self._watch.progress() if self._watch else {}
        return {**self.view, "id": self.id, "camera_id": self.config.camera_id,
                "camera_code": self.camera.get("camera_code"),
                "city": self.camera["city"],
                "department": self.camera["department"],
                "source": mask_source(self.shown_source or self.config.source),
                "state": self.state,
                "started_at": self.started_at, "started_by": self.started_by,
                "last_error": self.last_error,
                "pending_alerts": int(progress.get("pending", 0))}


def _run(watch: CameraWatch, error: list[BaseException]) -> None:
    try:
        watch.run()
    except Exception as e:  # reported by the driver
        error.append(e)


class WatchRegistry:
    """The watches this server runs, by id; one running watch per camera (it
    owns the camera's checkpoint)."""

    def __init__(self) -> None:
        self._watches: dict[str, LocalWatch] = {}
        self.keys = StartedKeys("watch", "a watch of another camera or source")
        self._lock = threading.Lock()

    def keyed(self, who: str, key: str, body: bytes) -> LocalWatch | None:
        """The watch ``who`` started with this idempotency key (``None`` if
        none is known); the key with another body is an error."""
        found = self.keys.find(who, key, body)
        return self._watches.get(found) if found else None

    def start(self, watch: LocalWatch) -> LocalWatch:
        with self._lock:
            for other in self._watches.values():
                if (other.config.camera_id == watch.config.camera_id
                        and not other.ended):
                    raise WatchError(
                        f"camera {watch.config.camera_id} is already watched "
                        f"by watch {other.id} (stop it first)", "camera")
            # an ended watch of this camera is replaced by the new one
            self._watches = {k: w for k, w in self._watches.items()
                             if w.config.camera_id != watch.config.camera_id}
            watch.start()
            self._watches[watch.id] = watch
        return watch

    def get(self, watch_id: str) -> LocalWatch | None:
        with self._lock:
            return self._watches.get(watch_id)

    def all(self) -> list[LocalWatch]:
        with self._lock:
            return sorted(self._watches.values(), key=lambda w: w.started_at)

    def remove(self, watch_id: str) -> LocalWatch | None:
        """Stop the watch and forget it."""
        with self._lock:
            watch = self._watches.pop(watch_id, None)
        if watch is not None:
            watch.stop()
        return watch

    def close(self) -> None:
        """Stop every watch (the server is stopping)."""
        with self._lock:
            watches, self._watches = list(self._watches.values()), {}
        for w in watches:  # all at once, then wait for each
            w.request_stop()
        for w in watches:
            w.stop()
