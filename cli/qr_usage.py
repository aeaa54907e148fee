"""``cityunion qr report``: a terminal reports the scans its log holds
(ledger.qrcode.usage.ScanLog) to the ledger, as ReportCodeUsage of at most
10,000 scans each, with a progress line. Scans are marked reported only once
the ledger took them; an interrupted run resumes where it stopped."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from chaincode.contract import Name
from cli.common import UserError, add_data_dir, add_ledger, connect_args
from ledger.connect import ensure_identity


def _qr_verbs(sub: Any) -> Any:
    """The ``qr`` command's verbs (cli.qr registers the command itself)."""
    qr = sub.choices.get("qr")
    if qr is None:
        raise RuntimeError("cli.qr must register the qr command before cli.qr_usage")
    return next(a for a in qr._actions
                if isinstance(a, argparse._SubParsersAction))


def register(sub: Any) -> None:
    report = _qr_verbs(sub).add_parser(
        "report", help="report the scans a terminal logged", description=__doc__)
    add_data_dir(report)
    add_ledger(report)
    report.add_argument("--log", type=Path, required=True,
                        help="the terminal's scan log directory")
    report.add_argument("--terminal", required=True,
                        help="the terminal's id, as its reports name it")
    report.add_argument("--city", required=True,
                        help="the terminal's city (its terminal identity submits)")
    report.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    from pydantic import TypeAdapter, ValidationError

    from ledger.qrcode.usage import FILE_NAME, ScanLog

    try:
        TypeAdapter(Name).validate_python(args.terminal)
    except ValidationError:
        raise UserError("--terminal: letters, digits, '_', '.' and '-', up to 64 "
                        f"characters, not {args.terminal!r}") from None
    if not (args.log / FILE_NAME).exists():
        raise UserError(f"--log: no scan log in {args.log} (no {FILE_NAME})")
    with ScanLog(args.log) as log:
        pending = log.pending()
        if not pending:
            print("no scans to report")
            return 0
        conn = connect_args(args)
        try:
            ledger = conn.client(args.city, ensure_identity(conn, args.city,
                                                            "terminal", None))

            def progress(done: int, total: int) -> None:
                print(f"\rreported {done}/{total} scans", end="", file=sys.stderr,
                      flush=True)

            done = log.report(lambda a: ledger.submit("ReportCodeUsage", a),
                              args.terminal, progress=progress)
        finally:
            conn.close()
    print(file=sys.stderr)
    print(f"reported {done} scan(s) of terminal {args.terminal} ({args.city})")
    return 0
