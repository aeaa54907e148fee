"""Running a campaign to its end, on the node's data directory and ledger:
what ``cityunion voice campaign start|resume|cancel`` and the API share.

``StartOptions`` is what a campaign was started with (kept in its journal, so
``resume`` can go on alone); ``begin`` checks them and opens a new campaign,
``reopen`` one whose process died; ``drive`` records the start on the ledger
(once), places the calls, sends the per-call records and then the counts,
which are the journal's. A campaign's files live in
``DATA_DIR/voice/campaigns/NAME``; a lock there says a process drives it.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from chaincode.encoding import sm3_hex
from chaincode.errors import Conflict
from ledger.connect import ensure_identity
from ledger.protocol import Connection
from workers.voice.campaign import (
    CallingHours,
    Campaign,
    CampaignError,
    Contact,
    Control,
    RecordSender,
    RetryPolicy,
    SystemClock,
    load_contacts,
    load_do_not_call,
    record_of,
    run_campaign,
)
from workers.voice.recordings import load_or_make_key
from workers.voice.robot import PJSUA_MAX_CALLS
from workers.voice.template import Template, TemplateError, load_template


class RunError(ValueError):
    """A campaign cannot start or go on: ``field`` names the bad input;
    ``exists``: the campaign exists already (or runs)."""

    def __init__(self, message: str, field: str = "name",
                 exists: bool = False) -> None:
        super().__init__(message)
        self.field, self.exists = field, exists


_PATHS = ("template", "contacts", "do_not_call", "asr_model")


@dataclass(frozen=True)
class StartOptions:
    """What a campaign is started with (``cityunion voice campaign start``'s
    options; paths are files on this node)."""

    name: str
    template: Path
    contacts: Path
    city: str
    department: str
    do_not_call: Path | None = None
    hours: str = "09:00-20:00"
    concurrency: int = 4
    workers: int = 1
    local: bool = False
    ray_address: str | None = None
    attempts: int = 3
    retry_after: float = 600.0
    gateway: str = "sip:{number}@127.0.0.1:5070"
    sip_port: int = 5300
    rtp_port: int = 40000
    ring_timeout: float | None = None
    asr_model: Path | None = None

    def to_journal(self) -> dict[str, Any]:
        return {k: str(v.resolve()) if isinstance(v, Path) else v
                for k, v in asdict(self).items()}

    @classmethod
    def from_journal(cls, saved: dict[str, Any]) -> StartOptions:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: Path(v) if k in _PATHS and v else v
                                  for k, v in saved.items() if k in known}
        return cls(**values)

    def check(self) -> None:
        """Refuse options that cannot run, naming the option."""
        from pydantic import TypeAdapter, ValidationError

        from chaincode.registry import Name

        try:
            TypeAdapter(Name).validate_python(self.name)
        except ValidationError:
            raise RunError(f"{self.name!r} is not a campaign name (accepted: 1-64 "
                           "letters, digits, _ . -, starting with a letter or "
                           "digit)", "name") from None
        try:
            dialled = self.gateway.format(number="0")
        except (ValueError, KeyError, IndexError):
            dialled = self.gateway
        if "{number}" not in self.gateway or dialled == self.gateway:
            raise RunError("must contain {number} and no other {...}, e.g. "
                           "sip:{number}@10.0.0.5:5060", "gateway")
        for opt in ("concurrency", "workers", "attempts"):
            if getattr(self, opt) < 1:
                raise RunError("must be at least 1", opt)
        lines = PJSUA_MAX_CALLS * (1 if self.local else self.workers)
        if self.concurrency > lines:
            raise RunError(
                f"{self.concurrency} calls at once need "
                f"{-(-self.concurrency // PJSUA_MAX_CALLS)} call workers "
                f"({PJSUA_MAX_CALLS} calls each); "
                + ("a local campaign runs one" if self.local
                   else f"workers is {self.workers}"), "concurrency")


@dataclass(frozen=True)
class Inputs:
    template: Template
    contacts: list[Contact]
    do_not_call: set[str]
    hours: CallingHours


def load_inputs(opts: StartOptions) -> Inputs:
    """The template, contacts, do-not-call list and calling hours; errors name
    the file and line (``RunError.field``: the option)."""
    field = "template"
    try:
        template = load_template(opts.template)
        field = "contacts"
        contacts = load_contacts(opts.contacts)
        field = "do_not_call"
        blocked = load_do_not_call(opts.do_not_call)
        field = "hours"
        hours = CallingHours.parse(opts.hours)
    except (TemplateError, CampaignError) as e:
        raise RunError(str(e).removeprefix(f"--{field}: "), field) from None
    if opts.asr_model is None and template.needs_speech:
        raise RunError(
            f"{opts.template}: template {template.name} has answers without a "
            "DTMF digit and needs a Mandarin speech model, but none is "
            "configured (--asr-model DIR); only DTMF-only templates run "
            "without one", "template")
    return Inputs(template, contacts, blocked, hours)


def campaign_dir(data_dir: Path, name: str) -> Path:
    return data_dir / "voice" / "campaigns" / name


def lock(cdir: Path) -> IO[str] | None:
    """An exclusive lock on the campaign while this process drives it (the
    kernel drops it when the process dies), or None if another holds it."""
    f = (cdir / "lock").open("a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def file_sm3(path: Path, field: str) -> str:
    try:
        return sm3_hex(path.read_bytes())
    except OSError as e:
        raise RunError(f"{path}: cannot read: {e}", field) from None


@dataclass
class Opened:
    """A campaign this process drives: its options, directory, journal and
    lock (``drive`` closes the journal and the lock)."""

    opts: StartOptions
    cdir: Path
    journal: Any  # workers.voice.journal.Journal
    held: IO[str]
    resumed: bool = False


def begin(opts: StartOptions, data_dir: Path) -> Opened:
    """Check ``opts`` and open a new campaign (nothing is written if they are
    bad)."""
    from workers.voice.journal import Journal

    opts.check()
    load_inputs(opts)
    cdir = campaign_dir(data_dir, opts.name)
    if (cdir / "journal.sqlite").is_file():
        raise RunError(f"campaign {opts.name!r} was already started in {data_dir} "
                       f"(to go on after a crash: cityunion voice campaign resume "
                       f"{opts.name})", exists=True)
    cdir.mkdir(parents=True, exist_ok=True)
    held = lock(cdir)
    if held is None:
        raise RunError(f"campaign {opts.name!r} is running", exists=True)
    journal = Journal(cdir / "journal.sqlite")
    journal.set("template_sm3", file_sm3(opts.template, "template"))
    journal.set("contacts_sm3", file_sm3(opts.contacts, "contacts"))
    journal.set("started_with", opts.to_journal())
    return Opened(opts, cdir, journal, held)


def reopen(cdir: Path, held: IO[str], name: str) -> Opened:
    """A campaign whose process died, from its journal (``held``: its lock)."""
    from workers.voice.journal import Journal

    journal = Journal(cdir / "journal.sqlite")
    started = journal.get("started_with")
    if started is None:
        raise RunError(f"campaign {name!r}: its journal has no start (started by "
                       "an older version?)")
    if journal.get("completed_tx"):
        raise RunError(f"campaign {name!r} has already completed (transaction "
                       f"{journal.get('completed_tx')})")
    opts = replace(StartOptions.from_journal(started), name=name)
    for key in ("template", "contacts"):
        if file_sm3(getattr(opts, key), key) != journal.get(f"{key}_sm3"):
            raise RunError(f"{getattr(opts, key)} changed since campaign {name!r} "
                           "started; put the original back", key)
    return Opened(opts, cdir, journal, held, resumed=True)


def reopen_stopped(cdir: Path, held: IO[str], name: str, action: str) -> Opened:
    """Resume or cancel a campaign that no process drives (the one that did
    died; ``held``: its lock): ``resume`` goes on from the journal; ``cancel``
    marks it cancelled there first, so that driving it places no call (what
    was under way ends ``interrupted``, the rest ``cancelled``) and puts the
    counts on the ledger; ``pause`` has nothing to pause."""
    from workers.voice.campaign import Status
    from workers.voice.journal import Journal

    if action == "pause":
        held.close()
        raise RunError(f"campaign {name!r} is not running (its process ended): "
                       f"nothing to pause; resume goes on from its journal, "
                       "cancel ends it")
    if action == "cancel":
        journal = Journal(cdir / "journal.sqlite")
        try:
            if not journal.get("completed_tx"):
                journal.set("status", Status.CANCELLED.value)
        finally:
            journal.close()
    return reopen(cdir, held, name)


def make_dialer(opts: StartOptions, spec: Any) -> Any:
    """The campaign's call workers: one in this process, or Ray actors."""
    from workers.voice.asr import AsrUnavailable
    from workers.voice.dialers import LocalDialer, RayDialer, connect_ray

    try:
        if opts.local:
            return LocalDialer(spec)
        connect_ray(opts.ray_address)
        return RayDialer(spec, opts.workers)
    except AsrUnavailable as e:
        raise RunError(str(e), "asr_model") from None


