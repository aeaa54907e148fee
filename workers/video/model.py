"""What the detectors share: zones, per-frame detections and incidents."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import cv2
import numpy as np
import numpy.typing as npt

Kind = Literal["crowd", "fire", "garbage"]
KINDS: tuple[Kind, ...] = ("crowd", "fire", "garbage")
Frame = npt.NDArray[np.uint8]  # BGR, H x W x 3
Box = tuple[int, int, int, int]  # x, y, w, h in frame pixels


@dataclass(frozen=True)
class Zone:
    """A polygon of the image where some detectors watch, with their thresholds.

    ``polygon`` is in pixels of the analysed frame. ``hold_s``: how long a
    condition must hold before it is an incident (debounce); ``min_people``: the
    crowd size that is a gathering; ``garbage_s``: how long a new object must
    stay to be litter. ``crowd_estimator`` (off chain, the watch's choice):
    ``foreground`` density or the ``hog`` people detector
    (``workers.video.classical``)."""

    name: str
    polygon: tuple[tuple[int, int], ...]
    detectors: tuple[Kind, ...] = KINDS
    min_people: int = 8
    hold_s: float = 3.0
    garbage_s: float = 5.0
    crowd_estimator: str = "foreground"

    def mask(self, height: int, width: int) -> npt.NDArray[np.bool_]:
        m = np.zeros((height, width), np.uint8)
        cv2.fillPoly(m, [np.array(self.polygon, np.int32)], 1)
        return m.astype(bool)

    def contains(self, x: float, y: float) -> bool:
        pts = np.array(self.polygon, np.float32)
        return cv2.pointPolygonTest(pts, (float(x), float(y)), False) >= 0


@dataclass(frozen=True)
class Detection:
    """One frame's finding in a zone: the condition of ``kind`` holds there now
    (the debounce decides whether it has held long enough)."""

    kind: Kind
    zone: str
    confidence: float
    boxes: tuple[Box, ...] = ()
    value: float = 0.0  # e.g. the estimated number of people


@dataclass
class Incident:
    """A debounced detection: one incident is one alert."""

    kind: Kind
    zone: str
    started: float  # seconds into the stream when the condition began
    confirmed: float  # when it had held for the zone's hold time
    confidence: float
    boxes: tuple[Box, ...] = ()
    ended: float | None = None

    def key(self, base: float = 0.0) -> str:
        """The incident's name for the ledger: kind, zone and start in whole
        seconds from ``base`` (the stream's origin, e.g. a Unix time), so a
        replay from a checkpoint meets the same key."""
        return f"{self.kind}-{self.zone}-{int(base + self.started)}"


class Detector(Protocol):
    """Finds one kind of condition in the zones it watches."""

    kind: Kind

    def process(self, frame: Frame, t: float) -> list[Detection]: ...


@dataclass
class _Track:
    since: float
    last: float
    best: Detection
    incident: Incident | None = None


@dataclass
class Debounce:
    """Turns per-frame detections into incidents: a condition must hold for the
    zone's ``hold_s`` (gaps up to ``gap_s`` tolerated, since a detector misses a
    frame now and then) to open an incident, and the incident closes after
    ``clear_s`` without the condition. One incident, one alert. A time the
    stream showed nothing (``skip``: a live source that dropped) is neither
    presence nor absence, up to ``blind_s``; after a longer outage what is
    seen is a new incident."""

    zones: Sequence[Zone]
    gap_s: float = 1.0
    clear_s: float = 5.0
    blind_s: float = 300.0
    _tracks: dict[tuple[str, str], _Track] = field(default_factory=dict)

    def update(self, detections: Sequence[Detection], t: float) -> list[Incident]:
        # garbage must stay ``garbage_s``; the other kinds hold ``hold_s``
        hold: dict[tuple[str, str], float] = {
            (k, z.name): z.garbage_s if k == "garbage" else z.hold_s
            for z in self.zones for k in z.detectors}
        opened: list[Incident] = []
        seen: set[tuple[str, str]] = set()
        for d in detections:
            key: tuple[str, str] = (d.kind, d.zone)
            seen.add(key)
            tr = self._tracks.get(key)
            if tr is None or (tr.incident is None and t - tr.last > self.gap_s):
                tr = self._tracks[key] = _Track(t, t, d)
            tr.last = t
            if d.confidence >= tr.best.confidence:
                tr.best = d
            if tr.incident is None and t - tr.since >= hold.get(key, 0.0):
                tr.incident = Incident(d.kind, d.zone, tr.since, t,
                                       tr.best.confidence, tr.best.boxes)
                opened.append(tr.incident)
        for key, tr in list(self._tracks.items()):
            if key in seen:
                continue
            limit = self.clear_s if tr.incident else self.gap_s
            if t - tr.last > limit:
                if tr.incident is not None:
                    tr.incident.ended = tr.last
                del self._tracks[key]
        return opened

    def skip(self, seconds: float) -> None:
        """The stream showed nothing for ``seconds``: every track's clocks move
        on by that much, so a condition seen before and after the outage is
        one incident (and a hold time counts only time observed)."""
        if seconds > self.blind_s:
            return
        for tr in self._tracks.values():
            tr.last += seconds
            if tr.incident is None:
                tr.since += seconds

    def open_incidents(self) -> list[Incident]:
        return [tr.incident for tr in self._tracks.values() if tr.incident]

    def restore(self, incidents: Sequence[Incident], t: float) -> None:
        """Resume with ``incidents`` open (from a checkpoint), so that the
        condition still holding after a restart raises nothing new."""
        for inc in incidents:
            self._tracks[(inc.kind, inc.zone)] = _Track(
                inc.started, t, Detection(inc.kind, inc.zone, inc.confidence,
                                          inc.boxes), inc)
