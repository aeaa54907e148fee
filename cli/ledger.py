"""``cityunion ledger verify|history|block``: what an auditor asks of the chain."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cli.common import add_data_dir, add_ledger, connect_args, print_json
from network.consortium import load_consortium


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ledger", help="audit the ledger (verify, history, block)",
                       description=__doc__)
    lsub = p.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    v = lsub.add_parser("verify", help="re-check the whole chain offline: hash "
                        "links, every signature, endorsement policy, every event; "
                        "exits 1 naming the first bad block/transaction")
    v.add_argument("--save", type=Path, metavar="DIR",
                   help="Fabric: keep the fetched blocks in DIR (one file each)")
    h = lsub.add_parser("history", help="every version of a world-state key with "
                        "tx id, creator and timestamp")
    h.add_argument("key", help="a world-state key, e.g. a~<aggregate id>")
    b = lsub.add_parser("block", help="one block: header, hash, signature and "
                        "transactions")
    b.add_argument("number", type=int, help="block number (0 is the genesis block)")
    for q in (v, h, b):
        add_data_dir(q)
        add_ledger(q)
        q.add_argument("--json", action="store_true", help="print JSON")
    v.set_defaults(run=run_verify)
    h.set_defaults(run=run_history)
    b.set_defaults(run=run_block)


def _read(args: argparse.Namespace, what: str, *params: Any) -> Any:
    """Ask the center's auditor identity's ledger client for ``what``."""
    connection = connect_args(args, read_only=True)
    try:
        auditor = connection.client(load_consortium().center.name, "auditor")
        return getattr(auditor, what)(*params)
    finally:
        connection.close()


def run_verify(args: argparse.Namespace) -> int:
    def progress(n: int, height: int) -> None:
        if sys.stderr.isatty() and (n % 100 == 0 or n == height - 1):
            print(f"\rverifying block {n + 1}/{height}", end="", file=sys.stderr)

    connection = connect_args(args, read_only=True)
    try:
        report = connection.verify(progress=progress, save_dir=args.save)
    finally:
        connection.close()
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if args.json:
        print_json(asdict(report))
    elif report.ok:
        print(f"ok: {report.blocks} blocks, {report.transactions} transactions, "
              f"{report.events} events verified")
    else:
        where = f"block {report.block_number}"
        if report.tx_id:
            where += f", transaction {report.tx_id}"
        print(f"FAILED at {where}: {report.error}")
    return 0 if report.ok else 1


def run_history(args: argparse.Namespace) -> int:
    versions = _read(args, "history", args.key)
    if args.json:
        print_json([asdict(v) for v in versions])
        return 0
    if not versions:
        print(f"no history for key {args.key!r}")
        return 1
    for v in versions:
        value = "<deleted>" if v.is_delete else v.value
        print(f"block {v.block_number} tx {v.tx_index} {v.tx_id}\n"
              f"  by {v.creator} at {v.timestamp}\n  value: {value}")
    return 0


def run_block(args: argparse.Namespace) -> int:
    block = _read(args, "block", args.number)
    if args.json:
        print_json(block)
        return 0
    print(f"block {block['number']}  time {block['timestamp']}\n"
          f"  hash          {block['hash']}\n"
          f"  previous hash {block['previous_hash']}\n"
          f"  data hash     {block['data_hash']}\n"
          f"  signature     {block['signature']}")
    if not block["transactions"]:
        print("  (configuration block)")
    for i, tx in enumerate(block["transactions"]):
        print(f"  [{i}] {tx['tx_id']} {tx['validation']}\n"
              f"      {tx['function']} by {tx['creator_msp']}:{tx['creator']} at "
              f"{tx['timestamp']}\n      events: {', '.join(tx['events']) or '-'}")
    return 0
