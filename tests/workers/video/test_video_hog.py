"""OpenCV's HOG people detector as a zone's crowd estimator: what it counts,
how a watch chooses it per zone, and the bench that compares it with the
foreground density (precision, recall and fps are the bench's to print; on
rendered people it undercounts, which the README reports)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.video import crowd_estimators
from workers.video.analyzer import Analyzer
from workers.video.classical import CrowdDetector, HogCrowdDetector, Joined
from workers.video.evaluate import run_video
from workers.video.synthetic import make_video, scene_perspective
from workers.video.watch import WatchConfig


def test_hog_counts_people_whose_feet_stand_in_the_zone() -> None:
    video = make_video("gathering", 100, 640, 360)
    plaza = next(z for z in video.zones() if z.name == "plaza")
    hog = HogCrowdDetector(video.zones())
    assert hog.count(np.full((360, 640, 3), 128, np.uint8), 0.0) == {"plaza": 0.0}
    # the gathering stands in the plaza from about 4 s to 12 s
    frame = next(f for t, f in video.frames() if t >= 8.0)
    people = hog.people(frame)
    in_plaza = [b for b in people if plaza.contains(b[0] + b[2] / 2, b[1] + b[3])]
    assert in_plaza, people
    assert hog.count(frame, 8.0) == {"plaza": float(len(in_plaza))}


def test_hog_boxes_come_back_in_frame_pixels() -> None:
    """It searches the zones' surroundings, enlarged: a box found there is
    mapped back to the frame."""
    zones = make_video("gathering", 0, 640, 360).zones()
    hog = HogCrowdDetector(zones, upscale=2.0)
    searched: list[tuple[int, ...]] = []

    class Stub:
        def detectMultiScale(self, img: np.ndarray, **_: object
                             ) -> tuple[list[tuple[int, int, int, int]], list[float]]:
            searched.append(img.shape)
            return [(100, 60, 128, 256)], [1.0]

    hog.hog = Stub()  # type: ignore[assignment]
    # plaza: x 19..332, y 151..352; searched from 32 px either side, a third
    # of the frame (120 px) above, to 16 px below (clipped at the frame)
    assert hog.people(np.zeros((360, 640, 3), np.uint8)) == [(0 + 50, 31 + 30,
                                                              64, 128)]
    assert searched == [((360 - 31) * 2, (333 + 32) * 2, 3)]


def test_a_gathering_counted_by_hog_raises_a_crowd_incident() -> None:
    """With a zone's threshold within what HOG sees of the group (it misses
    people hidden by others), its count holds long enough to be an incident."""
    video = make_video("gathering", 101, 640, 360)
    zones = [replace(z, min_people=2, crowd_estimator="hog") if z.name == "plaza"
             else z for z in video.zones()]
    analyzer = Analyzer(zones, video.fps, video.perspective())
    incidents = [i for t, f in video.frames() for i in analyzer.process(f, t)]
    [truth] = video.truth
    crowds = [i for i in incidents if i.kind == "crowd"]
    assert len(crowds) == 1 and crowds[0].zone == "plaza"
    assert truth.start - 2.0 <= crowds[0].confirmed <= truth.end + 2.0
    assert run_video(video, "hog")[1] == 150  # the scorer's path takes it too


def test_the_crowd_estimator_is_chosen_per_zone(tmp_path: Path) -> None:
    zones = make_video("gathering", 0, 320, 180).zones()

    def config(estimator: str | dict[str, str]) -> WatchConfig:
        return WatchConfig("cam", "x.avi", zones, scene_perspective(180),
                           tmp_path / "cp.json", tmp_path / "ev",
                           crowd_estimator=estimator)

    def chosen(estimator: str | dict[str, str]) -> dict[str, str]:
        return {z.name: z.crowd_estimator
                for z in config(estimator).analysed_zones()}

    assert set(chosen("foreground").values()) == {"foreground"}
    assert set(chosen("hog").values()) == {"hog"}
    assert chosen({"plaza": "hog"}) == {"plaza": "hog", "stall": "foreground",
                                        "corner": "foreground"}
    assert chosen({"plaza": "foreground", "*": "hog"})["stall"] == "hog"
    with pytest.raises(ValueError, match="zone nowhere: the camera's zones are"):
        config({"nowhere": "hog"}).analysed_zones()
    analyzer = Analyzer(config({"plaza": "hog"}).analysed_zones(), 10.0,
                        scene_perspective(180))
    [crowd] = [d for d in analyzer.detectors if d.kind == "crowd"]
    assert isinstance(crowd, Joined)
    assert [type(d) for d in crowd.detectors] == [CrowdDetector, HogCrowdDetector]
    with pytest.raises(ValueError, match="crowd estimator yolo: accepted "
                                         "foreground, hog"):
        Analyzer(config("yolo").analysed_zones(), 10.0, scene_perspective(180))


def test_the_bench_compares_the_estimators() -> None:
    out = crowd_estimators([100], ["gathering"], 320, 180, 8.0)
    assert out["videos"] == 1 and out["scenarios"] == ["gathering"]
    for estimator in ("foreground", "hog"):
        score = out[estimator]
        assert score["incidents"] == 1 and 0 <= score["recall"] <= 1
        assert 0 <= score["precision"] <= 1 and score["alerts"] >= 0
    counted = out["people_counted"]
    assert counted["frames"] > 0 and counted["true"] >= 8  # a gathering stands
    assert {"foreground", "hog", "hog_upscale_2"} <= set(counted)
    assert set(out["fps_one_core"]) == {"foreground", "hog", "hog_alone"}
    assert min(out["fps_one_core"].values()) > 0
