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
from voice_helpers import pick_sip_port, register_transport, rtp_base_for, start_citizen

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


def test_killed_campaign_resumes_and_every_contact_ends_once(
        tmp_path: Path) -> None:
    scenarios: dict[str, Any] = {_number(i): (PRESS, BUSY, HANG_UP)[i % 3]
                                 for i in range(N)}
    citizen = start_citizen(scenarios, tmp_path / "citizen")
    data = tmp_path / "data"
    register_transport(data)
    contacts = tmp_path / "contacts.csv"
    contacts.write_text("id,number\n" + "".join(
        f"p{i},{_number(i)}\n" for i in range(N)), encoding="utf-8")
    port = pick_sip_port()
    journal = data / "voice" / "campaigns" / "big" / "journal.sqlite"
    log = (tmp_path / "start.log").open("w")
    try:
        start = subprocess.Popen(_cli(
            "start", "--data-dir", str(data), "--template", str(QUICK),
            "--contacts", str(contacts), "--name", "big", "--city", "Kunshan",
            "--department", "transport", "--hours", "00:00-24:00", "--local",
            "--attempts", "2", "--retry-after", "0.5",
            "--gateway", f"sip:{{number}}@127.0.0.1:{citizen.port}",
            "--sip-port", str(port), "--rtp-port", str(rtp_base_for(port))),
            stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:  # kill it a third of the way, with calls under way
                assert start.poll() is None, (tmp_path / "start.log").read_text()
                done, live = _progress(journal)
                if done >= N // 3 and live >= 3:
                    start.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.02)
        finally:
            start.kill()
            start.wait()
        j = Journal(journal)
        dangling = {(a.contact, a.attempt) for a in j.attempts()
                    if a.outcome is None}
        before = len(j.finals())
        j.close()
        assert dangling and before < N

        resumed = subprocess.run(_cli("resume", "big", "--data-dir", str(data)),
                                 capture_output=True, text=True, timeout=600)
    finally:
        log.close()
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
    conn = connect("embedded", data_dir=data, read_only=True)
    try:
        state = conn.client("Kunshan", "auditor").evaluate("GetCallCampaign", {
            "city": "Kunshan", "department": "transport", "campaign": "big"})
    finally:
        conn.close()
    assert state["status"] == "completed" and state["outcomes"] == counts
    assert state["recorded"] == counts  # the per-call records, batch by batch
    records = (journal.parent / "calls.jsonl").read_text().splitlines()
    assert len(records) == N
    again = subprocess.run(_cli("resume", "big", "--data-dir", str(data)),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already completed" in again.stderr
