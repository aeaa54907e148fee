"""YOLOv8-layout post-processing against small ONNX models built here, whose
outputs are known, so every step is checked exactly: letterbox, decode,
confidence threshold, class-aware NMS, undoing the letterbox."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.video import build_yolo_model
from workers.video.model import Zone
from workers.video.onnx import (
    ObjectBox,
    OnnxZoneDetector,
    YoloV8,
    letterbox,
    load_names,
    nms,
)

NAMES = ["person", "fire", "garbage"]
SIZE = 64


def build_model(path: Path, candidates: list[list[float]], size: int = SIZE,
                classes: int = len(NAMES)) -> Path:
    """A model whose output is ``candidates`` (rows cx, cy, w, h, scores...) as
    ``1 x (4 + nc) x N``, plus 0 x the input's mean (so it reads its input)."""
    out = np.array(candidates, np.float32).T[None]
    assert out.shape == (1, 4 + classes, len(candidates))
    return build_yolo_model(path, out, size)


def test_letterbox_fits_and_centres() -> None:
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[..., 2] = 200  # red in BGR
    tensor, lb = letterbox(frame, SIZE)
    assert tensor.shape == (1, 3, SIZE, SIZE) and tensor.dtype == np.float32
    assert (lb.scale, lb.left, lb.top) == (1.0, 0, 16)
    assert tensor[0, 0, 20, 5] == pytest.approx(200 / 255)  # R channel first
    assert tensor[0, 2, 20, 5] == 0.0
    assert tensor[0, 0, 5, 5] == pytest.approx(114 / 255)  # padding


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.5, 0.9, 0.4], np.float32)
    assert nms(boxes, scores, 0.45) == [1, 2]
    assert nms(boxes, scores, 0.9) == [1, 0, 2]  # IoU 0.68 is below 0.9


def test_decode_threshold_class_aware_nms_and_undo(tmp_path: Path) -> None:
    # Frame 128 x 64 (w x h) -> scale 0.5, left 0, top 16 in the 64 input:
    # frame = ((input - (left, top)) / scale, clipped to the frame.
    rows = [
        [20, 30, 8, 12, 0.9, 0.0, 0.0],    # person
        [21, 30, 8, 12, 0.8, 0.0, 0.0],    # same person, suppressed
        [21, 30, 8, 12, 0.0, 0.7, 0.0],    # fire at the same place: kept
        [50, 40, 10, 10, 0.1, 0.2, 0.24],  # below 0.25: dropped
        [60, 20, 20, 8, 0.0, 0.0, 0.6],    # garbage, crosses the right edge
    ]
    yolo = YoloV8(build_model(tmp_path / "m.onnx", rows), NAMES)
    assert yolo.size == SIZE
    frame = np.zeros((64, 128, 3), np.uint8)
    found = yolo.detect(frame)
    expected = [
        ObjectBox("person", 0, 0.9, (32.0, 16.0, 48.0, 40.0)),
        ObjectBox("fire", 1, 0.7, (34.0, 16.0, 50.0, 40.0)),
        ObjectBox("garbage", 2, 0.6, (100.0, 0.0, 128.0, 16.0)),
    ]
    assert [o.name for o in found] == [e.name for e in expected]
    for o, e in zip(found, expected, strict=True):
        assert o.class_id == e.class_id
        assert o.score == pytest.approx(e.score)
        assert o.box == pytest.approx(e.box)


def test_wrong_output_shape_is_refused(tmp_path: Path) -> None:
    yolo = YoloV8(build_model(tmp_path / "m.onnx", [[1, 1, 1, 1, 0.9, 0, 0]]),
                  ["person", "fire"])
    with pytest.raises(ValueError, match=r"expected \(1, 6, N\) for 2 class"):
        yolo.detect(np.zeros((64, 64, 3), np.uint8))


def test_names_file(tmp_path: Path) -> None:
    (tmp_path / "n.txt").write_text("person\n\nfire\n", "utf-8")
    assert load_names(tmp_path / "n.txt") == ["person", "fire"]
    (tmp_path / "e.txt").write_text("\n", "utf-8")
    with pytest.raises(ValueError, match="one per line"):
        load_names(tmp_path / "e.txt")


def test_zone_detector_counts_people_by_their_feet(tmp_path: Path) -> None:
    # three people standing with feet in the left half, one in the right half
    rows = [[x, 40, 6, 20, 0.8, 0, 0] for x in (5, 15, 25)]
    rows.append([50, 40, 6, 20, 0.8, 0, 0])
    rows.append([10, 10, 6, 6, 0, 0.9, 0])  # a fire, not a person
    yolo = YoloV8(build_model(tmp_path / "m.onnx", rows), NAMES)
    left = Zone("left", ((0, 0), (32, 0), (32, 64), (0, 64)), ("crowd", "fire"),
                min_people=3)
    right = Zone("right", ((32, 0), (64, 0), (64, 64), (32, 64)), ("crowd",),
                 min_people=1)
    frame = np.zeros((64, 64, 3), np.uint8)
    crowd = OnnxZoneDetector("crowd", yolo, [left, right]).process(frame, 0.0)
    assert [(d.zone, d.value) for d in crowd] == [("left", 3.0), ("right", 1.0)]
    fire = OnnxZoneDetector("fire", yolo, [left, right]).process(frame, 0.0)
    assert [(d.zone, d.confidence) for d in fire] == [("left", pytest.approx(0.9))]
