"""``cityunion voice``: call-script templates and outbound call campaigns."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from cli.common import UserError, connect_args


def register(sub: Any) -> None:
    p = sub.add_parser("voice", help="outbound voice robot: templates, campaigns")
    vsub = p.add_subparsers(dest="voice_command", required=True, metavar="AREA")
    tpl = vsub.add_parser("template", help="check call-script templates")
    tsub = tpl.add_subparsers(dest="template_command", required=True,
                              metavar="ACTION")
    check = tsub.add_parser("check", help="validate a template file (YAML or "
                                          "JSON); print its name, version and SM3")
    check.add_argument("file", type=Path)
    check.set_defaults(run=run_check)
    schema = tsub.add_parser("schema", help="print the template JSON Schema")
    schema.set_defaults(run=run_schema)
    register_campaign(vsub)


def run_check(args: argparse.Namespace) -> int:
    from workers.voice.template import TemplateError, load_template

    if not args.file.is_file():
        raise UserError(f"{args.file}: no such file")
    try:
        t = load_template(args.file)
    except TemplateError as e:
        raise UserError(str(e)) from None
    mode = "speech and DTMF" if t.needs_speech else "DTMF only"
    print(f"{args.file}: ok: {t.name} version {t.version} ({mode}, "
          f"{len(t.nodes)} nodes)\nsm3 {t.sm3}")
    return 0


def run_schema(args: argparse.Namespace) -> int:
    from workers.voice.template import template_schema

    print(json.dumps(template_schema(), ensure_ascii=False, indent=2))
    return 0


# ----------------------------------------------------------------- campaigns
def register_campaign(vsub: Any) -> None:
    from cli.common import add_data_dir, add_ledger

    camp = vsub.add_parser("campaign", help="run outbound call campaigns")
    csub = camp.add_subparsers(dest="campaign_command", required=True,
                               metavar="ACTION")
    start = csub.add_parser(
        "start", help="call every contact with a template, for a department; "
                      "records the start and the counts on the ledger")
    add_data_dir(start)
    add_ledger(start)
    start.add_argument("--template", type=Path, required=True)
    start.add_argument("--contacts", type=Path, required=True,
                       help="CSV with columns id,number")
    start.add_argument("--name", required=True, help="the campaign's name (unique "
                                                     "for the department)")
    start.add_argument("--city", required=True)
    start.add_argument("--department", required=True)
    start.add_argument("--do-not-call", type=Path,
                       help="numbers never to call, one a line")
    start.add_argument("--hours", default="09:00-20:00",
                       help="calling hours, China time (default 09:00-20:00)")
    start.add_argument("--concurrency", type=int, default=4)
    start.add_argument("--workers", type=int, default=1,
                       help="call worker processes (Ray actors), 4 calls each")
    start.add_argument("--local", action="store_true",
                       help="one call worker in this process, without Ray")
    start.add_argument("--ray-address", help="an existing Ray cluster "
                                             "(default: $RAY_ADDRESS or local)")
    start.add_argument("--attempts", type=int, default=3,
                       help="calls per contact at most (busy, no answer)")
    start.add_argument("--retry-after", type=float, default=600.0,
                       help="seconds between attempts (default 600)")
    start.add_argument("--gateway", default="sip:{number}@127.0.0.1:5070",
                       help="SIP URI to dial, {number} replaced")
    start.add_argument("--sip-port", type=int, default=5300)
    start.add_argument("--rtp-port", type=int, default=40000)
    start.add_argument("--ring-timeout", type=float,
                       help="seconds before an unanswered call counts as no "
                            "answer (default: the template's)")
    start.add_argument("--asr-model", type=Path,
                       help="a Mandarin speech model directory (Vosk), or an "
                            "English JSGF grammar FILE.gram (pocketsphinx); "
                            "without one, only DTMF answers are understood")
    start.set_defaults(run=run_campaign_start)
    report = csub.add_parser("report", help="summarise a campaign's per-call "
                                            "records (off chain)")
    add_data_dir(report)
    report.add_argument("name")
    report.set_defaults(run=run_campaign_report)
    for action, more in (("pause", ""),
                         ("resume", "; one whose process died goes on from its "
                                    "journal"),
                         ("cancel", "; one whose process died ends at once, "
                                    "its counts on the ledger")):
        p = csub.add_parser(action, help=f"{action} a running campaign{more}")
        add_data_dir(p)
        if action != "pause":
            add_ledger(p)
        p.add_argument("name")
        p.set_defaults(run=run_campaign_control, action=action)


# What ``start`` keeps in the journal so that ``resume`` can go on alone.
_STARTED_WITH = ("name", "template", "contacts", "do_not_call", "hours",
                 "concurrency", "workers", "local", "ray_address", "attempts",
                 "retry_after", "gateway", "sip_port", "rtp_port", "ring_timeout",
                 "asr_model", "city", "department")
_PATHS = ("template", "contacts", "do_not_call", "asr_model")


def campaign_dir(data_dir: Path, name: str) -> Path:
    return data_dir / "voice" / "campaigns" / name


def _lock(cdir: Path) -> Any:
    """An exclusive lock on the campaign while this process drives it (the
    kernel drops it when the process dies), or None if another holds it."""
    import fcntl

    f = (cdir / "lock").open("a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def run_campaign_control(args: argparse.Namespace) -> int:
    d = campaign_dir(args.data_dir, args.name)
    if not d.is_dir():
        raise UserError(f"no campaign {args.name!r} in {args.data_dir}")
    if (d / "journal.sqlite").is_file():
        lock = _lock(d)
        if lock is not None:  # nobody drives it: its process died
            return _control_stopped(args, d, lock)
    (d / "control").write_text(args.action, encoding="utf-8")
    print(f"campaign {args.name}: {args.action} requested")
    return 0


def _control_stopped(args: argparse.Namespace, cdir: Path, lock: Any) -> int:
    """Pause, resume or cancel a campaign that no process drives (the one
    that did died): ``resume`` goes on from the journal; ``cancel`` marks it
    cancelled there and finishes it the same way (no call is placed: what was
    under way ends ``interrupted``, the rest ``cancelled``, and the counts go
    on the ledger); ``pause`` has nothing to pause."""
    from workers.voice.campaign import Status
    from workers.voice.journal import Journal

    if args.action == "pause":
        lock.close()
        raise UserError(f"campaign {args.name!r} is not running (its process "
                        f"ended): nothing to pause; `cityunion voice campaign "
                        f"resume {args.name}` goes on from its journal, `cancel "
                        f"{args.name}` ends it")
    if args.action == "cancel":
        journal = Journal(cdir / "journal.sqlite")
        try:
            if not journal.get("completed_tx"):
                journal.set("status", Status.CANCELLED.value)
        finally:
            journal.close()
    return _resume(args, cdir, lock)


def _file_sm3(path: Path) -> str:
    from chaincode.encoding import sm3_hex

    try:
        return sm3_hex(path.read_bytes())
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e}") from None


def _resume(args: argparse.Namespace, cdir: Path, lock: Any) -> int:
    from workers.voice.journal import Journal

    journal = Journal(cdir / "journal.sqlite")
    started = journal.get("started_with")
    if started is None:
        raise UserError(f"campaign {args.name!r}: its journal has no start "
                        "(started by an older version?)")
    if journal.get("completed_tx"):
        raise UserError(f"campaign {args.name!r} has already completed "
                        f"(transaction {journal.get('completed_tx')})")
    run = argparse.Namespace(**{k: Path(v) if k in _PATHS and v else v
                                for k, v in started.items()})
    for key in ("data_dir", "dsn", "ledger", "network"):
        setattr(run, key, getattr(args, key))
    for key in ("template", "contacts"):
        if _file_sm3(getattr(run, key)) != journal.get(f"{key}_sm3"):
            raise UserError(f"--{key}: {getattr(run, key)} changed since campaign "
                            f"{args.name!r} started; put the original back")
    print(f"campaign {args.name}: "
          + ("cancelling" if args.action == "cancel" else "resuming")
          + " from its journal", file=sys.stderr)
    return _drive(run, cdir, journal, lock, resumed=True)


def run_campaign_start(args: argparse.Namespace) -> int:
    from pydantic import TypeAdapter, ValidationError

    from chaincode.registry import Name
    from workers.voice.journal import Journal
    from workers.voice.robot import PJSUA_MAX_CALLS

    try:
        TypeAdapter(Name).validate_python(args.name)
    except ValidationError:
        raise UserError(f"--name: {args.name!r} is not a campaign name (accepted: "
                        "1-64 letters, digits, _ . -, starting with a letter or "
                        "digit)") from None
    if "{number}" not in args.gateway:
        raise UserError("--gateway: must contain {number}, e.g. "
                        "sip:{number}@10.0.0.5:5060")
    for opt in ("concurrency", "workers", "attempts"):
        if getattr(args, opt) < 1:
            raise UserError(f"--{opt}: must be at least 1")
    lines = PJSUA_MAX_CALLS * (1 if args.local else args.workers)
    if args.concurrency > lines:
        raise UserError(
            f"--concurrency: {args.concurrency} calls at once need "
            f"{-(-args.concurrency // PJSUA_MAX_CALLS)} call workers "
            f"({PJSUA_MAX_CALLS} calls each); "
            + ("--local runs one" if args.local else f"--workers is {args.workers}"))
    _load_inputs(args)  # refuse bad input before anything is written
    cdir = campaign_dir(args.data_dir, args.name)
    if (cdir / "journal.sqlite").is_file():
        raise UserError(f"--name: campaign {args.name!r} was already started in "
                        f"{args.data_dir} (to go on after a crash: cityunion "
                        f"voice campaign resume {args.name})")
    cdir.mkdir(parents=True, exist_ok=True)
    lock = _lock(cdir)
    if lock is None:
        raise UserError(f"--name: campaign {args.name!r} is running")
    journal = Journal(cdir / "journal.sqlite")
    journal.set("template_sm3", _file_sm3(args.template))
    journal.set("contacts_sm3", _file_sm3(args.contacts))
    journal.set("started_with", {
        k: str(getattr(args, k).resolve()) if k in _PATHS and getattr(args, k)
        else getattr(args, k) for k in _STARTED_WITH})
    return _drive(args, cdir, journal, lock)


def _load_inputs(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """The template, contacts, do-not-call list and calling hours; errors
    name the file and field."""
    from workers.voice.campaign import (
        CallingHours,
        CampaignError,
        load_contacts,
        load_do_not_call,
    )
    from workers.voice.template import TemplateError, load_template

    try:
        template = load_template(args.template)
        contacts = load_contacts(args.contacts)
        blocked = load_do_not_call(args.do_not_call)
        hours = CallingHours.parse(args.hours)
    except (TemplateError, CampaignError) as e:
        raise UserError(str(e)) from None
    if args.asr_model is None and template.needs_speech:
        raise UserError(
            f"{args.template}: template {template.name} has answers without a "
            "DTMF digit and needs a Mandarin speech model, but none is "
            "configured (--asr-model DIR); only DTMF-only templates run "
            "without one")
    return template, contacts, blocked, hours


def _drive(args: argparse.Namespace, cdir: Path, journal: Any, lock: Any,
           resumed: bool = False) -> int:
    """Run the campaign to its end with ``journal`` (new or resumed): the
    start on the ledger (once), the calls, then the counts, which are the
    journal's."""
    from chaincode.errors import Conflict
    from ledger.connect import ensure_identity
    from workers.voice.campaign import (
        Campaign,
        CampaignError,
        FileControl,
        RecordSender,
        RetryPolicy,
        SystemClock,
        progress_line,
        run_campaign,
    )
    from workers.voice.dialers import EngineSpec
    from workers.voice.recordings import load_or_make_key

    template, contacts, blocked, hours = _load_inputs(args)
    if args.asr_model is None:
        print("no Mandarin speech model configured: answers are understood by "
              "DTMF only", file=sys.stderr)
    recording_key = None
    if template.record_audio and template.encrypt_audio:
        # Off chain, next to the campaign: deleting it forgets the recordings.
        recording_key = load_or_make_key(cdir / "recording.key").hex()
    spec = EngineSpec(template, str(args.data_dir / "voice" / "prompts"),
                      args.sip_port, args.rtp_port, args.ring_timeout,
                      str(args.asr_model) if args.asr_model else None,
                      str(cdir / "recordings") if template.record_audio else None,
                      recording_key)
    campaign = Campaign(args.name, contacts, hours,
                        RetryPolicy(args.attempts,
                                    timedelta(seconds=args.retry_after)),
                        blocked)
    clock = SystemClock()
    try:
        campaign.attach(journal, clock.now())
    except CampaignError as e:
        raise UserError(str(e)) from None
    conn = connect_args(args)
    try:
        user = ensure_identity(conn, args.city, "department", args.department)
        ledger = conn.client(args.city, user)
        tty = sys.stderr.isatty()
        sender: RecordSender | None = None

        def show(c: Campaign) -> None:
            print(("\r" if tty else "") + progress_line(c), end="" if tty else "\n",
                  file=sys.stderr, flush=True)
            if sender is not None:
                sender.flush()

        # The call workers first: if they cannot start, nothing is recorded.
        # None when nothing is left to call (cancelled while no process ran).
        dialer = None if campaign.done else _dialer(args, spec)
        try:
            if journal.get("started_tx") is None:
                try:
                    started = ledger.submit("StartCallCampaign", {
                        "campaign": args.name, "template_name": template.name,
                        "template_version": template.version,
                        "template_sm3": template.sm3,
                        "contact_count": len(contacts)}).tx_id
                except Conflict:
                    if not resumed:
                        raise  # a new campaign whose name is taken
                    # Ours: recorded just before the process died.
                    started = "(before the crash)"
                journal.set("started_tx", started)
            started = journal.get("started_tx")
            state = ledger.evaluate("GetCallCampaign", {
                "city": args.city, "department": args.department,
                "campaign": args.name})
            # The department's secret for the contacts' keyed hashes: off chain.
            secret = load_or_make_key(args.data_dir / "voice" / "keys" /
                                      f"{args.city}.{args.department}.key", 32)
            sender = RecordSender(
                journal, lambda a: ledger.submit("RecordCallOutcomes", a),
                args.name, secret, sum(state.get("recorded", {}).values()),
                state.get("batches", 0))
            if dialer is not None:
                run_campaign(campaign, dialer,
                             lambda c: args.gateway.format(number=c.number), clock,
                             args.concurrency, FileControl(cdir / "control"), show)
        finally:
            if dialer is not None:
                dialer.close()
            if tty:
                print(file=sys.stderr)
        counts = journal.counts()
        if counts != campaign.counts() or sum(counts.values()) != len(contacts):
            raise UserError(f"{journal.path}: the journal's outcomes {counts} do "
                            f"not match the campaign's {campaign.counts()}")
        _write_calls(cdir / "calls.jsonl", campaign)
        if sender is not None and state["status"] == "started":
            sender.flush(force=True)
        try:
            completed = ledger.submit("CompleteCallCampaign", {
                "campaign": args.name, "outcomes": counts}).tx_id
        except Conflict:
            completed = "(before the crash)"  # recorded; the journal missed it
        journal.set("completed_tx", completed)
    finally:
        conn.close()
        journal.close()
        lock.close()
    print(json.dumps({"campaign": args.name, "status": campaign.status.value,
                      "template": template.name, "version": template.version,
                      "template_sm3": template.sm3, "contacts": len(contacts),
                      "outcomes": counts, "started_tx": started,
                      "completed_tx": completed}, ensure_ascii=False, indent=2))
    return 0


