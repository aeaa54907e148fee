"""Classical detectors (no model weights): what runs when no ONNX model is
configured. All three share one background model per camera.

- crowd: a perspective-weighted foreground density. Each foreground pixel in
  a zone counts ``1 / A(y)``, where ``A(y)`` is the expected pixel area of one
  person standing at row ``y`` (from the camera's ``Perspective``), so the sum
  estimates the number of people present. It counts anyone in the zone; the
  debounce makes it a gathering (``min_people`` for ``hold_s``). Or, per zone
  (``Zone.crowd_estimator = "hog"``), people counted by OpenCV's HOG people
  detector (``HogCrowdDetector``).
- fire: fire-coloured pixels (hue red to yellow, saturated, bright) whose shape
  keeps changing (median overlap change between frames: flames flicker, a
  sign does not, a blinking lamp is mostly unchanged between blinks) while the
  region stays in place (a car of the same colour moves); or smoke: light,
  unsaturated new foreground whose optical flow rises (a grey van moves
  sideways). Both report kind ``fire``.
- garbage: a new object that stays: foreground of the long-term background
  model that the short-term model has already absorbed. A bag put down and
  picked up before the zone's ``garbage_s`` raises nothing.

These estimate; they do not recognise. Real cameras need calibration (the
perspective, the thresholds) or a trained model (``workers.video.onnx``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from workers.video.model import Detection, Detector, Frame, Kind, Zone

Mask = npt.NDArray[np.bool_]
CROWD_ESTIMATORS = ("foreground", "hog")


@dataclass(frozen=True)
class Perspective:
    """Expected standing-person height in pixels, linear in the image row:
    ``far_h`` at row ``far_y``, ``near_h`` at row ``near_y`` (calibrated per
    camera by marking two people)."""

    far_y: float
    far_h: float
    near_y: float
    near_h: float
    fill: float = 0.3  # person pixel area / height^2 (a silhouette, not a box)

    def person_area(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        slope = (self.near_h - self.far_h) / (self.near_y - self.far_y)
        h = np.maximum(self.far_h + slope * (rows - self.far_y), 2.0)
        return self.fill * h * h


class Background:
    """Short- and long-term MOG2 background models of one camera, updated once
    per frame and shared by its detectors. Brightness is normalised first, so
    a slow change of light is not foreground.

    The learning rates are set from how long a still object takes to become
    background: with MOG2's background ratio ``b``, a new colour wins after
    ``-ln(b) / rate`` frames. (MOG2's own rate, ``1 / min(2 * frames,
    history)``, learns fast while the model is young: a person standing still
    would vanish from the long-term model within a second.)"""

    RATIO = 0.9

    def __init__(self, fps: float, short_s: float = 1.0, long_s: float = 40.0
                 ) -> None:
        self.short = cv2.createBackgroundSubtractorMOG2(
            history=500, varThreshold=20, detectShadows=False)
        self.long = cv2.createBackgroundSubtractorMOG2(
            history=500, varThreshold=20, detectShadows=False)
        for model in (self.short, self.long):
            model.setBackgroundRatio(self.RATIO)
        k = -math.log(self.RATIO)
        self.short_rate = min(1.0, k / (short_s * fps))
        self.long_rate = min(1.0, k / (long_s * fps))
        self._t: float | None = None
        self._ref: float | None = None
        self.fg_short: Mask = np.zeros((0, 0), bool)
        self.fg_long: Mask = np.zeros((0, 0), bool)
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))

    def update(self, frame: Frame, t: float) -> None:
        if self._t == t:
            return
        self._t = t
        # colour, not grey: litter is often as bright as the pavement it lies on
        mean = float(frame.mean()) or 1.0
        # the reference follows the light as slowly as the long-term model learns,
        # so global drift is divided out before either model sees it
        self._ref = (mean if self._ref is None
                     else (1 - self.long_rate) * self._ref + self.long_rate * mean)
        norm = cv2.convertScaleAbs(frame, alpha=self._ref / mean)
        norm = cv2.GaussianBlur(norm, (3, 3), 0)
        self.fg_short = self._clean(self.short.apply(norm,
                                                     learningRate=self.short_rate))
        self.fg_long = self._clean(self.long.apply(norm, learningRate=self.long_rate))

    def _clean(self, fg: npt.NDArray[Any]) -> Mask:
        opened = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self._kernel)
        return np.asarray(opened > 0)


def _zones_for(zones: Sequence[Zone], kind: Kind, shape: tuple[int, int]
               ) -> list[tuple[Zone, Mask]]:
    return [(z, z.mask(*shape)) for z in zones if kind in z.detectors]


def _box(mask: Mask) -> tuple[int, int, int, int]:
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    return int(x), int(y), int(w), int(h)


class CrowdDetector:
    """People in a zone, estimated from foreground density (see module doc)."""

    kind: Kind = "crowd"

    def __init__(self, zones: Sequence[Zone], background: Background,
                 perspective: Perspective) -> None:
        self.zones, self.bg, self.perspective = zones, background, perspective
        self._cache: tuple[tuple[int, int], list[tuple[Zone, Mask,
                                                       npt.NDArray[np.float64]]]]
        self._cache = ((0, 0), [])

    def _prepared(self, shape: tuple[int, int]
                  ) -> list[tuple[Zone, Mask, npt.NDArray[np.float64]]]:
        if self._cache[0] != shape:
            rows = np.arange(shape[0], dtype=np.float64)
            weight = (1.0 / self.perspective.person_area(rows))[:, None]
            self._cache = (shape, [(z, m, np.where(m, weight, 0.0))
                                   for z, m in _zones_for(self.zones, "crowd", shape)])
        return self._cache[1]

    def count(self, frame: Frame, t: float) -> dict[str, float]:
        """The estimated number of people in each crowd zone."""
        self.bg.update(frame, t)
        fg = self.bg.fg_long
        return {z.name: float((w * fg).sum())
                for z, _, w in self._prepared(fg.shape[:2])}

    def process(self, frame: Frame, t: float) -> list[Detection]:
        out = []
        counts = self.count(frame, t)
        for z, m, _ in self._prepared(frame.shape[:2]):
            n = counts[z.name]
            if n >= z.min_people:
                out.append(Detection("crowd", z.name, _crowd_confidence(n, z),
                                     (_box(self.bg.fg_long & m),), n))
        return out


def _crowd_confidence(people: float, zone: Zone) -> float:
    return min(1.0, 0.5 + 0.5 * (people - zone.min_people) / zone.min_people)


class HogCrowdDetector:
    """People in a zone counted by OpenCV's HOG people detector (Dalal and
    Triggs' linear SVM over histograms of oriented gradients, trained on
    upright pedestrians): the boxes whose feet stand in the zone.

    What it is: a detector of whole, upright people at least about 100 pixels
    tall (its window is 64x128); ``upscale`` enlarges the image for smaller
    ones, at the square of the cost. People hiding one another in a group are
    missed, so it undercounts dense crowds; it needs no background model, so
    it counts people standing still from the first frame. It searches only
    the rows and columns around its zones."""

    kind: Kind = "crowd"

    def __init__(self, zones: Sequence[Zone], upscale: float = 1.0,
                 win_stride: int = 8, scale: float = 1.05) -> None:
        self.zones = [z for z in zones if "crowd" in z.detectors]
        self.upscale, self.win_stride, self.scale = upscale, win_stride, scale
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(np.asarray(
            cv2.HOGDescriptor.getDefaultPeopleDetector(), np.float32))

    def people(self, frame: Frame) -> list[tuple[int, int, int, int]]:
        """Boxes of the people found near the zones, in frame pixels."""
        h, w = frame.shape[:2]
        pts = np.array([p for z in self.zones for p in z.polygon], np.int32)
        x, y, bw, bh = cv2.boundingRect(pts)
        # a person whose feet are in a zone stands up to a third of the frame
        # above it; and the detector's window needs a margin around the body
        x0, x1 = max(x - 32, 0), min(x + bw + 32, w)
        y0, y1 = max(y - h // 3, 0), min(y + bh + 16, h)
        region: npt.NDArray[Any] = frame[y0:y1, x0:x1]
        if self.upscale != 1.0:
            region = cv2.resize(region, None, fx=self.upscale, fy=self.upscale)
        rects, _ = self.hog.detectMultiScale(
            region, winStride=(self.win_stride, self.win_stride), padding=(8, 8),
            scale=self.scale)
        k = 1.0 / self.upscale
        return [(int(x0 + rx * k), int(y0 + ry * k), int(rw * k), int(rh * k))
                for rx, ry, rw, rh in rects]

    def count(self, frame: Frame, t: float) -> dict[str, float]:
        """The number of people whose feet stand in each zone."""
        if not self.zones:
            return {}
        people = self.people(frame)
        return {z.name: float(sum(z.contains(x + w / 2, y + h)
                                  for x, y, w, h in people)) for z in self.zones}

    def process(self, frame: Frame, t: float) -> list[Detection]:
        if not self.zones:
            return []
        people = self.people(frame)
        out = []
        for z in self.zones:
            boxes = tuple(b for b in people if z.contains(b[0] + b[2] / 2,
                                                          b[1] + b[3]))
            if len(boxes) >= z.min_people:
                out.append(Detection("crowd", z.name,
                                     _crowd_confidence(len(boxes), z), boxes,
                                     float(len(boxes))))
        return out


def fire_mask(frame: Frame) -> Mask:
    """Fire-coloured pixels: hue red to yellow, saturated, bright, R > G > B."""
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    b, g, r = (frame[..., i].astype(np.int16) for i in range(3))
    return np.asarray((h <= 35) & (s >= 110) & (v >= 170) & (r > g) & (g > b))


class FireDetector:
    """Flickering fire-coloured regions that stay in place (see module doc)."""

    kind: Kind = "fire"

    def __init__(self, zones: Sequence[Zone], fps: float, window_s: float = 1.5,
                 min_area: float = 0.0005, min_flicker: float = 0.12,
                 max_drift: float = 0.03) -> None:
        # areas and drift as fractions of the frame, so any resolution works
        self.zones, self.min_area = zones, min_area
        self.min_flicker, self.max_drift = min_flicker, max_drift
        self.n = max(int(window_s * fps), 3)
        self._prev: dict[str, Mask] = {}
        self._flicker: dict[str, deque[float]] = {}
        self._centres: dict[str, deque[tuple[float, float]]] = {}
        self._masks: list[tuple[Zone, Mask]] = []

    def process(self, frame: Frame, t: float) -> list[Detection]:
        shape = frame.shape[:2]
        if not self._masks or self._masks[0][1].shape != shape:
            self._masks = _zones_for(self.zones, "fire", shape)
        fire = fire_mask(frame)
        out = []
        size = float(shape[0] * shape[1])
        for z, zm in self._masks:
            m = fire & zm
            area = int(m.sum())
            prev = self._prev.get(z.name)
            self._prev[z.name] = m
            flick = self._flicker.setdefault(z.name, deque(maxlen=self.n))
            centres = self._centres.setdefault(z.name, deque(maxlen=self.n))
            if area < self.min_area * size:
                flick.clear()
                centres.clear()
                continue
            if prev is None:
                prev = np.zeros_like(m)
            union = int((m | prev).sum())
            flick.append(int((m ^ prev).sum()) / union if union else 0.0)
            ys, xs = np.nonzero(m)
            centres.append((float(xs.mean()), float(ys.mean())))
            if len(flick) < self.n:
                continue
            drift = float(np.hypot(centres[-1][0] - centres[0][0],
                                   centres[-1][1] - centres[0][1]))
            median = float(np.median(flick))
            if median >= self.min_flicker and drift <= self.max_drift * shape[1]:
                conf = min(1.0, 0.5 + median)
                out.append(Detection("fire", z.name, conf, (_box(m),), median))
        return out


class GarbageDetector:
    """New objects that stay: long-term but not short-term foreground."""

    kind: Kind = "garbage"

    def __init__(self, zones: Sequence[Zone], background: Background,
                 min_area: float = 0.0015) -> None:
        self.zones, self.bg, self.min_area = zones, background, min_area
        self._masks: list[tuple[Zone, Mask]] = []

    def process(self, frame: Frame, t: float) -> list[Detection]:
        self.bg.update(frame, t)
        shape = frame.shape[:2]
        if not self._masks or self._masks[0][1].shape != shape:
            self._masks = _zones_for(self.zones, "garbage", shape)
        static = self.bg.fg_long & ~self.bg.fg_short
        out = []
        for z, zm in self._masks:
            m = (static & zm).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
            if n <= 1:
                continue
            i = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            area = int(stats[i, cv2.CC_STAT_AREA])
            if area >= self.min_area * shape[0] * shape[1]:
                x, y, w, h = (int(v) for v in stats[i, :4])
                out.append(Detection("garbage", z.name, 0.8, ((x, y, w, h),),
                                     float(area)))
        return out


class SmokeDetector:
    """Smoke without a visible flame: light, unsaturated new foreground (the
    long-term model's) whose dense optical flow points up, not sideways (a grey
    van moves sideways; a person in grey stands or walks), in most frames of a
    window. A fire all the same: it reports kind ``fire``."""

    kind: Kind = "fire"

    def __init__(self, zones: Sequence[Zone], background: Background, fps: float,
                 window_s: float = 2.0, min_area: float = 0.002,
                 min_rise: float = 0.02, share: float = 0.6) -> None:
        # area: fraction of the frame; rise: frame heights per second
        self.zones, self.bg, self.fps = zones, background, fps
        self.min_area, self.min_rise, self.share = min_area, min_rise, share
        self.n = max(int(window_s * fps), 3)
        self._prev: npt.NDArray[np.uint8] | None = None
        self._votes: dict[str, deque[bool]] = {}
        self._masks: list[tuple[Zone, Mask]] = []

    def process(self, frame: Frame, t: float) -> list[Detection]:
        self.bg.update(frame, t)
        h, w = frame.shape[:2]
        # half size: smoke is large and soft, and the flow costs by the pixel
        small = cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        gray = np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), np.uint8)
        prev, self._prev = self._prev, gray
        if not self._masks or self._masks[0][1].shape != gray.shape:
            # zones are in frame pixels: draw them there, then halve
            self._masks = [(z, cv2.resize(m.astype(np.uint8), gray.shape[::-1],
                                          interpolation=cv2.INTER_NEAREST) > 0)
                           for z, m in _zones_for(self.zones, "fire", (h, w))]
        if prev is None or prev.shape != gray.shape:
            return []
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        light = (hsv[..., 1] < 45) & (hsv[..., 2] > 120)
        fg = cv2.resize(self.bg.fg_long.astype(np.uint8), (gray.shape[1],
                        gray.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        flow: npt.NDArray[np.float32] | None = None
        out = []
        for z, zm in self._masks:
            votes = self._votes.setdefault(z.name, deque(maxlen=self.n))
            m = light & fg & zm
            if m.sum() < self.min_area * m.size:
                votes.append(False)
                continue
            if flow is None:  # once per frame, when some zone needs it
                flow = np.asarray(cv2.calcOpticalFlowFarneback(
                    prev, gray, np.zeros((*gray.shape, 2), np.float32),
                    0.5, 2, 9, 2, 5, 1.1, 0), np.float32)
            vx = float(np.median(flow[..., 0][m])) * self.fps / gray.shape[0]
            vy = float(np.median(flow[..., 1][m])) * self.fps / gray.shape[0]
            votes.append(vy < -self.min_rise and abs(vx) < abs(vy))
            share = sum(votes) / self.n
            if len(votes) == self.n and share >= self.share:
                x, y, bw, bh = _box(m)
                out.append(Detection("fire", z.name, 0.5 + 0.3 * share,
                                     ((2 * x, 2 * y, 2 * bw, 2 * bh),), -vy))
        return out


class Joined:
    """One kind's findings from several detectors: fire by flames or by
    smoke; crowds by each zone's estimator."""

    def __init__(self, kind: Kind, *detectors: Detector) -> None:
        self.kind: Kind = kind
        self.detectors = detectors

    def process(self, frame: Frame, t: float) -> list[Detection]:
        return [d for det in self.detectors for d in det.process(frame, t)]
