"""Seeded synthetic street scenes with ground truth, for tests and the bench.

One scenario per video, on a textured street with lighting drift, sensor noise,
JPEG artefacts and a few people passing by. Positives: ``gathering`` (people
gather in the plaza, stand, disperse), ``fire`` (flickering flames with smoke
at the stall), ``smoke`` (a rising plume, no flame: a fire all the same),
``litter`` (someone leaves a bag in the corner). Hard negatives:
``orange_car`` (passes the stall), ``grey_van`` (smoke-coloured, passes the
stall), ``orange_sign`` (static at the stall),
``amber_light`` (blinks at the stall), ``moving_crowd`` (a busy stream through
the plaza), ``bag_pickup`` (a bag put down and picked up again).

This checks the detectors' logic on honest, varied input, not their accuracy
on real cameras.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from workers.video.classical import Perspective
from workers.video.model import Frame, Kind, Zone

POSITIVES = ("gathering", "fire", "smoke", "litter")
NEGATIVES = ("orange_car", "grey_van", "orange_sign", "amber_light",
             "moving_crowd", "bag_pickup")
SCENARIOS = POSITIVES + NEGATIVES
MIN_PEOPLE = 8
HOLD_S = 3.0
GARBAGE_S = 5.0


@dataclass(frozen=True)
class Truth:
    """A ground-truth incident: ``kind`` holds in ``zone`` from ``start`` to
    ``end`` (seconds); an alert in that span (plus a little slack) finds it."""

    kind: Kind
    zone: str
    start: float
    end: float


@dataclass
class Video:
    """A rendered clip's parameters and ground truth (frames come from
    ``frames()``, rendered on demand)."""

    scenario: str
    seed: int
    width: int
    height: int
    fps: float
    seconds: float
    truth: list[Truth] = field(default_factory=list)

    def zones(self) -> list[Zone]:
        return scene_zones(self.width, self.height)

    def perspective(self) -> Perspective:
        return scene_perspective(self.height)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def frames(self) -> Iterator[tuple[float, Frame]]:
        yield from _Renderer(self).frames()


def write_video(video: Video, path: Path) -> Path:
    """Render ``video`` to a Motion-JPEG AVI file (what a camera recorded)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), video.fps,
                             (video.width, video.height))
    try:
        for _, frame in video.frames():
            writer.write(frame)
    finally:
        writer.release()
    return path


def people_in(video: Video, zone: str, times: Sequence[float]) -> list[int]:
    """Ground truth for counting: the people whose feet stand in ``zone`` at
    each of ``times`` (passers-by included)."""
    r = _Renderer(video)
    z = r.zones[zone]
    return [sum(1 for person in r.people
                if (feet := person.at(t)) is not None and z.contains(*feet))
            for t in times]


def scene_zones(width: int, height: int) -> list[Zone]:
    """The camera's zones: plaza (crowd), stall (fire), corner (garbage)."""
    def poly(x0: float, y0: float, x1: float, y1: float
             ) -> tuple[tuple[int, int], ...]:
        return ((int(x0 * width), int(y0 * height)), (int(x1 * width),
                int(y0 * height)), (int(x1 * width), int(y1 * height)),
                (int(x0 * width), int(y1 * height)))
    return [
        Zone("plaza", poly(0.03, 0.42, 0.52, 0.98), ("crowd",),
             min_people=MIN_PEOPLE, hold_s=HOLD_S),
        Zone("stall", poly(0.58, 0.08, 0.97, 0.55), ("fire",), hold_s=HOLD_S),
        Zone("corner", poly(0.6, 0.62, 0.97, 0.98), ("garbage",),
             garbage_s=GARBAGE_S),
    ]


def scene_perspective(height: int) -> Perspective:
    return Perspective(far_y=0.3 * height, far_h=0.13 * height,
                       near_y=0.95 * height, near_h=0.3 * height)


