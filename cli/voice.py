"""``cityunion voice``: call-script templates and outbound call campaigns."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.common import UserError, connect_args

if TYPE_CHECKING:
    from workers.voice.runner import RunError, StartOptions


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


def _options(args: argparse.Namespace) -> StartOptions:
    from workers.voice.runner import StartOptions

    return StartOptions(**{f.name: getattr(args, f.name)
                           for f in dataclasses.fields(StartOptions)})


def _fail(e: RunError) -> UserError:
    return UserError(f"--{e.field.replace('_', '-')}: {e}")


def run_campaign_control(args: argparse.Namespace) -> int:
    from workers.voice.campaign import request_control
    from workers.voice.runner import campaign_dir, lock

    d = campaign_dir(args.data_dir, args.name)
    if not d.is_dir():
        raise UserError(f"no campaign {args.name!r} in {args.data_dir}")
    if (d / "journal.sqlite").is_file():
        held = lock(d)
        if held is not None:  # nobody drives it: its process died
            return _control_stopped(args, d, held)
    request_control(d / "control", args.action)
    print(f"campaign {args.name}: {args.action} requested")
    return 0


def _control_stopped(args: argparse.Namespace, cdir: Path, held: Any) -> int:
    """Pause, resume or cancel a campaign that no process drives
    (``runner.reopen_stopped``)."""
    from workers.voice.runner import RunError, reopen_stopped

    try:
        run = reopen_stopped(cdir, held, args.name, args.action)
    except RunError as e:
        raise _fail(e) from None
    print(f"campaign {args.name}: "
          + ("cancelling" if args.action == "cancel" else "resuming")
          + " from its journal", file=sys.stderr)
    return _drive(args, run)


def run_campaign_start(args: argparse.Namespace) -> int:
    from workers.voice.runner import RunError, begin

    try:
        run = begin(_options(args), args.data_dir)
    except RunError as e:
        raise _fail(e) from None
    return _drive(args, run)


def _drive(args: argparse.Namespace, run: Any) -> int:
    """Run the campaign to its end on the ledger the options name, with a
    progress line; print its summary."""
    from workers.voice.campaign import Campaign, FileControl, progress_line
    from workers.voice.runner import RunError, drive

    if run.opts.asr_model is None:
        print("no Mandarin speech model configured: answers are understood by "
              "DTMF only", file=sys.stderr)
    tty = sys.stderr.isatty()

    def show(c: Campaign) -> None:
        print(("\r" if tty else "") + progress_line(c), end="" if tty else "\n",
              file=sys.stderr, flush=True)

    conn = connect_args(args)
    try:
        summary = drive(run, args.data_dir, conn, FileControl(run.cdir / "control"),
                        show)
    except RunError as e:
        raise _fail(e) from None
    finally:
        conn.close()
        if tty:
            print(file=sys.stderr)
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0


def run_campaign_report(args: argparse.Namespace) -> int:
    """Final outcomes, attempts, answers per question and set-up times, from
    ``calls.jsonl`` (the ledger has the counts only)."""
    from collections import Counter

    from workers.voice.runner import campaign_dir

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
