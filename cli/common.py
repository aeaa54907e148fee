"""What every subcommand shares: the data directory option and clean errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = "./cityunion-data"


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


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n")
