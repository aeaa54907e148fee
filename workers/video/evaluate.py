"""Precision and recall of the detectors on synthetic videos, scored per video
on kind, zone and time: an alert is true when it falls in a ground-truth
incident of its kind and zone (from its start to ``slack_s`` after its end);
an incident is found when at least one alert is true for it."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from workers.video.analyzer import Analyzer
from workers.video.model import KINDS, Incident
from workers.video.synthetic import SCENARIOS, Video, make_video


@dataclass
class Score:
    alerts: int = 0
    true_alerts: int = 0
    incidents: int = 0
    found: int = 0

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.incidents if self.incidents else 1.0


@dataclass
class Report:
    scores: dict[str, Score] = field(default_factory=lambda: {k: Score()
                                                              for k in KINDS})
    frames: int = 0
    seconds: float = 0.0
    mistakes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"fps": round(self.frames / self.seconds, 1) if self.seconds else 0,
                "frames": self.frames,
                **{k: {"precision": round(s.precision, 3),
                       "recall": round(s.recall, 3), "alerts": s.alerts,
                       "incidents": s.incidents} for k, s in self.scores.items()},
                "mistakes": self.mistakes}


def run_video(video: Video, crowd_estimator: str = "foreground"
              ) -> tuple[list[Incident], int, float]:
    """Analyse ``video``: its incidents, frames and analysis seconds (rendering
    not counted)."""
    zones = [replace(z, crowd_estimator=crowd_estimator) for z in video.zones()]
    analyzer = Analyzer(zones, video.fps, video.perspective())
    incidents: list[Incident] = []
    spent, frames = 0.0, 0
    for t, frame in video.frames():
        start = time.perf_counter()
        incidents += analyzer.process(frame, t)
        spent += time.perf_counter() - start
        frames += 1
    return incidents, frames, spent


def score(video: Video, incidents: Iterable[Incident], report: Report,
          slack_s: float = 2.0) -> None:
    incidents = list(incidents)
    for truth in video.truth:
        s = report.scores[truth.kind]
        s.incidents += 1
        if any(i.kind == truth.kind and i.zone == truth.zone
               and truth.start - slack_s <= i.confirmed <= truth.end + slack_s
               for i in incidents):
            s.found += 1
        else:
            report.mistakes.append(f"missed {truth.kind} in {video.scenario} "
                                   f"seed {video.seed}")
    for i in incidents:
        s = report.scores[i.kind]
        s.alerts += 1
        if any(i.kind == tr.kind and i.zone == tr.zone
               and tr.start - slack_s <= i.confirmed <= tr.end + slack_s
               for tr in video.truth):
            s.true_alerts += 1
        else:
            report.mistakes.append(f"false {i.kind} at {i.confirmed:.1f}s in "
                                   f"{video.scenario} seed {video.seed}")


def evaluate(seeds: Iterable[int], scenarios: Iterable[str] = SCENARIOS, *,
             width: int = 640, height: int = 360, fps: float = 10.0,
             seconds: float = 15.0, crowd_estimator: str = "foreground") -> Report:
    """Every scenario once per seed (crowds counted by ``crowd_estimator``)."""
    report = Report()
    for seed in seeds:
        for scenario in scenarios:
            video = make_video(scenario, seed, width, height, fps, seconds)
            incidents, frames, spent = run_video(video, crowd_estimator)
            report.frames += frames
            report.seconds += spent
            score(video, incidents, report)
    return report
