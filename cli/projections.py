"""``cityunion projections rebuild|status``: the read models."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from cli.common import UserError, add_data_dir, add_ledger, print_json
from cli.serve import add_database, settings_of


def register(sub: Any) -> None:
    p = sub.add_parser("projections", help="rebuild or inspect the read models")
    psub = p.add_subparsers(dest="projections_command", required=True,
                            metavar="ACTION")
    rebuild = psub.add_parser(
        "rebuild", help="empty the read models and project the whole ledger "
                        "again (stop `cityunion serve` first)")
    status = psub.add_parser("status", help="each projection's position, the "
                                            "ledger height and a failed event "
                                            "(exit status 1 while one is recorded)")
    for q, fn in ((rebuild, run_rebuild), (status, run_status)):
        add_data_dir(q)
        add_database(q)
        add_ledger(q)
        q.set_defaults(run=fn)


def _check_ledger(args: argparse.Namespace) -> None:
    from ledger.msp import Wallet

    if args.ledger == "fabric":
        return

    if not Wallet(args.data_dir).exists:
        raise UserError(f"no ledger in {args.data_dir} (pass --data-dir)")


def run_rebuild(args: argparse.Namespace) -> int:
    from api.gateway import Gateway
    from projections.db import Database
    from projections.follower import ProjectionFailed, rebuild

    _check_ledger(args)
    settings = settings_of(args)
    # Opening the node for writing takes the data dir's lock, so a running
    # server (whose follower would race the rebuild) makes this fail cleanly.
    gateway = Gateway.open(settings)
    try:
        db = Database(settings.read_model_target)
        try:
            started = time.perf_counter()
            result = rebuild(gateway.reader, db, gateway.verify_block)
            result["seconds"] = round(time.perf_counter() - started, 3)
        finally:
            db.close()
    except ProjectionFailed as e:
        raise UserError(f"rebuild failed, the read models are as they were: "
                        f"{e}") from None
    except Exception as e:  # the ledger or the database: one line, no traceback
        error = " ".join(str(e).split())
        raise UserError(f"rebuild failed, the read models are as they were: "
                        f"{type(e).__name__}: {error}") from None
    finally:
        gateway.close()
    print_json(result)
    return 0


def run_status(args: argparse.Namespace) -> int:
    """Positions and height as JSON; exit status 1, with the failure on stderr,
    while an event the follower could not apply is recorded."""
    from ledger.connect import connect
    from network.consortium import load_consortium
    from projections.db import Database
    from projections.follower import ensure_schema, read_failures, read_positions

    _check_ledger(args)
    settings = settings_of(args)
    connection = connect(settings.ledger, data_dir=settings.data_dir,
                         dsn=settings.ledger_dsn, network=settings.network,
                         read_only=True)
    db = Database(settings.read_model_target)
    try:
        ensure_schema(db)
        height = connection.client(load_consortium().center.name, "auditor").height()
        failures = read_failures(db)
        print_json({
            "ledger_height": height, "healthy": not failures,
            "positions": {k: list(v) for k, v in read_positions(db).items()},
            "failed": [{"projection": f.projection, "block": f.position.block,
                        "tx": f.position.tx, "event": f.position.event,
                        "tx_id": f.tx_id, "event_type": f.event_type,
                        "error": f.error, "failed_at": f.failed_at}
                       for f in failures]})
    finally:
        db.close()
        connection.close()
    if failures:
        print(f"cityunion: error: {failures[0]}", file=sys.stderr)
        return 1
    return 0
