"""A robot whose process stalls in the middle of a prompt, as a loaded
machine stalls it (SIGSTOP for a few frames' time, three times): its media
clock then sends the late frames in a burst. The citizen's jitter buffer
(``sip.JITTER_BUFFER``) plays every frame of the prompt, a little later;
pjsua's adaptive default discards frames of speech to shrink back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from voice_helpers import pick_sip_port, rtp_base_for, start_citizen

from bench.voice import PROMPT
from workers.voice.quality import compare
from workers.voice.tts import PromptCache, missing_tools

pytestmark = pytest.mark.skipif(bool(missing_tools()),
                                reason="needs espeak-ng and sox")

TEMPLATE = f"""
name: stall
version: 1
title: 停顿测试
outcomes: [heard]
start: say
nodes:
  say:
    say: {PROMPT}
    outcome: heard
"""
CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from workers.voice.robot import CallEngine
    from workers.voice.template import parse_template
    from workers.voice.tts import PromptCache
    template, prompts, port, rtp, uri = sys.argv[1:]
    engine = CallEngine(parse_template(Path(template).read_text()),
                        PromptCache(Path(prompts)), int(port), int(rtp))
    try:
        done = engine.run([("1", uri)], concurrency=1, timeout_s=60)
    finally:
        engine.close()
    print(json.dumps([r.outcome for r in done]))
""")
STALLS_AT_S = (1.5, 3.0, 4.5)  # after the call is answered, inside the prompt
STALL_S = 0.12


def heard_through_stalls(tmp_path: Path, jitter_buffer: str) -> dict[str, float]:
    citizen = start_citizen({"*": {"keep_audio": True, "steps": []}},
                            tmp_path / "citizen", jitter_buffer=jitter_buffer)
    template, prompts = tmp_path / "stall.yaml", tmp_path / "prompts"
    template.write_text(TEMPLATE, encoding="utf-8")
    port = pick_sip_port()
    robot = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(template), str(prompts), str(port),
         str(rtp_base_for(port)), citizen.uri("3001")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(e["event"] == "answered" for e in citizen.events()):
            assert robot.poll() is None and time.monotonic() < deadline, \
                "the call was not answered"
            time.sleep(0.02)
        answered = time.monotonic()
        for at in STALLS_AT_S:
            time.sleep(max(0.0, answered + at - time.monotonic()))
            os.kill(robot.pid, signal.SIGSTOP)
            time.sleep(STALL_S)
            os.kill(robot.pid, signal.SIGCONT)
        out, err = robot.communicate(timeout=60)
    finally:
        robot.kill()
        robot.wait()
        citizen.stop()
    assert robot.returncode == 0, err[-2000:]
    assert json.loads(out.splitlines()[-1]) == ["heard"]
    [kept] = [e["path"] for e in citizen.events() if e["event"] == "kept"]
    return compare(_read(PromptCache(prompts).path(PROMPT)), _read(Path(kept)))


def _read(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64)


def test_our_jitter_buffer_plays_every_frame_through_stalls(tmp_path: Path) -> None:
    heard = heard_through_stalls(tmp_path, "keep")
    assert heard["dropout_frames"] == 0, heard
    # The stalls happened: the buffer ran dry and played them as pauses.
    assert heard["inserted_frames"] >= 1, heard


def test_pjsua_adaptive_default_drops_frames_after_stalls(tmp_path: Path) -> None:
    heard = heard_through_stalls(tmp_path, "adaptive")
    assert heard["dropout_frames"] >= 1, heard