def make_video(scenario: str, seed: int, width: int = 640, height: int = 360,
               fps: float = 10.0, seconds: float = 15.0) -> Video:
    """The clip of ``scenario`` for ``seed``, with its ground truth."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario {scenario!r}: accepted {', '.join(SCENARIOS)}")
    v = Video(scenario, seed, width, height, fps, seconds)
    v.truth = _Renderer(v).truth
    return v


# --------------------------------------------------------------- rendering
@dataclass
class _Person:
    path: list[tuple[float, float, float]]  # (t, x, y) waypoints, feet position
    colour: tuple[int, int, int]
    sway: float = 1.0

    def at(self, t: float) -> tuple[float, float] | None:
        p = self.path
        if t < p[0][0] or t > p[-1][0]:
            return None
        for (t0, x0, y0), (t1, x1, y1) in itertools.pairwise(p):
            if t0 <= t <= t1:
                a = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
                return x0 + a * (x1 - x0), y0 + a * (y1 - y0)
        return p[-1][1], p[-1][2]


class _Renderer:
    def __init__(self, v: Video) -> None:
        self.v = v
        self.rng = np.random.default_rng(v.seed)
        self.w, self.h = v.width, v.height
        self.persp = scene_perspective(v.height)
        self.zones = {z.name: z for z in scene_zones(v.width, v.height)}
        self.people: list[_Person] = []
        self.objects: list[dict[str, Any]] = []
        self.truth: list[Truth] = []
        self.background = self._background()
        self._passers()
        getattr(self, "_" + v.scenario)()

    # -- scene
    def _background(self) -> Frame:
        r = self.rng
        small = r.normal(0, 1, (self.h // 16 + 1, self.w // 16 + 1))
        tex = cv2.resize(small, (self.w, self.h), interpolation=cv2.INTER_CUBIC)
        fine = r.normal(0, 6, (self.h, self.w))
        base = np.empty((self.h, self.w, 3), np.float32)
        rows = np.linspace(0, 1, self.h)[:, None]
        for c, (top, bottom) in enumerate(((150, 105), (145, 110), (140, 112))):
            base[..., c] = top + (bottom - top) * rows + 12 * tex + fine
        # buildings along the top and a kerb
        for _ in range(6):
            x = int(r.uniform(0, self.w))
            bw, bh = int(r.uniform(0.08, 0.2) * self.w), int(r.uniform(0.1, 0.28)
                                                             * self.h)
            colour = [float(v) for v in r.uniform(60, 140, 3)]
            cv2.rectangle(base, (x, 0), (x + bw, bh), colour, -1)
        cv2.line(base, (0, int(0.4 * self.h)), (self.w, int(0.4 * self.h)),
                 (90, 90, 90), max(1, self.h // 120))
        return np.clip(base, 0, 255).astype(np.uint8)

    def _height(self, y: float) -> float:
        p = self.persp
        return p.far_h + (p.near_h - p.far_h) * (y - p.far_y) / (p.near_y - p.far_y)

    def _colour(self) -> tuple[int, int, int]:
        # clothing: darkish, not fire-coloured
        c = self.rng.uniform(20, 120, 3)
        c[2] = min(c[2], c[1] + 30)
        return int(c[0]), int(c[1]), int(c[2])

    def _rand_in(self, zone: str, margin: float = 0.08) -> tuple[float, float]:
        pts = np.array(self.zones[zone].polygon, float)
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        mx, my = margin * (x1 - x0), margin * (y1 - y0)
        return (float(self.rng.uniform(x0 + mx, x1 - mx)),
                float(self.rng.uniform(y0 + my + 0.1 * (y1 - y0), y1 - my)))

    def _walker(self, t0: float, y: float, speed: float, left: bool) -> _Person:
        x0, x1 = (-0.05 * self.w, 1.05 * self.w)
        if not left:
            x0, x1 = x1, x0
        dur = abs(x1 - x0) / speed
        return _Person([(t0, x0, y), (t0 + dur, x1, y)], self._colour())

    def _passers(self) -> None:
        r = self.rng
        for _ in range(int(r.integers(1, 3))):
            y = float(r.uniform(0.45, 0.6) * self.h)  # the pavement
            start = float(r.uniform(0, max(self.v.seconds - 4, 0.5)))
            self.people.append(self._walker(start, y,
                                            float(r.uniform(0.12, 0.2) * self.w),
                                            bool(r.integers(2))))

    # -- scenarios
    def _gathering(self) -> None:
        r = self.rng
        t0 = float(r.uniform(1.5, 3.0))
        stand = float(r.uniform(7.0, 8.5))
        n = int(r.integers(MIN_PEOPLE + 3, MIN_PEOPLE + 7))
        for _ in range(n):
            x, y = self._rand_in("plaza")
            sx = float(r.choice([-0.1 * self.w, 0.6 * self.w]))
            arrive = t0 + float(r.uniform(0.5, 2.0))
            leave = t0 + 2.0 + stand + float(r.uniform(0, 0.8))
            self.people.append(_Person(
                [(t0, sx, y), (arrive, x, y), (leave, x, y),
                 (leave + 2.0, sx, y)], self._colour(), sway=1.5))
        self.truth.append(Truth("crowd", "plaza", t0 + 2.0, t0 + 2.0 + stand))

    def _moving_crowd(self) -> None:
        r = self.rng
        t = 0.0
        while t < self.v.seconds:
            _, y = self._rand_in("plaza")
            speed = float(r.uniform(0.12, 0.22) * self.w)
            self.people.append(self._walker(t, y, speed, bool(r.integers(2))))
            t += float(r.uniform(0.5, 1.1))

    def _fire(self) -> None:
        t0 = float(self.rng.uniform(1.5, 4.0))
        x, y = self._rand_in("stall", 0.25)
        self.objects.append({"type": "fire", "t0": t0, "t1": self.v.seconds + 1,
                             "x": x, "y": y, "size": float(self.rng.uniform(0.05, 0.08)
                                                          * self.h),
                             "wind": float(self.rng.uniform(-0.03, 0.03)),
                             "rise": float(self.rng.uniform(0.08, 0.14))})
        self.truth.append(Truth("fire", "stall", t0, self.v.seconds))

    def _smoke(self) -> None:
        """Smouldering: smoke and no visible flame (a bin on fire inside)."""
        t0 = float(self.rng.uniform(1.5, 4.0))
        x, y = self._rand_in("stall", 0.25)
        self.objects.append({"type": "smoke", "t0": t0, "t1": self.v.seconds + 1,
                             "x": x, "y": y,
                             "size": float(self.rng.uniform(0.04, 0.06) * self.h),
                             "wind": float(self.rng.uniform(-0.03, 0.03)),
                             "rise": float(self.rng.uniform(0.08, 0.14))})
        self.truth.append(Truth("fire", "stall", t0, self.v.seconds))

    def _grey_van(self) -> None:
        """A light grey van passes the stall (smoke-coloured, moving sideways)."""
        self._orange_car()
        self.objects[-1]["colour"] = (200, 200, 205)

    def _orange_car(self) -> None:
        r = self.rng
        y = float(r.uniform(0.3, 0.45) * self.h)
        speed = float(r.uniform(0.15, 0.3) * self.w)
        t0 = float(r.uniform(1.0, 4.0))
        left = bool(r.integers(2))
        self.objects.append({"type": "car", "t0": t0, "y": y, "speed": speed,
                             "left": left, "t1": t0 + 1.3 * self.w / speed})

    def _orange_sign(self) -> None:
        x, y = self._rand_in("stall", 0.2)
        self.objects.append({"type": "sign", "t0": -1.0, "t1": self.v.seconds + 1,
                             "x": x, "y": y})

    def _amber_light(self) -> None:
        x, y = self._rand_in("stall", 0.2)
        self.objects.append({"type": "lamp", "t0": -1.0, "t1": self.v.seconds + 1,
                             "x": x, "y": y,
                             "period": float(self.rng.uniform(0.8, 1.4))})

    def _leave_bag(self, stay: float) -> tuple[float, float]:
        r = self.rng
        x, y = self._rand_in("corner", 0.15)
        t0 = float(r.uniform(1.0, 3.0))
        drop = t0 + 1.5
        start_x = 1.05 * self.w
        pick = drop + stay
        walker = _Person([(t0, start_x, y), (drop, x + 0.03 * self.w, y),
                          (drop + 0.4, x + 0.03 * self.w, y),
                          (drop + 2.0, start_x, y)], self._colour())
        self.people.append(walker)
        self.objects.append({"type": "bag", "t0": drop, "t1": pick, "x": x, "y": y,
                             "colour": [int(c) for c in r.uniform(30, 200, 3)],
                             "size": float(r.uniform(0.05, 0.07) * self.h)})
        if stay < self.v.seconds:  # someone comes back for it
            self.people.append(_Person([(pick - 1.5, start_x, y),
                                        (pick, x + 0.03 * self.w, y),
                                        (pick + 0.4, x + 0.03 * self.w, y),
                                        (pick + 2.0, start_x, y)], self._colour()))
        return drop, pick

    def _litter(self) -> None:
        drop, _ = self._leave_bag(self.v.seconds + 10)
        self.truth.append(Truth("garbage", "corner", drop + GARBAGE_S,
                                self.v.seconds))

    def _bag_pickup(self) -> None:
        self._leave_bag(float(self.rng.uniform(2.0, 3.0)))

    # -- drawing
    def _draw_person(self, img: Frame, x: float, y: float, p: _Person) -> None:
        h = self._height(y)
        sx = x + self.rng.normal(0, p.sway)
        w = 0.36 * h
        cv2.ellipse(img, (int(sx), int(y - 0.5 * h)), (int(w / 2), int(0.32 * h)),
                    0, 0, 360, p.colour, -1)
        cv2.rectangle(img, (int(sx - w / 3), int(y - 0.25 * h)),
                      (int(sx + w / 3), int(y)), (40, 40, 50), -1)
        cv2.circle(img, (int(sx), int(y - 0.88 * h)), max(int(0.11 * h), 1),
                   (120, 150, 190), -1)

    def _draw_plume(self, img: Frame, o: dict[str, Any], x0: float, y0: float,
                    t: float) -> None:
        """Smoke: light grey puffs born at (x0, y0) every 0.25 s that rise,
        spread, drift with the wind and fade over three seconds."""
        life, every = 3.0, 0.25
        first = max(0, int((t - o["t0"] - life) / every))
        last = int((t - o["t0"]) / every)
        for i in range(first, last + 1):
            age = t - (o["t0"] + i * every)
            if not 0 <= age < life:
                continue
            puff = np.random.default_rng([self.v.seed, i])  # its own path
            drift = float(puff.normal(0.0, 0.02)) * self.h + o["wind"] * self.h
            x = x0 + drift * age + float(puff.normal(0, 0.01 * self.h))
            y = y0 - o["rise"] * self.h * age
            radius = max(int(o["size"] * (0.5 + 0.6 * age)), 1)
            overlay = img.copy()
            cv2.circle(overlay, (int(x), int(y)), radius, (200, 200, 205), -1)
            cv2.addWeighted(overlay, 0.5 * (1 - age / life), img,
                            1 - 0.5 * (1 - age / life), 0, img)

    def _draw_object(self, img: Frame, o: dict[str, Any], t: float) -> None:
        r = self.rng
        if o["type"] == "fire":
            base_x, base_y, s = o["x"], o["y"], o["size"]
            grow = min(1.0, 0.4 + (t - o["t0"]) / 3)
            self._draw_plume(img, o, base_x, base_y - s, t)
            for colour in ((0, 60, 220), (0, 140, 255), (60, 220, 255)):
                for _ in range(4):
                    fh = s * grow * r.uniform(0.6, 1.6)
                    fw = s * grow * r.uniform(0.25, 0.6)
                    cx = base_x + r.normal(0, s * 0.3)
                    cv2.ellipse(img, (int(cx), int(base_y - fh / 2)),
                                (max(int(fw / 2), 1), max(int(fh / 2), 1)),
                                float(r.normal(0, 12)), 0, 360, colour, -1)
                s *= 0.8
        elif o["type"] == "smoke":
            self._draw_plume(img, o, o["x"], o["y"], t)
        elif o["type"] == "car":
            dx = (t - o["t0"]) * o["speed"]
            x = -0.25 * self.w + dx if o["left"] else 1.05 * self.w - dx
            cw, ch = 0.2 * self.w, 0.09 * self.h
            y = o["y"]
            cv2.rectangle(img, (int(x), int(y - ch)), (int(x + cw), int(y)),
                          o.get("colour", (0, 130, 250)), -1)
            cv2.rectangle(img, (int(x + 0.25 * cw), int(y - ch)),
                          (int(x + 0.7 * cw), int(y - 0.55 * ch)), (60, 50, 40), -1)
            for wx in (0.2, 0.8):
                cv2.circle(img, (int(x + wx * cw), int(y)), int(ch / 4), (20, 20, 20),
                           -1)
        elif o["type"] == "sign":
            x, y, s = o["x"], o["y"], 0.09 * self.h
            cv2.rectangle(img, (int(x - s), int(y - s / 2)),
                          (int(x + s), int(y + s / 2)), (0, 140, 255), -1)
            cv2.line(img, (int(x - 0.7 * s), int(y)), (int(x + 0.7 * s), int(y)),
                     (255, 255, 255), max(1, int(s / 8)))
        elif o["type"] == "lamp":
            if (t % o["period"]) < o["period"] / 2:
                cv2.circle(img, (int(o["x"]), int(o["y"])), int(0.04 * self.h),
                           (0, 190, 255), -1)
        elif o["type"] == "bag":
            s, x, y = o["size"], o["x"], o["y"]
            pts = np.array([(x - s, y), (x - 0.8 * s, y - s),
                            (x + 0.7 * s, y - 1.1 * s), (x + s, y)], np.int32)
            cv2.fillPoly(img, [pts], tuple(o["colour"]))

    def frames(self) -> Iterator[tuple[float, Frame]]:
        v = self.v
        n = int(v.seconds * v.fps)
        drift_phase = float(self.rng.uniform(0, 2 * np.pi))
        for i in range(n):
            t = i / v.fps
            img = self.background.copy()
            for o in self.objects:
                if o["t0"] <= t < o["t1"] and o["type"] != "fire":
                    self._draw_object(img, o, t)
            drawn = [(pos, p) for p in self.people if (pos := p.at(t)) is not None]
            for (x, y), p in sorted(drawn, key=lambda d: d[0][1]):
                self._draw_person(img, x, y, p)
            for o in self.objects:
                if o["t0"] <= t < o["t1"] and o["type"] == "fire":
                    self._draw_object(img, o, t)
            light = 1.0 + 0.06 * np.sin(2 * np.pi * t / 20.0 + drift_phase)
            noisy = img.astype(np.float32) * light + self.rng.normal(0, 2.5, img.shape)
            img = np.clip(noisy, 0, 255).astype(np.uint8)
            _, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 75])
            yield t, np.asarray(cv2.imdecode(jpg, cv2.IMREAD_COLOR), np.uint8)
