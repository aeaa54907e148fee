"""Watching one camera: frames read into a bounded queue, sampled to a rate,
analysed, and incidents turned into alerts with evidence; a checkpoint so that
a restarted worker resumes without raising an incident twice. Plain classes:
``workers.video.actor`` runs a ``CameraWatch`` as a Ray actor.

Order of work for an incident (so that a crash anywhere raises it once): the
evidence is stored and the incident written to the checkpoint as pending
*before* anyone submits it; the alert's id on chain derives from the camera
and the incident key, so a pending alert submitted again after a crash is
refused by the ledger (and counted as raised); after a restart the open
incidents are restored, so the same fire still burning is not a new one.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from workers.video.analyzer import Analyzer
from workers.video.classical import Perspective
from workers.video.evidence import EvidenceStore, save_evidence
from workers.video.model import KINDS, Detector, Frame, Incident, Kind, Zone
from workers.video.onnx import CLASSES, OnnxZoneDetector, YoloV8, load_names
from workers.video.sources import LIVE_PREFIXES, mask_source

log = logging.getLogger(__name__)


class Capture(Protocol):
    """What we use of ``cv2.VideoCapture`` (tests pass a fake)."""

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, Any]: ...
    def get(self, prop: int) -> float: ...
    def set(self, prop: int, value: float) -> bool: ...
    def release(self) -> None: ...


def open_capture(source: str) -> Capture:
    return cv2.VideoCapture(source)


class SourceLost(Exception):
    """A live source did not come back within the reconnect attempts."""


@dataclass
class FrameSource:
    """Frames of a file or a live stream, sampled to ``sample_fps``.

    A file is read from ``start_s`` to its end, its time from its frame index.
    A live stream (rtsp://, http://) is timed by the clock from ``base``; when a
    read fails it is reopened with exponential backoff (``backoff_s`` doubling
    up to ``max_backoff_s``), giving up after ``max_attempts`` failures in a row.
    ``pace`` > 0 plays a file at that many times real time (a recorded stream
    standing in for a live one); 0 reads it as fast as it is consumed.
    """

    source: str
    sample_fps: float
    opener: Callable[[str], Capture] = open_capture
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_attempts: int = 8
    pace: float = 0.0
    clock: Callable[[], float] = time.time
    # waits (default: until the watch is stopped, at the latest)
    sleep: Callable[[float], object] | None = None
    reconnects: int = 0  # reopen attempts, in all
    gap_s: float = 0.0  # the last outage: from its last frame to the next one

    @property
    def live(self) -> bool:
        return self.source.startswith(LIVE_PREFIXES)

    def frames(self, start_s: float = 0.0, base: float = 0.0,
               stop: threading.Event | None = None) -> Iterator[tuple[float, Frame]]:
        stop = stop or threading.Event()
        if self.live:
            yield from self._live(base, stop)
        else:
            yield from self._file(start_s, stop)

    def _file(self, start_s: float, stop: threading.Event
              ) -> Iterator[tuple[float, Frame]]:
        cap = self.opener(self.source)
        if not cap.isOpened():
            raise FileNotFoundError(f"cannot open video {self.source!r}")
        try:
            fps = cap.get(cv2.CAP_PROP_FPS) or self.sample_fps
            index = round(start_s * fps)
            if index:
                cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            next_t = first = index / fps
            began = time.monotonic()
            while not stop.is_set():
                ok, frame = cap.read()
                if not ok:
                    return
                t = index / fps
                index += 1
                if t + 1e-6 >= next_t:  # keep one frame per sampling period
                    next_t += 1.0 / self.sample_fps
                    if self.pace > 0:
                        ahead = (t - first) / self.pace - (time.monotonic() - began)
                        if ahead > 0:
                            (self.sleep or stop.wait)(ahead)
                    yield t, frame
        finally:
            cap.release()

    def _live(self, base: float, stop: threading.Event
              ) -> Iterator[tuple[float, Frame]]:
        failures, last, seen = 0, -1.0, None  # seen: when the last frame came
        while not stop.is_set():
            cap = self.opener(self.source)
            try:
                while cap.isOpened() and not stop.is_set():
                    ok, frame = cap.read()
                    if not ok:
                        break
                    now = self.clock()
                    if failures and seen is not None:
                        self.gap_s = now - seen
                    failures, seen = 0, now
                    t = now - base
                    if t - last >= 1.0 / self.sample_fps:
                        last = t
                        yield t, frame
            finally:
                cap.release()
            if stop.is_set():
                return
            failures += 1
            if failures > self.max_attempts:
                raise SourceLost(f"{mask_source(self.source)}: no frames after "
                                 f"{self.max_attempts} reconnect attempts")
            self.reconnects += 1
            delay = min(self.backoff_s * 2 ** (failures - 1), self.max_backoff_s)
            log.warning("%s dropped; reconnecting in %.1f s",
                        mask_source(self.source), delay)
            (self.sleep or stop.wait)(delay)


@dataclass
class PendingAlert:
    """An incident ready to be raised: RaiseVideoAlert's arguments less the
    camera id, and the evidence blobs (digest -> bytes are in the store)."""

    incident: str
    kind: str
    zone: str
    confidence_permille: int
    observed_at: str
    evidence_sm3: str
    blobs: list[str]


@dataclass
class Checkpoint:
    """What a restarted worker needs: the stream position, the time origin of
    incident keys, the open incidents and the alerts not yet acknowledged."""

    base: float
    t: float = 0.0
    open: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    raised: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path, base: float) -> Checkpoint:
        if not path.exists():
            return cls(base)
        return cls(**json.loads(path.read_text("utf-8")))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), sort_keys=True), "utf-8")
        os.replace(tmp, path)  # atomic: never half a checkpoint


@dataclass
class WatchConfig:
    camera_id: str
    source: str
    zones: Sequence[Zone]
    perspective: Perspective
    checkpoint: Path
    evidence: Path
    sample_fps: float = 10.0
    pace: float = 0.0
    queue_size: int = 32
    warmup_s: float = 5.0  # re-read before the checkpoint: background models
    clip_s: float = 3.0
    # a live source that drops is reopened after backoff_s, doubling up to
    # max_backoff_s; the watch fails after reconnect_attempts failures in a row
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    reconnect_attempts: int = 8
    # A YOLOv8-layout ONNX model and its class names (one per line) replace the
    # classical detector of each kind in ``model_kinds`` (default: every kind
    # whose classes the model knows, workers.video.onnx.CLASSES).
    model: Path | None = None
    names: Path | None = None
    model_kinds: tuple[Kind, ...] | None = None
    # how crowds are counted (without a model for crowds): "foreground"
    # density or the "hog" people detector, for every zone or by zone name
    # ("*": the others), e.g. {"plaza": "hog", "*": "foreground"}
    crowd_estimator: str | Mapping[str, str] = "foreground"

    def analysed_zones(self) -> list[Zone]:
        """The zones with their crowd estimators; a zone name the camera has
        not is a ValueError."""
        chosen = (dict(self.crowd_estimator)
                  if isinstance(self.crowd_estimator, Mapping)
                  else {"*": self.crowd_estimator})
        names = {z.name for z in self.zones}
        if unknown := sorted(set(chosen) - names - {"*"}):
            raise ValueError(f"crowd estimator for zone {', '.join(unknown)}: "
                             f"the camera's zones are {', '.join(sorted(names))}")
        default = chosen.get("*", "foreground")
        return [replace(z, crowd_estimator=chosen.get(z.name, default))
                for z in self.zones]

    def detectors(self) -> dict[Kind, Detector]:
        """The model-backed detectors by kind ({} without a model)."""
        if self.model is None:
            return {}
        if self.names is None:
            raise ValueError("a model needs its class names file (names)")
        names = load_names(self.names)
        kinds = self.model_kinds or tuple(
            k for k in KINDS if set(CLASSES[k]) & set(names))
        if not kinds:
            raise ValueError(f"{self.names}: none of the classes "
                             f"{sorted(c for cs in CLASSES.values() for c in cs)}")
        model = YoloV8(self.model, names)
        return {k: OnnxZoneDetector(k, model, self.zones) for k in kinds}


class CameraWatch:
    """One camera's watch loop (see module doc). ``run`` blocks; the other
    methods may be called from other threads (the Ray actor's)."""

    def __init__(self, config: WatchConfig, source: FrameSource | None = None,
                 now: Callable[[], float] = time.time) -> None:
        self.config = config
        self.source = source or FrameSource(
            config.source, config.sample_fps, backoff_s=config.backoff_s,
            max_backoff_s=config.max_backoff_s,
            max_attempts=config.reconnect_attempts, pace=config.pace)
        self.store = EvidenceStore(config.evidence)
        self.cp = Checkpoint.load(config.checkpoint, now())
        self.analyzer = Analyzer(config.analysed_zones(), config.sample_fps,
                                 config.perspective, config.detectors())
        self.analyzer.debounce.restore(
            [Incident(**inc) for inc in self.cp.open], self.cp.t)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._clip: deque[Frame] = deque(maxlen=max(int(config.clip_s
                                                         * config.sample_fps), 1))
        self.stats: dict[str, float] = {"frames": 0, "t": self.cp.t, "dropped": 0,
                                        "queue": 0, "fps": 0.0, "frame_at": 0.0,
                                        "alerts": len(self.cp.raised),
                                        "resumed_at": self.cp.t}
        self.done = False
        # the stream time of the last frame analysed: a live stream's outage
        # (even across a restart of the worker) is skipped by the debounce
        self._prev_t: float | None = self.cp.t if self.source.live else None

    # -- the loop
    def run(self) -> dict[str, float]:
        frames: queue.Queue[tuple[float, Frame] | None] = queue.Queue(
            self.config.queue_size)
        start = max(0.0, self.cp.t - self.config.warmup_s)
        reader = threading.Thread(target=self._read, args=(frames, start),
                                  daemon=True)
        error: list[BaseException] = []
        self._error = error
        reader.start()
        began, count = time.monotonic(), 0
        while True:
            item = frames.get()
            if item is None:
                break
            t, frame = item
            self._analyse(t, frame)
            count += 1
            # when the frame was captured: a live one by the stream's clock, a
            # file's as it is analysed (so the driver's lag is its staleness)
            frame_at = self.cp.base + t if self.source.live else time.time()
            with self._lock:
                self.stats.update(frames=self.stats["frames"] + 1, t=t,
                                  queue=frames.qsize(), frame_at=frame_at,
                                  fps=count / max(time.monotonic() - began, 1e-6))
        reader.join()
        with self._lock:
            self.cp.open = [asdict(i) for i in self.analyzer.debounce.open_incidents()]
            self.cp.save(self.config.checkpoint)
            self.done = True
        if error:
            raise error[0]
        return self.progress()

    def _read(self, frames: queue.Queue[tuple[float, Frame] | None],
              start: float) -> None:
        try:
            for t, frame in self.source.frames(start, self.cp.base, self._stop):
                if self.source.live and frames.full():
                    # a live camera does not wait: drop the oldest frame
                    try:
                        frames.get_nowait()
                        with self._lock:
                            self.stats["dropped"] += 1
                    except queue.Empty:
                        pass
                frames.put((t, frame))  # a file waits: backpressure
        except BaseException as e:  # handed to run()
            self._error.append(e)
        finally:
            frames.put(None)

    def _analyse(self, t: float, frame: Frame) -> None:
        debounce = self.analyzer.debounce
        if self._prev_t is not None and t - self._prev_t > debounce.gap_s:
            debounce.skip(t - self._prev_t - 1.0 / self.config.sample_fps)
        self._prev_t = t if self.source.live else None
        self._clip.append(frame)
        # Frames re-read before the checkpoint (warm-up) may open incidents too:
        # those restored from the checkpoint stay open and are not reopened,
        # so anything opening here is new (or pending: the key says so).
        for inc in self.analyzer.process(frame, t):
            self._pending(inc, t, frame)
        if int(t) > int(self.cp.t):
            with self._lock:
                self.cp.t = t
                self.cp.open = [asdict(i) for i in
                                self.analyzer.debounce.open_incidents()]
                self.cp.save(self.config.checkpoint)

    def _pending(self, inc: Incident, t: float, frame: Frame) -> None:
        key = inc.key(self.cp.base)
        if key in self.cp.raised or any(p["incident"] == key for p in self.cp.pending):
            return
        observed = datetime.fromtimestamp(self.cp.base + inc.confirmed, UTC)
        meta = {"camera_id": self.config.camera_id, "incident": key,
                "kind": inc.kind, "zone": inc.zone, "t": round(t, 3)}
        ev = save_evidence(self.store, frame, inc.boxes,
                           f"{inc.kind} {inc.confidence:.2f}", list(self._clip),
                           self.config.sample_fps, meta)
        alert = PendingAlert(key, inc.kind, inc.zone,
                             round(inc.confidence * 1000),
                             observed.strftime("%Y-%m-%dT%H:%M:%SZ"), ev.digest,
                             [ev.digest, ev.frame, ev.clip])
        with self._lock:
            self.cp.pending.append(asdict(alert))
            self.cp.t = max(self.cp.t, t)
            self.cp.open = [asdict(i) for i in self.analyzer.debounce.open_incidents()]
            self.cp.save(self.config.checkpoint)  # before anyone submits it

    # -- for the driver
    def stop(self) -> None:
        self._stop.set()

    def progress(self) -> dict[str, float]:
        with self._lock:
            return {**self.stats, "reconnects": self.source.reconnects,
                    "gap_s": self.source.gap_s,
                    "pending": len(self.cp.pending), "raised": len(self.cp.raised),
                    "done": float(self.done)}

    def take_alerts(self) -> list[dict[str, Any]]:
        """Pending alerts with their evidence blobs (``{digest: bytes}``)."""
        with self._lock:
            pending = list(self.cp.pending)
        return [{**p, "blobs": {d: self.store.get(d) for d in p["blobs"]}}
                for p in pending]

    def ack(self, keys: Sequence[str]) -> None:
        """The driver has raised these (or the ledger already had them)."""
        with self._lock:
            done = set(keys)
            self.cp.pending = [p for p in self.cp.pending if p["incident"] not in done]
            self.cp.raised = sorted(set(self.cp.raised) | done)
            self.stats["alerts"] = len(self.cp.raised)
            self.cp.save(self.config.checkpoint)


def default_perspective(height: int) -> Perspective:
    """A street camera's guess until it is calibrated: people a tenth of the
    frame tall near the horizon, a third at the bottom."""
    return Perspective(far_y=0.3 * height, far_h=0.13 * height,
                       near_y=0.95 * height, near_h=0.3 * height)


def frame_size(source: str, opener: Callable[[str], Capture] = open_capture
               ) -> tuple[int, int]:
    """(width, height) of the source's frames."""
    cap = opener(source)
    try:
        ok, frame = cap.read()
        if not ok:
            raise FileNotFoundError(f"no frame from {mask_source(source)}")
        arr = np.asarray(frame)
        return int(arr.shape[1]), int(arr.shape[0])
    finally:
        cap.release()
