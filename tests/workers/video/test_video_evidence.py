"""The content-addressed evidence store: SM3 names, atomic writes, checks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from chaincode.encoding import sm3_hex
from workers.video.evidence import EvidenceStore, load_manifest, save_evidence


def test_put_get_by_sm3(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    digest = store.put(b"frame bytes")
    assert digest == sm3_hex(b"frame bytes")
    assert store.get(digest) == b"frame bytes"
    assert store.put(b"frame bytes") == digest  # idempotent
    store.path(digest).write_bytes(b"tampered")
    with pytest.raises(ValueError, match="corrupt"):
        store.get(digest)


def test_alert_evidence_has_frame_clip_and_manifest(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    rng = np.random.default_rng(1)
    clip = [rng.integers(0, 255, (90, 160, 3), dtype=np.uint8) for _ in range(12)]
    ev = save_evidence(store, clip[-1], [(10, 10, 30, 20)], "fire 0.80", clip, 10.0,
                       {"camera": "cam-1", "incident": "fire-stall-3"})
    manifest = load_manifest(store, ev.digest)
    assert manifest["frame"] == ev.frame and manifest["clip"] == ev.clip
    assert manifest["incident"] == "fire-stall-3"
    jpg = cv2.imdecode(np.frombuffer(store.get(ev.frame), np.uint8),
                       cv2.IMREAD_COLOR)
    assert jpg is not None and jpg.shape == (90, 160, 3)
    assert tuple(int(c) for c in jpg[10, 25]) != tuple(int(c) for c in clip[-1][10, 25])
    path = tmp_path / "clip.avi"
    path.write_bytes(store.get(ev.clip))
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    cap.release()
