"""Campaign bookkeeping without SIP or Ray: contacts and do-not-call files,
calling hours on an injected clock, retries, the concurrency limit, pause,
resume and cancel, and counts that always add up to the contacts."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from workers.voice.campaign import (
    CHINA,
    CallingHours,
    Campaign,
    CampaignError,
    Contact,
    FileControl,
    RecordSender,
    RetryPolicy,
    Status,
    contact_key,
    load_contacts,
    load_do_not_call,
    run_campaign,
)
from workers.voice.journal import Journal
from workers.voice.robot import CallResult

MORNING = datetime(2026, 12, 1, 9, 30, tzinfo=CHINA)


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.t = start

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class FakeDialer:
    """Each number answers its attempts with the outcomes listed for it
    (the last one repeats); every call takes ``call_s`` of the fake clock."""

    def __init__(self, clock: FakeClock, script: dict[str, list[str]],
                 capacity: int = 4, call_s: float = 30.0) -> None:
        self.clock, self.script, self.capacity = clock, script, capacity
        self.call_s = call_s
        self.calls: list[tuple[datetime, str]] = []
        self.live: list[tuple[str, str]] = []
        self.most_live = 0
        self.attempts: dict[str, int] = {}

    def dial(self, contact_id: str, uri: str) -> None:
        self.live.append((contact_id, uri))
        self.calls.append((self.clock.now(), uri))
        self.most_live = max(self.most_live, len(self.live))

    def poll(self, wait_s: float) -> list[CallResult]:
        self.clock.sleep(self.call_s)
        out = []
        for key, uri in self.live:
            n = self.attempts.get(uri, 0)
            self.attempts[uri] = n + 1
            outcomes = self.script.get(uri, ["satisfied"])
            out.append(CallResult(key, uri, outcomes[min(n, len(outcomes) - 1)]))
        self.live = []
        return out

    def close(self) -> None:
        pass


class ScriptedControl:
    """Commands that appear once the clock passes given times."""

    def __init__(self, clock: FakeClock, at: list[tuple[datetime, str]]) -> None:
        self.clock, self.at = clock, at

    def read(self) -> str | None:
        current = None
        for when, command in self.at:
            if self.clock.now() >= when:
                current = command
        return current


def _contacts(n: int) -> list[Contact]:
    return [Contact(f"c{i}", f"1380000{i:04d}") for i in range(n)]


def _run(campaign: Campaign, dialer: FakeDialer, clock: FakeClock,
         concurrency: int = 4, control: ScriptedControl | None = None
         ) -> dict[str, int]:
    return run_campaign(campaign, dialer, lambda c: c.number, clock, concurrency,
                        control, idle_s=60.0)


def test_everyone_called_once_within_the_limit() -> None:
    clock = FakeClock(MORNING)
    c = Campaign("t", _contacts(10), CallingHours(), RetryPolicy())
    dialer = FakeDialer(clock, {}, capacity=8)
    counts = _run(c, dialer, clock, concurrency=3)
    assert counts == {"satisfied": 10}
    assert dialer.most_live == 3 and len(dialer.calls) == 10
    assert c.status is Status.DONE


def test_do_not_call_is_never_dialled() -> None:
    clock = FakeClock(MORNING)
    contacts = _contacts(4)
    c = Campaign("t", contacts, CallingHours(), RetryPolicy(),
                 do_not_call={contacts[1].number})
    dialer = FakeDialer(clock, {})
    assert _run(c, dialer, clock) == {"satisfied": 3, "do_not_call": 1}
    assert contacts[1].number not in {uri for _, uri in dialer.calls}


def test_no_calls_at_night() -> None:
    clock = FakeClock(datetime(2026, 12, 1, 22, 15, tzinfo=CHINA))
    c = Campaign("t", _contacts(3), CallingHours(time(9), time(20)), RetryPolicy())
    dialer = FakeDialer(clock, {})
    assert _run(c, dialer, clock) == {"satisfied": 3}
    for when, _ in dialer.calls:  # all the next morning, none before 9:00
        assert when.date() == datetime(2026, 12, 2).date() and when.hour >= 9


def test_calls_stop_at_closing_time_and_go_on_next_day() -> None:
    clock = FakeClock(datetime(2026, 12, 1, 19, 58, tzinfo=CHINA))
    c = Campaign("t", _contacts(12), CallingHours(time(9), time(20)), RetryPolicy())
    dialer = FakeDialer(clock, {}, capacity=2, call_s=60.0)
    assert _run(c, dialer, clock, concurrency=2) == {"satisfied": 12}
    hours = sorted({when.astimezone(CHINA).hour for when, _ in dialer.calls})
    assert 20 not in hours and 21 not in hours and 19 in hours and 9 in hours


def test_busy_and_no_answer_are_retried_then_final() -> None:
    clock = FakeClock(MORNING)
    contacts = _contacts(3)
    script = {contacts[0].number: ["busy", "satisfied"],
              contacts[1].number: ["no_answer"],  # every time
              contacts[2].number: ["hung_up"]}  # not retried
    c = Campaign("t", contacts, CallingHours(),
                 RetryPolicy(attempts=3, delay=timedelta(minutes=10)))
    dialer = FakeDialer(clock, script)
    assert _run(c, dialer, clock) == {"satisfied": 1, "no_answer": 1, "hung_up": 1}
    tries = [t for t, uri in dialer.calls if uri == contacts[1].number]
    assert len(tries) == 3
    assert all(b - a >= timedelta(minutes=10) for a, b in pairwise(tries))
    assert dialer.attempts[contacts[2].number] == 1


def test_pause_resume_and_cancel() -> None:
    clock = FakeClock(MORNING)
    c = Campaign("t", _contacts(20), CallingHours(), RetryPolicy())
    dialer = FakeDialer(clock, {}, capacity=2, call_s=60.0)
    control = ScriptedControl(clock, [
        (MORNING + timedelta(minutes=3), "pause"),
        (MORNING + timedelta(minutes=30), "resume"),
        (MORNING + timedelta(minutes=33), "cancel")])
    counts = _run(c, dialer, clock, concurrency=2, control=control)
    assert c.status is Status.CANCELLED
    assert sum(counts.values()) == 20
    called = counts.get("satisfied", 0)
    assert 0 < called < 20 and counts["cancelled"] == 20 - called
    paused = [t for t, _ in dialer.calls
              if MORNING + timedelta(minutes=4) <= t < MORNING + timedelta(minutes=30)]
    assert paused == []


def test_contacts_csv(tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    p.write_text("id,number,name\na1,138 0000 0001,张三\na2,+86-13800000002,\n",
                 encoding="utf-8")
    assert load_contacts(p) == [Contact("a1", "13800000001"),
                                Contact("a2", "+8613800000002")]


@pytest.mark.parametrize(("text", "where"), [
    ("id,phone\na1,138\n", "c.csv:1: header: needs the columns id and number"),
    ("id,number\na1,13800000001\na2,13800x\n", "c.csv:3: number: '13800x'"),
    ("id,number\na1,13800000001\na1,13800000002\n",
     "c.csv:3: id: 'a1' is already on line 2"),
    ("id,number\nbad id,13800000001\n", "c.csv:2: id: 'bad id'"),
    ("id,number\n", "c.csv: no contacts"),
])
def test_contacts_csv_errors(tmp_path: Path, text: str, where: str) -> None:
    p = tmp_path / "c.csv"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(CampaignError) as info:
        load_contacts(p)
    assert str(info.value).startswith(f"{tmp_path}/{where}"), str(info.value)


def test_do_not_call_file(tmp_path: Path) -> None:
    p = tmp_path / "dnc.txt"
    p.write_text("# opted out\n138-0000-0001\n\n13800000002  # asked twice\n")
    assert load_do_not_call(p) == {"13800000001", "13800000002"}
    p.write_text("13800000001\nnot-a-number\n")
    with pytest.raises(CampaignError, match=r"dnc\.txt:2: number"):
        load_do_not_call(p)


@pytest.mark.parametrize(("text", "ok"), [
    ("09:00-20:00", True), ("00:00-24:00", True), ("20:00-09:00", False),
    ("9-20", False), ("25:00-26:00", False)])
def test_calling_hours_option(text: str, ok: bool) -> None:
    if ok:
        h = CallingHours.parse(text)
        assert h.allows(MORNING)
    else:
        with pytest.raises(CampaignError, match="--hours"):
            CallingHours.parse(text)


def test_control_commands_reach_the_running_campaign(tmp_path: Path) -> None:
    from cli.main import main
    from workers.voice.runner import campaign_dir

    assert main(["voice", "campaign", "pause", "nope", "--data-dir",
                 str(tmp_path)]) == 2
    control = FileControl(campaign_dir(tmp_path, "c1") / "control")
    assert control.read() is None
    for action in ("pause", "resume", "cancel"):
        assert main(["voice", "campaign", action, "c1", "--data-dir",
                     str(tmp_path)]) == 0
        assert control.read() == action


# ------------------------------------------------------------------ journal
def _journalled(tmp_path: Path, contacts: list[Contact], clock: FakeClock,
                retry: RetryPolicy, dnc: set[str] | None = None) -> Campaign:
    c = Campaign("t", contacts, CallingHours(), retry, do_not_call=dnc or set())
    c.attach(Journal(tmp_path / "journal.sqlite"), clock.now())
    return c


def test_a_campaign_goes_on_from_its_journal_after_a_crash(tmp_path: Path) -> None:
    clock = FakeClock(MORNING)
    contacts = _contacts(12)
    retry = RetryPolicy(attempts=2, delay=timedelta(minutes=1))
    first = _journalled(tmp_path, contacts, clock, retry,
                        dnc={contacts[11].number})
    dialer = FakeDialer(clock, {contacts[0].number: ["busy"]})
    # Dial 4, two of them end; then the process "dies" with two in flight.
    for c in first.due(clock.now(), 4):
        dialer.dial(c.id, c.number)
    ended = dialer.poll(0)
    for r in ended[:2]:
        first.record(r, clock.now())
    assert first.journal is not None
    first.journal.close()
    in_flight = [r.key for r in ended[2:]]

    clock.sleep(120)
    second = _journalled(tmp_path, contacts, clock, retry,
                         dnc={contacts[11].number})
    for key in in_flight:  # interrupted, called again (one attempt left)
        p = second.progress[key]
        assert (p.attempts, p.final, p.results[-1].outcome) == (
            1, None, "interrupted")
    assert second.progress["c0"].attempts == 1  # busy once, due again
    assert second.progress["c1"].final == "satisfied"
    counts = _run(second, dialer, clock)
    assert counts == {"satisfied": 10, "busy": 1, "do_not_call": 1}
    journal = Journal(tmp_path / "journal.sqlite")
    finals = journal.finals()
    assert sorted(f.contact for f in finals) == sorted(c.id for c in contacts)
    assert journal.counts() == counts
    assert {a.contact: a.attempt for a in journal.attempts()
            if a.outcome == "interrupted"} == dict.fromkeys(in_flight, 1)
    assert all(a.outcome for a in journal.attempts())
    assert [u for _, u in dialer.calls].count(contacts[1].number) == 1


def test_interrupted_without_attempts_left_is_final(tmp_path: Path) -> None:
    clock = FakeClock(MORNING)
    contacts = _contacts(2)
    retry = RetryPolicy(attempts=1)
    first = _journalled(tmp_path, contacts, clock, retry)
    first.due(clock.now(), 1)  # dialled, then the process dies
    second = _journalled(tmp_path, contacts, clock, retry)
    assert second.progress["c0"].final == "interrupted"
    assert _run(second, FakeDialer(clock, {}), clock) == {
        "interrupted": 1, "satisfied": 1}


def test_a_cancelled_campaign_stays_cancelled(tmp_path: Path) -> None:
    clock = FakeClock(MORNING)
    contacts = _contacts(5)
    first = _journalled(tmp_path, contacts, clock, RetryPolicy())
    first.due(clock.now(), 2)
    first.cancel()  # two calls under way; then the process dies
    second = _journalled(tmp_path, contacts, clock, RetryPolicy())
    assert second.status is Status.CANCELLED and second.done
    assert second.counts() == {"cancelled": 3, "interrupted": 2}
    assert Journal(tmp_path / "journal.sqlite").counts() == second.counts()


def test_records_go_out_in_batches_by_keyed_hash(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 12, 1, 23, 30, tzinfo=CHINA))
    contacts = _contacts(7)
    c = Campaign("t", contacts, CallingHours.parse("00:00-24:00"), RetryPolicy())
    journal = Journal(tmp_path / "journal.sqlite")
    c.attach(journal, clock.now())
    _run(c, FakeDialer(clock, {}), clock)
    sent: list[dict[str, Any]] = []
    secret = b"k" * 32
    sender = RecordSender(journal, sent.append, "t", secret, size=3, every_s=3600)
    sender.flush()  # full batches only
    assert [b["batch"] for b in sent] == [0, 1]
    sender.flush(force=True)
    assert [len(b["calls"]) for b in sent] == [3, 3, 1]
    records = [r for b in sent for r in b["calls"]]
    assert sorted(r["contact"] for r in records) == sorted(
        contact_key(secret, x.id) for x in contacts)
    assert contact_key(b"x" * 32, "c0") != contact_key(secret, "c0")
    assert all("1380000" not in json.dumps(b) for b in sent)
    assert {r["day"] for r in records} <= {"2026-12-01", "2026-12-02"}
    # A resumed campaign starts where the ledger's records end.
    again: list[dict[str, Any]] = []
    RecordSender(journal, again.append, "t", secret, sent=6, batch=2
                 ).flush(force=True)
    assert again == [sent[2]]
