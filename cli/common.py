"""What every subcommand shares: the data directory option and clean errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ledger.connect import DEFAULT_DATA_DIR


class UserError(Exception):
    """An error the user can fix; printed as one line, never a traceback."""


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path,
        default=Path(os.environ.get("CITYUNION_DATA_DIR", DEFAULT_DATA_DIR)),
        help="where the consortium's keys and the embedded ledger live "
             "(default: $CITYUNION_DATA_DIR or ./cityunion-data)")
    parser.add_argument(
        "--dsn", default=os.environ.get("CITYUNION_LEDGER_DSN"),
        help="store the embedded ledger in PostgreSQL at this DSN instead of "
             "SQLite (default: $CITYUNION_LEDGER_DSN)")


def add_ledger(parser: argparse.ArgumentParser) -> None:
    """``--ledger embedded|fabric`` and ``--network DIR``."""
    parser.add_argument(
        "--ledger", choices=["embedded", "fabric"],
        default=os.environ.get("CITYUNION_LEDGER", "embedded"),
        help="which ledger (default: $CITYUNION_LEDGER or embedded)")
    parser.add_argument(
        "--network", type=Path,
        default=Path(os.environ["CITYUNION_NETWORK"])
        if os.environ.get("CITYUNION_NETWORK") else None,
        help="with --ledger fabric: the directory `cityunion network up --dir` "
             "wrote (default: $CITYUNION_NETWORK)")


def connect_args(args: argparse.Namespace, read_only: bool = False) -> Any:
    """The ``Connection`` the common options name."""
    from ledger.connect import connect

    return connect(args.ledger, data_dir=args.data_dir, dsn=args.dsn,
                   network=args.network, read_only=read_only)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n")
