"""Voice robot benchmark: N concurrent real SIP calls on 127.0.0.1, printing
JSON: call set-up times (INVITE to confirmed), how faithfully each citizen heard
the robot's prompt (normalised correlation, drop-out frames), whether the robot
heard each citizen's in-band key press, and the load.

    python -m bench.voice [--calls 20] [--workers 5] [--tap file|port]
                          [--busy 2] [--jitter-buffer keep|adaptive]

The robot's call workers are Ray actors (``RayDialer``, 4 calls each: the
pjsua2 wheel's PJSUA_MAX_CALLS); the citizens are processes of their own
(4 calls each), each keeping what it heard. A drop-out is a 20 ms frame where
the prompt is voiced but what the citizen heard does not carry it, on a
frame-by-frame alignment that lets frames of silence slip (``quality``);
``inserted_frames`` counts heard frames pushed into the middle of speech.
``received`` says where drop-outs come from: RTP lost on the way, or the
citizen's jitter buffer running empty after its media clock thread (or the
robot's) was held up (``late_ticks``: frames that came 60 ms or more after
the one before; measured by the ``port`` tap only). ``--tap`` picks how calls
hand received audio to Python (``sip.TAP_ENV``; robot and citizens alike);
``--busy N`` runs N busy-looping processes for the whole run (background load
on the cores), stopped by their pids at the end. ``--jitter-buffer`` picks the
citizens' (``sip.JITTER_BUFFERS``): ours, which keeps every frame, or pjsua's
adaptive default, which discards frames of speech to shrink its delay. The
call workers and the citizens raise their priority (``sip.raise_priority``);
``niceness`` says what they got.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.ledger import percentile
from workers.voice.campaign import (
    CallingHours,
    Campaign,
    Contact,
    RetryPolicy,
    SystemClock,
    run_campaign,
)
from workers.voice.citizen import CitizenProcess, spawn_citizen
from workers.voice.dialers import EngineSpec, RayDialer, connect_ray
from workers.voice.quality import compare
from workers.voice.robot import PJSUA_MAX_CALLS
from workers.voice.sip import (
    JITTER_BUFFERS,
    TAP_ENV,
    TAP_KINDS,
    free_udp_port,
    tap_kind,
)
from workers.voice.template import parse_template
from workers.voice.tts import PromptCache

PROMPT = ("您好，这里是城市服务热线。我们正在进行公交服务满意度回访，"
          "感谢您抽出时间。本次通话用于测试语音质量，请您耐心听完。"
          "祝您生活愉快，再见。")
TEMPLATE = f"""
name: bench
version: 1
title: 基准测试
outcomes: [pressed, missed]
start: say
nodes:
  say:
    say: {PROMPT}
    next: ask
  ask:
    say: 请按一。
    timeout_s: 5
    on_silence: {{max: 0}}
    on_no_match: {{max: 0}}
    silence_next: missed
    no_match_next: missed
    answers:
      - intent: one
        dtmf: "1"
        next: pressed
  pressed:
    say: 好的。
    outcome: pressed
  missed:
    say: 再见。
    outcome: missed
