"""Object detectors in ONNX with the common YOLOv8 output layout, and the
zone detectors built on them.

A YOLOv8 export takes ``1 x 3 x S x S`` RGB in [0, 1] and returns
``1 x (4 + nc) x N``: per candidate the box centre, width and height in input
pixels, then one score per class (no objectness). Post-processing here:
letterbox, decode, confidence threshold, class-aware NMS, undo letterbox.
Class names come from a text file, one per line, in class order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from workers.video.model import Detection, Frame, Kind, Zone

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ObjectBox:
    """A detected object: class, score and box ``(x1, y1, x2, y2)`` in the
    pixels of the frame given to ``YoloV8.detect``."""

    name: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the square input: scale, then padding."""

    scale: float
    left: int
    top: int


def load_names(path: Path) -> list[str]:
    """Class names, one per line (blank lines ignored)."""
    names = [line.strip() for line in path.read_text("utf-8").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"{path}: no class names (one per line expected)")
    return names


def letterbox(frame: Frame, size: int, pad: int = 114
              ) -> tuple[Floats, Letterbox]:
    """``frame`` (BGR) scaled to fit ``size`` x ``size`` keeping its aspect,
    centred on grey padding; returned as a 1x3xSxS RGB float tensor in [0, 1]."""
    h, w = frame.shape[:2]
    r = min(size / h, size / w)
    nw, nh = round(w * r), round(h * r)
    left, top = (size - nw) // 2, (size - nh) // 2
    canvas = np.full((size, size, 3), pad, np.uint8)
    resized = frame if (nw, nh) == (w, h) else cv2.resize(
        frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    canvas[top:top + nh, left:left + nw] = resized
    # one pass: BGR -> RGB, HWC -> 1xCxHxW, to float in [0, 1]
    rgb = cv2.dnn.blobFromImage(canvas, 1.0 / 255.0, swapRB=True)
    return np.asarray(rgb, np.float32), Letterbox(r, left, top)


def nms(boxes: Floats, scores: Floats, iou: float) -> list[int]:
    """Greedy non-maximum suppression over ``(x1, y1, x2, y2)`` boxes: indices
    kept, best score first (ties: lower index first). Each kept box drops
    the remaining ones that overlap it by more than ``iou`` (vectorised)."""
    n = len(scores)
    order = np.lexsort((np.arange(n), -np.asarray(scores, np.float32)))
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    areas = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    keep: list[int] = []
    while order.size:
        i, rest = int(order[0]), order[1:]
        keep.append(i)
        ix = (np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])).clip(0)
        iy = (np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])).clip(0)
        inter = ix * iy
        union = areas[i] + areas[rest] - inter
        over = np.zeros(rest.shape, bool)
        np.greater(inter, iou * union, out=over, where=union > 0)
        order = rest[~over]
    return keep


def decode(output: Floats, names: Sequence[str], conf: float, iou: float,
           lb: Letterbox, frame_shape: tuple[int, int]) -> list[ObjectBox]:
    """YOLOv8 output ``1 x (4 + nc) x N`` to objects in frame pixels."""
    if output.ndim != 3 or output.shape[0] != 1 or output.shape[1] != 4 + len(names):
        raise ValueError(f"model output {output.shape}: expected (1, {4 + len(names)}"
                         f", N) for {len(names)} class names")
    # threshold first, on each candidate's best score (rows are contiguous),
    # so the rest works on the few candidates left
    table = output[0]
    best = table[4:].max(0)
    sel = np.nonzero(best >= conf)[0]
    cls = table[4:, sel].argmax(0)
    score = best[sel]
    cx, cy, bw, bh = table[:4, sel]
    xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    kept: list[int] = []
    for c in np.unique(cls):  # class-aware: NMS within each class
        idx = np.nonzero(cls == c)[0]
        kept += [int(idx[k]) for k in nms(xyxy[idx], score[idx], iou)]
    h, w = frame_shape
    frame_xyxy = ((xyxy[kept] - [lb.left, lb.top, lb.left, lb.top]) / lb.scale
                  ).clip(0, [w, h, w, h])
    out = [ObjectBox(names[int(cls[i])], int(cls[i]), float(score[i]),
                     (float(b[0]), float(b[1]), float(b[2]), float(b[3])))
           for i, b in zip(kept, frame_xyxy.tolist(), strict=True)]
    out.sort(key=lambda o: -o.score)
    return out


class YoloV8:
    """An ONNX model of the YOLOv8 layout, run with onnxruntime on the CPU."""

    def __init__(self, model: Path, names: Sequence[str], conf: float = 0.25,
                 iou: float = 0.45) -> None:
        import onnxruntime as ort  # only cameras with a model pay for it

        self.session = ort.InferenceSession(str(model),
                                            providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input = inp.name
        size = inp.shape[-1]
        self.size = size if isinstance(size, int) else 640
        self.names, self.conf, self.iou = list(names), conf, iou

    def detect(self, frame: Frame) -> list[ObjectBox]:
        tensor, lb = letterbox(frame, self.size)
        (output,) = self.session.run(None, {self.input: tensor})[:1]
        return decode(np.asarray(output, np.float32), self.names, self.conf,
                      self.iou, lb, frame.shape[:2])


# The classes that stand for each kind, in common model vocabularies.
CLASSES: dict[Kind, tuple[str, ...]] = {
    "crowd": ("person",),
    "fire": ("fire", "smoke", "flame"),
    "garbage": ("garbage", "litter", "trash", "rubbish"),
}


class OnnxZoneDetector:
    """A ``Detector`` of one kind from a YOLOv8 model: for ``crowd`` the number
    of people whose feet (box bottom centre) are in the zone must reach
    ``min_people``; for ``fire`` and ``garbage`` one object of the kind's classes
    in the zone is the condition (the debounce adds the time)."""

    def __init__(self, kind: Kind, model: YoloV8, zones: Sequence[Zone]) -> None:
        self.kind, self.model = kind, model
        self.zones = [z for z in zones if kind in z.detectors]

    def process(self, frame: Frame, t: float) -> list[Detection]:
        objects = [o for o in self.model.detect(frame)
                   if o.name in CLASSES[self.kind]]
        out = []
        for z in self.zones:
            inside = [o for o in objects
                      if z.contains((o.box[0] + o.box[2]) / 2,
                                    o.box[3] if self.kind == "crowd"
                                    else (o.box[1] + o.box[3]) / 2)]
            boxes = tuple((int(o.box[0]), int(o.box[1]), int(o.box[2] - o.box[0]),
                           int(o.box[3] - o.box[1])) for o in inside)
            if self.kind == "crowd":
                if len(inside) >= z.min_people:
                    conf = float(np.mean([o.score for o in inside]))
                    out.append(Detection("crowd", z.name, conf, boxes,
                                         float(len(inside))))
            elif inside:
                out.append(Detection(self.kind, z.name,
                                     max(o.score for o in inside), boxes))
        return out
