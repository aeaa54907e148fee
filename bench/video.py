"""Video detector benchmark: frames per second of each detector pipeline and
precision/recall on held-out synthetic scenes. Prints one JSON object.

    python -m bench.video [--seeds 100-104] [--width 640] [--height 360]
                          [--seconds 15] [--fps-video fire]

``fps``: one process, frames already decoded (rendering not counted), each
pipeline on its own background model: crowd, fire, garbage, and all three
sharing one (what a camera runs); wall clock, so compare within one run
(``load_avg`` is the machine's 1-minute load when it ended; ``cpu_fps`` counts
this process's CPU time, all OpenCV threads together). ``scores``: every
scenario once per seed (the detectors were tuned on seeds 1-3; use others),
scored per video on kind, zone and time (``workers.video.evaluate``).
Synthetic scenes check the logic, not accuracy on real cameras.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace

from workers.video.analyzer import Analyzer
from workers.video.evaluate import evaluate
from workers.video.model import KINDS, Kind
from workers.video.synthetic import SCENARIOS, make_video


def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-", 1)
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def pipeline_fps(scenario: str, seed: int, width: int, height: int,
                 seconds: float) -> dict[str, float]:
    video = make_video(scenario, seed, width, height, seconds=seconds)
    frames = list(video.frames())
    out: dict[str, float] = {}
    pipelines: list[tuple[str, tuple[Kind, ...]]] = [
        *((k, (k,)) for k in KINDS), ("all", KINDS)]
    for name, kinds in pipelines:
        zones = [replace(z, detectors=kinds) for z in video.zones()]
        analyzer = Analyzer(zones, video.fps, video.perspective())
        start, cpu = time.perf_counter(), time.process_time()
        for t, frame in frames:
            analyzer.process(frame, t)
        out[name] = round(len(frames) / (time.perf_counter() - start), 1)
        out[f"{name}_cpu_fps"] = round(len(frames) / (time.process_time() - cpu), 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="100-104", help="held-out seeds: 100-104 or 7,9")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--fps-video", default="gathering", choices=SCENARIOS,
                   help="the scene the fps are measured on")
    args = p.parse_args()
    seeds = _seeds(args.seeds)
    started = time.perf_counter()
    report = evaluate(seeds, width=args.width, height=args.height,
                      seconds=args.seconds)
    print(json.dumps({
        "resolution": f"{args.width}x{args.height}", "seeds": seeds,
        "videos": len(seeds) * len(SCENARIOS),
        "fps": pipeline_fps(args.fps_video, seeds[0], args.width, args.height,
                            args.seconds),
        "scores": report.as_dict(),
        "load_avg": round(os.getloadavg()[0], 2),
        "seconds": round(time.perf_counter() - started, 1)}, indent=2))


if __name__ == "__main__":
    main()
