"""A campaign survives the death of its process: 200 contacts against a
simulated citizen, the ``cityunion voice campaign start`` process killed with
SIGKILL mid-way, then ``resume``: every contact ends exactly once, calls that
were under way end ``interrupted`` and are called again, and the counts on the
ledger are the journal's."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from voice_helpers import (
    CitizenProcess,
    pick_sip_port,
    register_transport,
    rtp_base_for,
    start_citizen,
)

from ledger.connect import connect
from workers.voice.journal import Journal
from workers.voice.tts import missing_tools

pytestmark = pytest.mark.skipif(bool(missing_tools()),
                                reason="needs espeak-ng and sox")

QUICK = Path(__file__).with_name("quick_survey.yaml")
PRESS = {"steps": [{"wait_s": 0.3}, {"dtmf": "1"}], "max_s": 4}
HANG_UP = {"steps": [{"wait_s": 0.3}, {"hangup": True}], "max_s": 4}
BUSY = {"answer": "busy"}
N = 200


def _number(i: int) -> str:
    return f"1390000{i:04d}"


def _progress(journal: Path) -> tuple[int, int]:
    """(final outcomes, attempts under way), read beside the running process."""
    if not journal.exists():
        return 0, 0
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
        try:
            finals = db.execute("SELECT COUNT(*) FROM finals").fetchone()[0]
            live = db.execute("SELECT COUNT(*) FROM attempts WHERE outcome IS NULL"
                              ).fetchone()[0]
        except sqlite3.OperationalError:  # tables not created yet
            return 0, 0
    return int(finals), int(live)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", "voice", "campaign", *args]


def _start_and_kill(tmp_path: Path, scenarios: dict[str, Any],
                    citizen: CitizenProcess, name: str, finals: int
                    ) -> tuple[Path, Path, set[tuple[str, int]], int]:
    """Start campaign ``name`` (a contact per scenario) as a process and kill
    it once ``finals`` contacts have ended, with 3 or more calls under way;
    returns the data directory, the journal, the attempts left under way and
    the contacts that had ended."""
    data = tmp_path / "data"
    register_transport(data)
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("id,number\n" + "".join(
        f"p{i},{n}\n" for i, n in enumerate(scenarios)), encoding="utf-8")
    port = pick_sip_port()
    journal = data / "voice" / "campaigns" / name / "journal.sqlite"
    with (tmp_path / "start.log").open("w") as log:
        start = subprocess.Popen(_cli(
            "start", "--data-dir", str(data), "--template", str(QUICK),
            "--contacts", str(contacts), "--name", name, "--city", "Kunshan",
            "--department", "transport", "--hours", "00:00-24:00", "--local",
            "--attempts", "2", "--retry-after", "0.5",
            "--gateway", f"sip:{{number}}@127.0.0.1:{citizen.port}",
            "--sip-port", str(port), "--rtp-port", str(rtp_base_for(port))),
            stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:  # kill it with calls under way
                assert start.poll() is None, (tmp_path / "start.log").read_text()
                done, live = _progress(journal)
                if done >= finals and live >= 3:
                    start.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.02)
        finally:
            start.kill()
            start.wait()
    j = Journal(journal)
    dangling = {(a.contact, a.attempt) for a in j.attempts() if a.outcome is None}
    before = len(j.finals())
    j.close()
    assert dangling and before < len(scenarios)
    return data, journal, dangling, before


def _on_ledger(data: Path, campaign: str) -> dict[str, Any]:
    conn = connect("embedded", data_dir=data, read_only=True)
    try:
        state: dict[str, Any] = conn.client("Kunshan", "auditor").evaluate(
            "GetCallCampaign", {"city": "Kunshan", "department": "transport",
                                "campaign": campaign})
    finally:
        conn.close()
    return state


def test_killed_campaign_resumes_and_every_contact_ends_once(
        tmp_path: Path) -> None:
    scenarios: dict[str, Any] = {_number(i): (PRESS, BUSY, HANG_UP)[i % 3]
                                 for i in range(N)}
    citizen = start_citizen(scenarios, tmp_path / "citizen")
    try:
        data, journal, dangling, _ = _start_and_kill(tmp_path, scenarios, citizen,
                                                     "big", N // 3)
        resumed = subprocess.run(_cli("resume", "big", "--data-dir", str(data)),
                                 capture_output=True, text=True, timeout=600)
    finally:
        citizen.stop()
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from its journal" in resumed.stderr
    summary = json.loads(resumed.stdout)

    j = Journal(journal)
    finals = j.finals()
    attempts = j.attempts()
    counts = j.counts()
    assert sorted(f.contact for f in finals) == sorted(f"p{i}" for i in range(N))
    assert all(a.outcome is not None for a in attempts)
    assert {(a.contact, a.attempt) for a in attempts
            if a.outcome == "interrupted"} == dangling
    per_contact = {f.contact: f.attempts for f in finals}
    assert max(per_contact.values()) <= 2
    assert sum(counts.values()) == N and summary["outcomes"] == counts
    state = _on_ledger(data, "big")
    assert state["status"] == "completed" and state["outcomes"] == counts
    assert state["recorded"] == counts  # the per-call records, batch by batch
    records = (journal.parent / "calls.jsonl").read_text().splitlines()
    assert len(records) == N
    again = subprocess.run(_cli("resume", "big", "--data-dir", str(data)),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already completed" in again.stderr


def test_a_dead_campaign_cannot_be_paused_and_cancelling_ends_it(
        tmp_path: Path) -> None:
    scenarios: dict[str, Any] = {_number(i): PRESS for i in range(30)}
    citizen = start_citizen(scenarios, tmp_path / "citizen")
    try:
        data, journal, dangling, before = _start_and_kill(
            tmp_path, scenarios, citizen, "small", 4)
        rang = len([e for e in citizen.events() if e["event"] == "incoming"])
        paused = subprocess.run(_cli("pause", "small", "--data-dir", str(data)),
                                capture_output=True, text=True, timeout=60)
        cancelled = subprocess.run(_cli("cancel", "small", "--data-dir", str(data)),
                                   capture_output=True, text=True, timeout=120)
        time.sleep(0.5)  # a call placed by mistake would have rung by now
        rang_after = len([e for e in citizen.events() if e["event"] == "incoming"])
    finally:
        citizen.stop()
    assert paused.returncode == 2 and "nothing to pause" in paused.stderr
    assert cancelled.returncode == 0, cancelled.stderr[-3000:]
    assert "cancelling from its journal" in cancelled.stderr
    assert rang_after == rang  # cancelling placed no call
    j = Journal(journal)
    counts = j.counts()
    interrupted = {(a.contact, a.attempt) for a in j.attempts()
                   if a.outcome == "interrupted"}
    j.close()
    assert interrupted == dangling
    assert counts["interrupted"] == len(dangling)
    assert counts["cancelled"] == len(scenarios) - before - len(dangling)
    assert sum(counts.values()) == len(scenarios)
    summary = json.loads(cancelled.stdout)
    assert summary["status"] == "cancelled" and summary["outcomes"] == counts
    state = _on_ledger(data, "small")
    assert state["status"] == "completed" and state["outcomes"] == counts
    again = subprocess.run(_cli("cancel", "small", "--data-dir", str(data)),
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already completed" in again.stderr
