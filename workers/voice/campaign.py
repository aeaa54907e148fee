"""Outbound call campaigns: contacts, do-not-call list, calling hours, retries
for busy and unanswered calls, a concurrency limit, and pause, resume and
cancel. ``Campaign`` is the plain bookkeeping (a clock is passed in, so tests
need neither SIP nor Ray); ``run_campaign`` drives it with a ``Dialer``.

Phone numbers stay in this process and the call workers; the ledger gets the
template's SM3 and the counts (``chaincode/calls.py``).
"""

from __future__ import annotations

import csv
import hmac
import re
import time as _time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from workers.voice.dialog import Line
from workers.voice.journal import INTERRUPTED, Journal
from workers.voice.robot import CallResult

CHINA = ZoneInfo("Asia/Shanghai")
_NUMBER = re.compile(r"^\+?\d{3,15}$")
_CONTACT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Outcomes the campaign itself gives a contact that was never (again) called.
DO_NOT_CALL, CANCELLED = "do_not_call", "cancelled"


class CampaignError(ValueError):
    """Bad campaign input; the message names the file, line and field."""


@dataclass(frozen=True)
class Contact:
    id: str
    number: str


def normalise_number(raw: str) -> str:
    return re.sub(r"[\s-]", "", raw)


def load_contacts(path: Path) -> list[Contact]:
    """A CSV with a header naming at least ``id`` and ``number`` (other columns
    are ignored). Errors name the line and field."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise CampaignError(f"{path}: cannot read: {e}") from None
    rows = csv.DictReader(text.splitlines())
    missing = {"id", "number"} - set(rows.fieldnames or ())
    if missing:
        raise CampaignError(f"{path}:1: header: needs the columns id and number "
                            f"(missing: {', '.join(sorted(missing))})")
    contacts: list[Contact] = []
    seen: dict[str, int] = {}
    for row in rows:
        line = rows.line_num
        cid, number = (row.get("id") or "").strip(), normalise_number(
            row.get("number") or "")
        if not _CONTACT_ID.match(cid):
            raise CampaignError(f"{path}:{line}: id: {cid!r} is not a contact id "
                                "(accepted: 1-64 letters, digits, _ . -)")
        if cid in seen:
            raise CampaignError(f"{path}:{line}: id: {cid!r} is already on line "
                                f"{seen[cid]}")
        if not _NUMBER.match(number):
            raise CampaignError(f"{path}:{line}: number: {row.get('number')!r} is "
                                "not a phone number (accepted: 3 to 15 digits, "
                                "a leading +, spaces or hyphens between)")
        seen[cid] = line
        contacts.append(Contact(cid, number))
    if not contacts:
        raise CampaignError(f"{path}: no contacts")
    return contacts


def load_do_not_call(path: Path | None) -> set[str]:
    """One number a line; ``#`` starts a comment."""
    if path is None:
        return set()
    out = set()
    for i, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        number = normalise_number(line)
        if not _NUMBER.match(number):
            raise CampaignError(f"{path}:{i}: number: {line!r} is not a phone "
                                "number")
        out.add(number)
    return out


@dataclass(frozen=True)
class CallingHours:
    """When citizens may be called (local time); no calls at night."""

    start: time = time(9, 0)
    end: time = time(20, 0)
    tz: tzinfo = CHINA

    @classmethod
    def parse(cls, text: str, tz: tzinfo = CHINA) -> CallingHours:
        """``HH:MM-HH:MM``, e.g. ``09:00-20:00`` (``00:00-24:00``: all day)."""
        m = re.fullmatch(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})", text.strip())
        try:
            if not m:
                raise ValueError
            start = time(int(m[1]), int(m[2]))
            # 24:00 is the end of the day (all day: 00:00-24:00)
            end = (time.max if (m[3], m[4]) == ("24", "00")
                   else time(int(m[3]), int(m[4])))
        except ValueError:
            raise CampaignError(f"--hours: {text!r} is not a time range "
                                "(accepted: HH:MM-HH:MM, e.g. 09:00-20:00)") from None
        if start >= end:
            raise CampaignError(f"--hours: {text!r} ends before it starts")
        return cls(start, end, tz)

    def allows(self, now: datetime) -> bool:
        local = now.astimezone(self.tz).time()
        return self.start <= local < self.end


@dataclass(frozen=True)
class RetryPolicy:
    """Call again after busy, no answer or a failed call, up to ``attempts``
    calls in all, waiting ``delay`` between."""

    attempts: int = 3
    delay: timedelta = timedelta(minutes=10)
    outcomes: frozenset[str] = frozenset({"busy", "no_answer", "failed",
                                          INTERRUPTED})


