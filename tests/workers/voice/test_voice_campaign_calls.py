"""Campaigns over real SIP calls: through Ray call workers (two actors, in a
session-scoped local Ray), and through ``cityunion voice campaign start`` on an
embedded ledger, which then holds the start and the counts, and no number."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import time, timedelta
from pathlib import Path

import pytest
from voice_helpers import (
    EXPECTED_NICE,
    CitizenProcess,
    pick_sip_port,
    pjsua_thread_niceness,
    register_transport,
    rtp_base_for,
    start_citizen,
)

from ledger.connect import connect
from workers.voice.campaign import (
    CallingHours,
    Campaign,
    Contact,
    RetryPolicy,
    SystemClock,
    run_campaign,
)
from workers.voice.robot import CallResult
from workers.voice.template import load_template
from workers.voice.tts import missing_tools

pytestmark = pytest.mark.skipif(bool(missing_tools()),
                                reason="needs espeak-ng and sox")

QUICK = Path(__file__).with_name("quick_survey.yaml")
ALL_DAY = CallingHours(time(0), time.max)
PRESS_1 = {"steps": [{"after_prompt": True}, {"dtmf": "1"}]}
PRESS_2 = {"steps": [{"after_prompt": True}, {"tones": "2"}]}
SCENARIOS = {
    "13800000001": PRESS_1, "13800000002": PRESS_2, "13800000003": PRESS_1,
    "13800000004": {"answer": "busy"},  # every time
    "13800000005": {"answer": "never"},
    "13800000006": PRESS_1,  # on the do-not-call list
}


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    import ray

    # Another suite (video) may have started Ray in this session already.
    mine = not ray.is_initialized()
    if mine:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield
    if mine:
        ray.shutdown()


@pytest.fixture(scope="module")
def citizen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CitizenProcess]:
    c = start_citizen(SCENARIOS, tmp_path_factory.mktemp("citizen"))
    yield c
    c.stop()


def test_campaign_on_ray_call_workers(ray_local: None, citizen: CitizenProcess,
                                      tmp_path: Path) -> None:
    import ray

    from workers.voice.dialers import EngineSpec, RayDialer

    contacts = [Contact(f"k{n[-1]}", n) for n in SCENARIOS]
    campaign = Campaign("ray", contacts, ALL_DAY,
                        RetryPolicy(attempts=2, delay=timedelta(seconds=0.5)),
                        do_not_call={"13800000006"})
    port = pick_sip_port(2)
    dialer = RayDialer(EngineSpec(load_template(QUICK), str(tmp_path / "prompts"),
                                  port, rtp_base_for(port)), workers=2)
    try:
        # Each call worker, a process of its own, runs its calls first.
        pids = ray.get([a.__ray_call__.remote(lambda self: os.getpid())
                        for a in dialer.actors])
        assert ray.get([a.niceness.remote() for a in dialer.actors]) \
            == [EXPECTED_NICE] * 2
        assert [pjsua_thread_niceness(p) for p in pids] == [{EXPECTED_NICE}] * 2
        # The citizen (one pjsua process) takes 4 calls at once.
        counts = run_campaign(campaign, dialer, lambda c: citizen.uri(c.number),
                              SystemClock(), concurrency=4, idle_s=0.2)
    finally:
        dialer.close()
    assert counts == {"satisfied": 2, "unsatisfied": 1, "busy": 1, "no_answer": 1,
                      "do_not_call": 1}
    assert len(campaign.progress["k4"].results) == 2  # busy: called twice
    assert campaign.progress["k6"].results == []
    rings = [e for e in citizen.events() if e["number"] == "13800000006"]
    assert rings == []


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", "voice", "campaign",
                           *args], capture_output=True, text=True, timeout=timeout)


def test_cli_campaign_records_counts_on_the_ledger(citizen: CitizenProcess,
                                                    tmp_path: Path) -> None:
    data = tmp_path / "data"
    register_transport(data)
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("id,number\n" + "".join(
        f"p{i},{n}\n" for i, n in enumerate(SCENARIOS)), encoding="utf-8")
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("13800000006\n", encoding="utf-8")
    port = pick_sip_port()
    args = ("start", "--data-dir", str(data), "--template", str(QUICK),
            "--contacts", str(contacts), "--name", "bus-2026-12",
            "--city", "Kunshan", "--department", "transport",
            "--do-not-call", str(dnc), "--hours", "00:00-24:00", "--local",
            "--attempts", "1", "--gateway", f"sip:{{number}}@127.0.0.1:{citizen.port}",
            "--sip-port", str(port), "--rtp-port", str(rtp_base_for(port)))
    run = _cli(*args)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "DTMF only" in run.stderr
    summary = json.loads(run.stdout)  # stdout holds the result only
    expected = {"satisfied": 2, "unsatisfied": 1, "busy": 1, "no_answer": 1,
                "do_not_call": 1}
    assert summary["outcomes"] == expected
    conn = connect("embedded", data_dir=data, read_only=True)
    try:
        state = conn.client("Kunshan", "auditor").evaluate("GetCallCampaign", {
            "city": "Kunshan", "department": "transport", "campaign": "bus-2026-12"})
    finally:
        conn.close()
    assert state["status"] == "completed" and state["outcomes"] == expected
    assert state["recorded"] == expected and state["batches"] >= 1
    assert state["template_sm3"] == load_template(QUICK).sm3
    assert state["contact_count"] == 6
    # No phone number anywhere in the ledger's files (SQLite and all).
    ledger_bytes = b"".join(p.read_bytes() for p in data.rglob("*")
                            if p.is_file() and "voice" not in p.parts)
    assert ledger_bytes
    for number in SCENARIOS:
        assert number.encode() not in ledger_bytes
        assert number.encode("utf-16-le") not in ledger_bytes
    calls = (data / "voice" / "campaigns" / "bus-2026-12" / "calls.jsonl").read_text()
    assert "13800000" not in calls and '"final": "satisfied"' in calls
    report = _cli("report", "bus-2026-12", "--data-dir", str(data))
    assert report.returncode == 0, report.stderr
    summary = json.loads(report.stdout)
    assert summary["outcomes"] == expected and summary["contacts"] == 6
    assert summary["calls"] == 5  # one attempt each, none to do-not-call
    assert summary["answers"] == {"ask": {"agree": 2, "disagree": 1}}
    assert summary["setup_ms"]["p99"] < 1000
    again = _cli(*args)  # the name is taken: refused, nothing dialled
    assert again.returncode == 2 and "already started" in again.stderr
    assert "Traceback" not in again.stderr


def test_cli_refuses_bad_input(tmp_path: Path) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("id,number\np1,13800000001\np2,call me\n", encoding="utf-8")
    run = _cli("start", "--data-dir", str(tmp_path), "--template", str(QUICK),
               "--contacts", str(contacts), "--name", "x", "--city", "Kunshan",
               "--department", "transport", "--local")
    assert run.returncode == 2
    assert f"{contacts}:3: number: 'call me'" in run.stderr
    speech = tmp_path / "speech.yaml"
    speech.write_text(QUICK.read_text(encoding="utf-8").replace(
        '        dtmf: "2"\n', ""), encoding="utf-8")
    contacts.write_text("id,number\np1,13800000001\n", encoding="utf-8")
    run = _cli("start", "--data-dir", str(tmp_path), "--template", str(speech),
               "--contacts", str(contacts), "--name", "x", "--city", "Kunshan",
               "--department", "transport", "--local")
    assert run.returncode == 2
    assert "needs a Mandarin speech model" in run.stderr
    assert "Traceback" not in run.stderr
    run = _cli("start", "--data-dir", str(tmp_path), "--template", str(QUICK),
               "--contacts", str(contacts), "--name", "x", "--city", "Kunshan",
               "--department", "transport", "--concurrency", "20", "--workers", "2")
    assert run.returncode == 2
    assert "--concurrency: 20 calls at once need 5 call workers" in run.stderr
    run = _cli("start", "--data-dir", str(tmp_path), "--template", str(QUICK),
               "--contacts", str(contacts), "--name", "x", "--city", "Kunshan",
               "--department", "transport", "--local", "--hours", "25:00-26:00")
    assert run.returncode == 2
    assert run.stderr.count("--hours:") == 1, run.stderr
    assert not (tmp_path / "voice" / "campaigns" / "x").exists()


def test_a_killed_call_worker_loses_no_contact(ray_local: None,
                                               tmp_path: Path) -> None:
    """SIGKILL to one call worker's process mid-campaign: its calls end
    ``interrupted`` and are called again, the worker is started again, and
    every contact still ends exactly once."""
    import os
    import signal

    import ray

    from workers.voice.dialers import EngineSpec, RayDialer

    numbers = [f"1370000{i:04d}" for i in range(12)]
    citizen = start_citizen({n: {**PRESS_1, "max_s": 4} for n in numbers},
                            tmp_path / "citizen")
    port = pick_sip_port(2)
    dialer = RayDialer(EngineSpec(load_template(QUICK), str(tmp_path / "prompts"),
                                  port, rtp_base_for(port)), workers=2)
    victim = ray.get(dialer.actors[0].__ray_call__.remote(lambda self: os.getpid()))
    poll, killed = dialer.poll, list[int]()

    def poll_then_kill(wait_s: float) -> list[CallResult]:
        out = poll(wait_s)
        if not killed and any(i == 0 for i, _ in dialer._owner.values()):
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
        return out

    dialer.poll = poll_then_kill  # type: ignore[method-assign]
    campaign = Campaign("kill", [Contact(f"k{i}", n) for i, n in enumerate(numbers)],
                        ALL_DAY, RetryPolicy(attempts=3, delay=timedelta(seconds=0.5)))
    try:
        counts = run_campaign(campaign, dialer, lambda c: citizen.uri(c.number),
                              SystemClock(), concurrency=4, idle_s=0.2)
    finally:
        dialer.close()
        citizen.stop()
    assert killed and dialer.restarts == 1
    assert sum(counts.values()) == len(numbers)
    assert all(p.final is not None for p in campaign.progress.values())
    interrupted = [k for k, p in campaign.progress.items()
                   if any(r.outcome == "interrupted" for r in p.results)]
    assert interrupted
    for k in interrupted:  # called again after the worker died
        assert len(campaign.progress[k].results) >= 2
