"""``python -m bench.video`` briefly, with tiny numbers, for the parts that
measure issue 11's targets (ONNX pre- and post-processing, Ray against one
process, incident to committed alert): each prints its figures. No timing is
asserted (the numbers are noisy); the logic is: the incident's alert was
raised on the ledger, once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def test_video_bench_smoke() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.video", "--parts", "onnx,ray,latency",
         "--seeds", "100", "--width", "320", "--height", "180", "--seconds", "10",
         "--onnx-frames", "5", "--ray-repeats", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["parts"] == ["onnx", "ray", "latency"]
    assert "fps" not in out and "scores" not in out

    onnx = out["onnx"]
    assert onnx["output"] == [1, 84, 8400] and onnx["frames"] == 5
    assert onnx["candidates_above_conf"] > onnx["objects_kept"] > 0
    for figure in ("pre_ms", "inference_ms", "post_ms", "pre_post_ms"):
        assert set(onnx[figure]) == {"median", "p95"}
        assert 0 < onnx[figure]["median"] <= onnx[figure]["p95"]

    ray = out["ray"]
    assert ray["frames"] == 100
    assert len(ray["plain_fps"]) == len(ray["ray_fps"]) == 1
    assert min(ray["plain_fps"] + ray["ray_fps"]) > 0 and ray["ray_over_plain"] > 0

    latency = out["latency"]
    assert latency["incident"]["kind"] == "fire" and latency["dwell_s"] == 3.0
    assert latency["alerts"] == ["fire stall"] and latency["frames"] == 100
    assert latency["latency_s"] > latency["confirm_to_commit_s"] > 0
    assert latency["latency_minus_dwell_s"] == pytest.approx(
        latency["latency_s"] - latency["dwell_s"], abs=0.002)
    assert latency["confirmed_s"] >= latency["incident"]["start_s"] + 3.0 - 0.2