class Status(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"


@dataclass
class _Progress:
    attempts: int = 0
    due: datetime | None = None
    final: str | None = None
    in_flight: bool = False
    results: list[CallResult] = field(default_factory=list)


class Campaign:
    """Which contact to call when, and the final outcome of each."""

    def __init__(self, name: str, contacts: list[Contact], hours: CallingHours,
                 retry: RetryPolicy, do_not_call: Iterable[str] = (),
                 start: datetime | None = None) -> None:
        self.name, self.contacts, self.hours, self.retry = (name, contacts, hours,
                                                            retry)
        self.by_id = {c.id: c for c in contacts}
        self.status = Status.RUNNING
        self.progress = {c.id: _Progress(due=start) for c in contacts}
        self.journal: Journal | None = None
        blocked = set(do_not_call)
        for c in contacts:
            if c.number in blocked:
                self.progress[c.id].final = DO_NOT_CALL

    def attach(self, journal: Journal, now: datetime) -> None:
        """Journal every step from now on. A journal with progress in it (the
        campaign's process died) is replayed first: attempts, retries due,
        final outcomes; attempts without an outcome end as ``interrupted``
        (see ``workers.voice.journal``). Do-not-call numbers without a final
        outcome in the journal get theirs now."""
        finals = {f.contact: f.outcome for f in journal.finals()}
        dangling = []
        for a in journal.attempts():
            p = self.progress.get(a.contact)
            if p is None:
                raise CampaignError(f"{journal.path}: contact {a.contact!r} is not "
                                    "in the contacts file (it changed?)")
            p.attempts = max(p.attempts, a.attempt)
            if a.outcome is None:
                dangling.append(a)
                continue
            p.results.append(result_of(a.contact, a.record or {"outcome": a.outcome}))
            if a.ended_at and a.outcome in self.retry.outcomes:
                p.due = a.ended_at + self.retry.delay
        if journal.get("status") == Status.CANCELLED.value:
            self.status = Status.CANCELLED
        dangling_ids = {a.contact for a in dangling}
        for cid, p in self.progress.items():
            if cid in finals:
                p.final = finals[cid]
            elif cid in dangling_ids:
                p.final, p.in_flight = None, True  # ended just below
            elif p.final is not None or self.status is Status.CANCELLED:
                p.final = p.final or CANCELLED
                journal.final(cid, p.final, p.attempts, now)
        self.journal = journal
        for a in dangling:
            self.record(CallResult(a.contact, "", INTERRUPTED), now)

    # ------------------------------------------------------------- control
    def pause(self) -> None:
        if self.status is Status.RUNNING:
            self.status = Status.PAUSED

    def resume(self) -> None:
        if self.status is Status.PAUSED:
            self.status = Status.RUNNING

    def cancel(self) -> None:
        """No new calls; calls under way finish and count; the rest are
        ``cancelled``."""
        if self.status in (Status.RUNNING, Status.PAUSED):
            self.status = Status.CANCELLED
            when = datetime.now(self.hours.tz)
            if self.journal:
                self.journal.set("status", self.status.value)
            for cid, p in self.progress.items():
                if p.final is None and not p.in_flight:
                    p.final = CANCELLED
                    if self.journal:
                        self.journal.final(cid, CANCELLED, p.attempts, when)

    # ------------------------------------------------------------ dialling
    @property
    def in_flight(self) -> int:
        return sum(p.in_flight for p in self.progress.values())

    def due(self, now: datetime, limit: int) -> list[Contact]:
        """Up to ``limit`` contacts to call now (marked in flight)."""
        if self.status is not Status.RUNNING or not self.hours.allows(now):
            return []
        out: list[Contact] = []
        for c in self.contacts:
            if len(out) >= limit:
                break
            p = self.progress[c.id]
            if p.final is None and not p.in_flight and (p.due is None or p.due <= now):
                p.in_flight, p.attempts = True, p.attempts + 1
                if self.journal:  # before the call: a crash leaves a trace
                    self.journal.dialled(c.id, p.attempts, now)
                out.append(c)
        return out

    def record(self, result: CallResult, now: datetime) -> None:
        p = self.progress[result.key]
        p.in_flight = False
        p.results.append(result)
        if (result.outcome in self.retry.outcomes and p.attempts < self.retry.attempts
                and self.status is not Status.CANCELLED):
            p.due = now + self.retry.delay
        else:
            p.final = result.outcome
        if self.journal:
            self.journal.ended(result.key, p.attempts, result.outcome, now,
                               record_of(result), p.final)
        if self.done and self.status is not Status.CANCELLED:
            self.status = Status.DONE

    @property
    def done(self) -> bool:
        return all(p.final is not None for p in self.progress.values())

    def next_due(self) -> datetime | None:
        dues = [p.due for p in self.progress.values()
                if p.final is None and not p.in_flight and p.due is not None]
        return min(dues) if dues else None

    def counts(self) -> dict[str, int]:
        """Final outcomes so far, by outcome."""
        return dict(Counter(p.final for p in self.progress.values()
                            if p.final is not None))

    @property
    def finished(self) -> int:
        return sum(p.final is not None for p in self.progress.values())


def record_of(r: CallResult) -> dict[str, Any]:
    """A call's off-chain record: no number (the URI holds it)."""
    return {"outcome": r.outcome, "sip_status": r.sip_status,
            "setup_ms": r.setup_ms, "duration_s": round(r.duration_s, 2),
            "answers": r.answers, "recording_sm3": r.recording_sm3,
            "transcript": [[ln.who, ln.text] for ln in r.transcript]}


def result_of(contact_id: str, rec: dict[str, Any]) -> CallResult:
    """A ``CallResult`` back from ``record_of`` (the URI is not kept)."""
    return CallResult(contact_id, "", rec["outcome"], rec.get("sip_status", 0),
                      rec.get("setup_ms") is not None, rec.get("setup_ms"),
                      rec.get("duration_s", 0.0), rec.get("answers", {}),
                      [Line(w, t) for w, t in rec.get("transcript", [])],
                      recording_sm3=rec.get("recording_sm3"))


def contact_key(secret: bytes, contact_id: str) -> str:
    """What the chain knows of a contact: HMAC-SM3 of the department's contact
    id under the department's secret (kept off chain; see chaincode/calls.py)."""
    return hmac.new(secret, contact_id.encode(), "sm3").hexdigest()


class RecordSender:
    """Sends the journal's final outcomes to the ledger as numbered batches
    (``RecordCallOutcomes``): a full batch at once, what is pending at least
    every ``every_s``, and everything on ``flush(force=True)``. ``sent`` and
    ``batch`` start from the ledger's state (a resumed campaign asks it), so
    the journal's order (``Final.seq``, without gaps) says what is left."""

    def __init__(self, journal: Journal, submit: Callable[[dict[str, Any]], Any],
                 campaign: str, secret: bytes, sent: int = 0, batch: int = 0,
                 size: int = 500, every_s: float = 5.0) -> None:
        self.journal, self.submit, self.campaign = journal, submit, campaign
        self.secret, self.sent, self.batch = secret, sent, batch
        self.size, self.every_s = size, every_s
        self._last = _time.monotonic()

    def flush(self, force: bool = False) -> None:
        while True:
            pending = self.journal.finals(after=self.sent, limit=self.size)
            due = force or _time.monotonic() - self._last >= self.every_s
            if not pending or (len(pending) < self.size and not due):
                return
            self.submit({"campaign": self.campaign, "batch": self.batch, "calls": [
                {"contact": contact_key(self.secret, f.contact),
                 "outcome": f.outcome, "attempts": f.attempts,
                 "day": f.at.astimezone(CHINA).date().isoformat(),
                 "talk_s": min(f.talk_s, 86_400)} for f in pending]})
            self.sent, self.batch = pending[-1].seq, self.batch + 1
            self._last = _time.monotonic()


# ----------------------------------------------------------------- running
class Dialer(Protocol):
    """Places calls somewhere (this process, or Ray call workers)."""

    capacity: int

    def dial(self, contact_id: str, uri: str) -> None: ...

    def poll(self, wait_s: float) -> list[CallResult]: ...

    def close(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(CHINA)

    def sleep(self, seconds: float) -> None:
        import time as _time

        _time.sleep(seconds)


class Control(Protocol):
    """Where pause, resume and cancel come from (a file, a test)."""

    def read(self) -> str | None: ...


class FileControl:
    """``pause``, ``resume`` or ``cancel`` written to a file by
    ``cityunion voice campaign pause|resume|cancel``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)

    def read(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None


CONTROL_ACTIONS = ("pause", "resume", "cancel")


def request_control(path: Path, action: str) -> None:
    """Ask the process that drives a campaign to pause, resume or cancel it
    (its ``FileControl`` reads ``path``)."""
    if action not in CONTROL_ACTIONS:
        raise ValueError(f"action {action!r}: one of {', '.join(CONTROL_ACTIONS)}")
    path.write_text(action, encoding="utf-8")


def run_campaign(campaign: Campaign, dialer: Dialer, uri_of: Callable[[Contact], str],
                 clock: Clock, concurrency: int, control: Control | None = None,
                 on_change: Callable[[Campaign], None] | None = None,
                 idle_s: float = 1.0) -> dict[str, int]:
    """Call until every contact has a final outcome (or the campaign is
    cancelled and its calls under way have ended); returns the counts."""
    limit = max(1, min(concurrency, dialer.capacity))
    last_control: str | None = None
    while not (campaign.done and campaign.in_flight == 0):
        command = control.read() if control else None
        if command != last_control:
            last_control = command
            {"pause": campaign.pause, "resume": campaign.resume,
             "cancel": campaign.cancel}.get(command or "", lambda: None)()
            if on_change:
                on_change(campaign)
        now = clock.now()
        for c in campaign.due(now, limit - campaign.in_flight):
            dialer.dial(c.id, uri_of(c))
        if campaign.in_flight:
            results = dialer.poll(0.05)
            for r in results:
                campaign.record(r, clock.now())
            if results and on_change:
                on_change(campaign)
        elif not campaign.done:
            clock.sleep(idle_s)  # paused, night, or waiting for a retry
    return campaign.counts()


def progress_line(c: Campaign, width: int = 30) -> str:
    total = len(c.contacts)
    filled = int(width * c.finished / total)
    counts = " ".join(f"{k} {v}" for k, v in sorted(c.counts().items()))
    return (f"[{'#' * filled}{'.' * (width - filled)}] {c.finished}/{total} "
            f"{c.status.value}, {c.in_flight} calling  {counts}")
