"""Calls that end at once (a citizen that is always busy) churn pjsua's media
sockets faster than pjlib frees them; the engine paces call starts, so a long
run of them ends with every call busy instead of aborting the process (run in
a child process, where an abort cannot take pytest with it)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from voice_helpers import pick_sip_port, rtp_base_for, start_citizen

from workers.voice.tts import missing_tools

pytestmark = pytest.mark.skipif(bool(missing_tools()),
                                reason="needs espeak-ng and sox")

QUICK = Path(__file__).with_name("quick_survey.yaml")
N = 150
CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from workers.voice.robot import PJSUA_MAX_CALLS, CallEngine
    from workers.voice.template import load_template
    from workers.voice.tts import PromptCache
    template, prompts, port, rtp, uri, n = sys.argv[1:]
    engine = CallEngine(load_template(Path(template)), PromptCache(Path(prompts)),
                        int(port), int(rtp))
    try:
        done = engine.run([(str(i), uri.format(i)) for i in range(int(n))],
                          concurrency=PJSUA_MAX_CALLS, timeout_s=240)
    finally:
        engine.close()
    print(json.dumps(sorted(r.outcome for r in done)))
""")


def test_a_run_of_busy_calls_does_not_exhaust_the_sockets(tmp_path: Path) -> None:
    citizen = start_citizen({str(i): {"answer": "busy"} for i in range(N)},
                            tmp_path / "citizen")
    port = pick_sip_port()
    try:
        run = subprocess.run(
            [sys.executable, "-c", CHILD, str(QUICK), str(tmp_path / "prompts"),
             str(port), str(rtp_base_for(port)),
             f"sip:{{}}@127.0.0.1:{citizen.port}", str(N)],
            capture_output=True, text=True, timeout=300)
    finally:
        citizen.stop()
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.splitlines()[-1]) == ["busy"] * N