def _dialer(args: argparse.Namespace, spec: Any) -> Any:
    """The campaign's call workers: one in this process, or Ray actors."""
    from workers.voice.asr import AsrUnavailable
    from workers.voice.dialers import LocalDialer, RayDialer, connect_ray

    try:
        if args.local:
            return LocalDialer(spec)
        connect_ray(args.ray_address)
        return RayDialer(spec, args.workers)
    except AsrUnavailable as e:
        raise UserError(str(e)) from None


def _write_calls(path: Path, campaign: Any) -> None:
    """Per-call records, off chain: contact id, attempts, outcomes, transcript
    (the numbers stay in the contacts file)."""
    from workers.voice.campaign import record_of

    with path.open("w", encoding="utf-8") as f:
        for cid, p in campaign.progress.items():
            f.write(json.dumps({"contact": cid, "final": p.final, "attempts": [
                record_of(r) for r in p.results]}, ensure_ascii=False) + "\n")


def run_campaign_report(args: argparse.Namespace) -> int:
    """Final outcomes, attempts, answers per question and set-up times, from
    ``calls.jsonl`` (the ledger has the counts only)."""
    from collections import Counter

    path = campaign_dir(args.data_dir, args.name) / "calls.jsonl"
    if not path.is_file():
        raise UserError(f"no call records of campaign {args.name!r} in "
                        f"{args.data_dir} (it has not finished there)")
    finals: Counter[str] = Counter()
    answers: dict[str, Counter[str]] = {}
    setups: list[float] = []
    attempts = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        finals[rec["final"]] += 1
        attempts += len(rec["attempts"])
        for a in rec["attempts"]:
            if a["setup_ms"] is not None:
                setups.append(a["setup_ms"])
            for node, intent in a["answers"].items():
                answers.setdefault(node, Counter())[intent] += 1
    setups.sort()

    def pct(q: float) -> float | None:
        return round(setups[min(len(setups) - 1, int(q * len(setups)))], 2) \
            if setups else None

    print(json.dumps({"campaign": args.name, "contacts": sum(finals.values()),
                      "calls": attempts, "outcomes": dict(finals),
                      "answers": {k: dict(v) for k, v in answers.items()},
                      "setup_ms": {"p50": pct(0.5), "p99": pct(0.99)}},
                     ensure_ascii=False, indent=2))
    return 0
