"""Entry point: ``cityunion <command>``; ``cityunion <command> --help`` explains it."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from chaincode.errors import ContractError
from cli.common import UserError
from ledger.protocol import LedgerError

# Modules that add subcommands; each has register(subparsers).
AREAS = ["cli.demo", "cli.ledger", "cli.serve", "cli.token", "cli.projections",
         "cli.network", "cli.crypto", "cli.workers", "cli.video", "cli.voice",
         "cli.qr", "cli.qr_usage"]  # after cli.qr: it adds a verb to the qr command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cityunion",
        description="Interconnection ledger of the City Union city-card and "
                    "city-QR-code network.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in AREAS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # area not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (UserError, LedgerError, ContractError, ValueError, OSError) as e:
        print(f"cityunion: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:  # an optional extra is not installed
        print(f"cityunion: error: {args.command} needs the Python package "
              f"{e.name!r}; install the extras: pip install -e '.[api,postgres]'",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
