"""Evidence of alerts, off chain: a content-addressed directory store whose
names are SM3 digests (the same hash the ledger records), so anyone holding
the hash from an alert can fetch the evidence and check it was not altered."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from chaincode.encoding import canonical_json, sm3_hex
from workers.video.model import Box, Frame


class EvidenceStore:
    """Blobs under ``root/<first 2 hex>/<sm3 hex>``, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        digest = sm3_hex(data)
        target = self.path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)  # readers never see a partial file
        return digest

    def get(self, digest: str) -> bytes:
        """The blob, after checking that its SM3 is ``digest``."""
        data = self.path(digest).read_bytes()
        if sm3_hex(data) != digest:
            raise ValueError(f"evidence {digest} is corrupt (SM3 differs)")
        return data


@dataclass(frozen=True)
class Evidence:
    """What an alert carries: ``digest`` (the manifest's SM3, on chain) names
    a JSON manifest listing the annotated frame and the clip."""

    digest: str
    frame: str
    clip: str


def annotate(frame: Frame, boxes: Sequence[Box], label: str) -> Frame:
    """A copy of ``frame`` with ``boxes`` drawn and ``label`` written."""
    out = frame.copy()
    for x, y, w, h in boxes:
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 0, 255), 2)
    cv2.putText(out, label, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1)
    return out


def encode_clip(frames: Sequence[Frame], fps: float) -> bytes:
    """Frames as a Motion-JPEG AVI (OpenCV writes it without external codecs)."""
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "clip.avi")
        h, w = frames[0].shape[:2]
        writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
        try:
            for f in frames:
                writer.write(f)
        finally:
            writer.release()
        return Path(path).read_bytes()


def save_evidence(store: EvidenceStore, frame: Frame, boxes: Sequence[Box],
                  label: str, clip: Sequence[Frame], fps: float,
                  meta: dict[str, object]) -> Evidence:
    """Store the annotated frame, the clip and a manifest naming both."""
    ok, jpg = cv2.imencode(".jpg", annotate(frame, boxes, label),
                           [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("the frame could not be encoded as JPEG")
    frame_digest = store.put(np.asarray(jpg).tobytes())
    clip_digest = store.put(encode_clip(list(clip) or [frame], fps))
    manifest = {**meta, "frame": frame_digest, "clip": clip_digest,
                "frame_type": "image/jpeg", "clip_type": "video/x-msvideo"}
    return Evidence(store.put(canonical_json(manifest)), frame_digest, clip_digest)


def load_manifest(store: EvidenceStore, digest: str) -> dict[str, object]:
    return dict(json.loads(store.get(digest)))