def drive(run: Opened, data_dir: Path, conn: Connection,
          control: Control | None = None,
          on_change: Callable[[Campaign], None] | None = None,
          on_campaign: Callable[[Campaign], None] | None = None) -> dict[str, Any]:
    """Run the campaign to its end: the start on the ledger (once), the calls,
    then the counts, which are the journal's; returns its summary. Closes the
    journal and the lock, not ``conn``. ``on_campaign`` sees the campaign
    before its first call (the API follows its progress)."""
    from workers.voice.dialers import EngineSpec

    opts, cdir, journal = run.opts, run.cdir, run.journal
    try:
        inputs = load_inputs(opts)
        template = inputs.template
        recording_key = None
        if template.record_audio and template.encrypt_audio:
            # Off chain, next to the campaign: deleting it forgets the recordings.
            recording_key = load_or_make_key(cdir / "recording.key").hex()
        spec = EngineSpec(template, str(data_dir / "voice" / "prompts"),
                          opts.sip_port, opts.rtp_port, opts.ring_timeout,
                          str(opts.asr_model) if opts.asr_model else None,
                          str(cdir / "recordings") if template.record_audio
                          else None, recording_key)
        campaign = Campaign(opts.name, inputs.contacts, inputs.hours,
                            RetryPolicy(opts.attempts,
                                        timedelta(seconds=opts.retry_after)),
                            inputs.do_not_call)
        clock = SystemClock()
        try:
            campaign.attach(journal, clock.now())
        except CampaignError as e:
            raise RunError(str(e), "contacts") from None
        if on_campaign:
            on_campaign(campaign)
        user = ensure_identity(conn, opts.city, "department", opts.department)
        ledger = conn.client(opts.city, user)
        sender: RecordSender | None = None

        def changed(c: Campaign) -> None:
            if on_change:
                on_change(c)
            if sender is not None:
                sender.flush()

        # The call workers first: if they cannot start, nothing is recorded.
        # None when nothing is left to call (cancelled while no process ran).
        dialer = None if campaign.done else make_dialer(opts, spec)
        try:
            if journal.get("started_tx") is None:
                try:
                    started = ledger.submit("StartCallCampaign", {
                        "campaign": opts.name, "template_name": template.name,
                        "template_version": template.version,
                        "template_sm3": template.sm3,
                        "contact_count": len(inputs.contacts)}).tx_id
                except Conflict:
                    if not run.resumed:
                        raise  # a new campaign whose name is taken
                    # Ours: recorded just before the process died.
                    started = "(before the crash)"
                journal.set("started_tx", started)
            started = journal.get("started_tx")
            state = ledger.evaluate("GetCallCampaign", {
                "city": opts.city, "department": opts.department,
                "campaign": opts.name})
            # The department's secret for the contacts' keyed hashes: off chain.
            secret = load_or_make_key(data_dir / "voice" / "keys" /
                                      f"{opts.city}.{opts.department}.key", 32)
            sender = RecordSender(
                journal, lambda a: ledger.submit("RecordCallOutcomes", a),
                opts.name, secret, sum(state.get("recorded", {}).values()),
                state.get("batches", 0))
            if dialer is not None:
                run_campaign(campaign, dialer,
                             lambda c: opts.gateway.format(number=c.number), clock,
                             opts.concurrency, control, changed)
        finally:
            if dialer is not None:
                dialer.close()
        counts = journal.counts()
        if counts != campaign.counts() or sum(counts.values()) != len(
                inputs.contacts):
            raise RunError(f"{journal.path}: the journal's outcomes {counts} do "
                           f"not match the campaign's {campaign.counts()}")
        write_calls(cdir / "calls.jsonl", campaign)
        if state["status"] == "started":
            sender.flush(force=True)
        try:
            completed = ledger.submit("CompleteCallCampaign", {
                "campaign": opts.name, "outcomes": counts}).tx_id
        except Conflict:
            completed = "(before the crash)"  # recorded; the journal missed it
        journal.set("completed_tx", completed)
    finally:
        journal.close()
        run.held.close()
    return {"campaign": opts.name, "status": campaign.status.value,
            "template": template.name, "version": template.version,
            "template_sm3": template.sm3, "contacts": len(inputs.contacts),
            "outcomes": counts, "started_tx": started, "completed_tx": completed}


def write_calls(path: Path, campaign: Campaign) -> None:
    """Per-call records, off chain: contact id, attempts, outcomes, transcript
    (the numbers stay in the contacts file)."""
    with path.open("w", encoding="utf-8") as f:
        for cid, p in campaign.progress.items():
            f.write(json.dumps({"contact": cid, "final": p.final, "attempts": [
                record_of(r) for r in p.results]}, ensure_ascii=False) + "\n")