"""


def _read(path: Path) -> npt.NDArray[np.float64]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--workers", type=int, default=0,
                   help="robot call workers (default: calls / 4)")
    p.add_argument("--base-port", type=int, default=5340)
    p.add_argument("--tap", choices=TAP_KINDS, default=None,
                   help=f"how calls hand audio to Python (default: ${TAP_ENV} "
                        "or file)")
    p.add_argument("--keep-audio", type=Path, default=None,
                   help="copy the prompt and what each citizen heard here")
    p.add_argument("--busy", type=int, default=0,
                   help="busy-looping processes as background load")
    p.add_argument("--jitter-buffer", choices=JITTER_BUFFERS, default="keep",
                   help="the citizens' jitter buffer (default: keep)")
    args = p.parse_args()
    if args.tap:
        os.environ[TAP_ENV] = args.tap  # citizens and Ray workers inherit it
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(args.busy)]
    try:
        run(args)
    finally:
        for b in busy:
            b.kill()
            b.wait()


def _ray_tap() -> str:
    """The tap kind a Ray worker process sees (the robot's call workers)."""
    import ray

    return str(ray.get(ray.remote(num_cpus=0)(tap_kind).remote()))


def _niceness(dialer: RayDialer, citizens: list[CitizenProcess]
              ) -> dict[str, list[int]]:
    """The niceness the robot's call workers and the citizens run at."""
    import ray

    return {"robot_workers": sorted(set(ray.get(
                [a.niceness.remote() for a in dialer.actors]))),
            "citizens": sorted({os.getpriority(os.PRIO_PROCESS, c.proc.pid)
                                for c in citizens})}


def run(args: argparse.Namespace) -> None:
    workers = args.workers or math.ceil(args.calls / PJSUA_MAX_CALLS)
    n_citizens = math.ceil(args.calls / PJSUA_MAX_CALLS)
    ports = [free_udp_port(range(args.base_port + i, args.base_port + 60))
             for i in range(0, 2 * (workers + n_citizens), 2)]
    robot_port, citizen_ports = ports[0], ports[workers:workers + n_citizens]
    template = parse_template(TEMPLATE)
    with tempfile.TemporaryDirectory(prefix="bench-voice-") as tmp:
        work = Path(tmp)
        prompt = _read(PromptCache(work / "prompts").path(PROMPT))
        citizens: list[CitizenProcess] = []
        try:
            for i, port in enumerate(citizen_ports):
                scenario = {"keep_audio": True,
                            "steps": [{"after_prompt": True}, {"tones": "1"}]}
                citizens.append(spawn_citizen({"*": scenario}, work / f"c{i}",
                                              port, 40500 + 40 * i,
                                              jitter_buffer=args.jitter_buffer))
            t0 = time.perf_counter()
            connect_ray(num_cpus=os.cpu_count() or 2)
            ray_s = time.perf_counter() - t0
            robot_tap = _ray_tap()
            spec = EngineSpec(template, str(work / "prompts"), robot_port, 40000)
            dialer = RayDialer(spec, workers)
            nice = _niceness(dialer, citizens)
            contacts = [Contact(f"b{i}", f"100{i:03d}") for i in range(args.calls)]
            campaign = Campaign("bench", contacts, CallingHours.parse("00:00-24:00"),
                                RetryPolicy(attempts=1))
            t0 = time.perf_counter()
            try:
                counts = run_campaign(
                    campaign, dialer,
                    lambda c: citizens[int(c.id[1:]) % len(citizens)].uri(c.number),
                    SystemClock(), concurrency=args.calls, idle_s=0.1)
            finally:
                dialer.close()
            wall = time.perf_counter() - t0
        finally:
            for c in citizens:
                c.stop()
        results = [r for p_ in campaign.progress.values() for r in p_.results]
        setups = [r.setup_ms for r in results if r.setup_ms is not None]
        kept = [Path(e["path"]) for c in citizens for e in c.events()
                if e["event"] == "kept"]
        heard = [compare(prompt, _read(k)) for k in kept]
        if args.keep_audio:
            args.keep_audio.mkdir(parents=True, exist_ok=True)
            shutil.copy(PromptCache(work / "prompts").path(PROMPT),
                        args.keep_audio / "prompt.wav")
            for i, k in enumerate(kept):
                shutil.copy(k, args.keep_audio / f"heard-{i}.wav")
        streams = [e for c in citizens for e in c.events()
                   if e["event"] == "stream"]
    whole = [h["correlation_whole"] for h in heard]
    per_second = [h["correlation_min_second"] for h in heard]
    typical = [h["correlation_median_second"] for h in heard]
    out: dict[str, Any] = {
        "calls": args.calls, "robot_workers": workers, "citizen_processes": n_citizens,
        "cores": os.cpu_count(), "busy_processes": args.busy,
        "citizen_jitter_buffer": args.jitter_buffer, "niceness": nice,
        "tap": {"robot": robot_tap, "citizens": sorted({str(e.get("tap"))
                                                         for e in streams})},
        "outcomes": counts, "wall_s": round(wall, 2),
        "ray_start_s": round(ray_s, 2), "prompt_s": round(len(prompt) / 8000, 2),
        "setup_ms": {"p50": round(percentile(setups, 0.5), 2),
                     "p99": round(percentile(setups, 0.99), 2),
                     "max": round(max(setups), 2)} if setups else None,
        "heard": {"calls": len(heard),
                  "correlation_whole_min": round(min(whole), 4) if whole else None,
                  "correlation_whole_median": round(float(np.median(whole)), 4)
                  if whole else None,
                  "correlation_median_second": round(float(np.median(typical)), 4)
                  if typical else None,
                  "correlation_worst_second": round(min(per_second), 4)
                  if per_second else None,
                  "dropout_frames_total": sum(h["dropout_frames"] for h in heard),
                  "dropout_frames_per_call": [h["dropout_frames"] for h in heard],
                  "missed_frames_total": sum(h["missed_frames"] for h in heard),
                  "removed_ms_total": sum(h["removed_ms"] for h in heard),
                  "inserted_frames_total": sum(h["inserted_frames"] for h in heard),
                  "inserted_ms_total": sum(h["inserted_ms"] for h in heard),
                  "voiced_frames_total": sum(h["voiced_frames"] for h in heard)},
        # The citizens' receive side: RTP loss, the jitter buffer (frames it
        # had none for, lost, discarded) and how late their clock ticked.
        "received": {k: sum(e.get(k, 0) for e in streams) for k in (
            "rx_pkt", "rx_loss", "rx_discard", "jb_empty", "jb_lost",
            "jb_discard", "late_ticks")} | {k: max((e.get(k, 0) for e in streams),
                                                  default=None) for k in (
            "rx_jitter_ms_max", "jb_delay_ms_max", "longest_gap_ms")},
        "load_average_1min": round(os.getloadavg()[0], 2),
        "targets": {"concurrent_calls_20": len(results) >= 20
                    and all(r.answered for r in results),
                    "inband_dtmf_all_heard": counts.get("pressed", 0) == args.calls,
                    "setup_p99_under_50ms": bool(setups)
                    and percentile(setups, 0.99) < 50,
                    "no_dropouts": bool(heard) and all(
                        h["dropout_frames"] == 0 for h in heard)},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
