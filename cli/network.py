"""``cityunion network``: build the Fabric binaries; start, inspect and stop a
native Fabric 2.5 network of the consortium on 127.0.0.1."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cli.common import UserError, print_json

if TYPE_CHECKING:
    from network.launcher import Network

DEFAULT_DIR = "./cityunion-fabric"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("network", help="the Fabric network: binaries, up, status, "
                       "down", description=__doc__)
    net = p.add_subparsers(dest="network_command", required=True, metavar="ACTION")

    b = net.add_parser("binaries", help="build (or reuse) peer, orderer, configtxgen, "
                       "osnadmin, cryptogen 2.5.9 and fabric-ca-server/-client 1.5.15")
    b.add_argument("--cache", type=Path, help="where to keep them (default: "
                   "$CITYUNION_FABRIC_CACHE or ~/.cache/cityunion/fabric)")
    b.add_argument("--force", action="store_true", help="rebuild even if present")
    b.set_defaults(run=run_binaries)

    def with_dir(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dir", type=Path,
                       default=Path(os.environ.get("CITYUNION_NETWORK", DEFAULT_DIR)),
                       help="the network directory (default: $CITYUNION_NETWORK or "
                            f"{DEFAULT_DIR})")
        q.add_argument("--json", action="store_true", help="print JSON")

    u = net.add_parser("up", help="start the consortium's network (idempotent)")
    with_dir(u)
    u.add_argument("--orderers", type=int, choices=[1, 3], default=None,
                   help="Raft orderers of the center (default 3)")
    u.add_argument("--base-port", type=int, default=None,
                   help="first port of the network's range (default 7000; it uses "
                        "base..base+300)")
    u.set_defaults(run=run_up)

    s = net.add_parser("status", help="which of the network's processes run")
    with_dir(s)
    s.set_defaults(run=run_status)

    d = net.add_parser("down", help="stop every process the network started")
    with_dir(d)
    d.add_argument("--purge", action="store_true",
                   help="also delete the network directory (ledgers, keys, wallet)")
    d.set_defaults(run=run_down)


def run_binaries(args: argparse.Namespace) -> int:
    from network import binaries

    try:
        where = binaries.build(args.cache, binaries.terminal_progress(), args.force)
    except binaries.BuildError as e:
        raise UserError(str(e)) from None
    print(where)
    return 0


def _network(args: argparse.Namespace, base_port: int | None = None,
             orderers: int | None = None) -> Network:
    from network.launcher import Network, NetworkError

    try:
        return Network(args.dir, base_port, orderers)
    except NetworkError as e:
        raise UserError(str(e)) from None


def run_up(args: argparse.Namespace) -> int:
    from network.binaries import BuildError
    from network.processes import NetworkError

    net = _network(args, args.base_port, args.orderers)
    try:
        info = net.up(progress=lambda m: print(m, file=sys.stderr, flush=True))
    except (NetworkError, BuildError) as e:
        raise UserError(f"network up: {e}") from None
    if args.json:
        print_json(info)
        return 0
    print(f"channel {info['channel']}, chaincode {info['chaincode']} "
          f"({info['package_id']}), endorsement {info['endorsement_policy']}")
    for org, peer in info["peers"].items():
        print(f"  peer  {org:<9} {peer['address']}  (Gateway)")
    for o in info["orderers"]:
        print(f"  orderer {o['name']:<7} {o['address']}  admin {o['admin']}")
    for org, url in info["cas"].items():
        print(f"  CA    {org:<9} {url}")
    print(f"  chaincode service {info['chaincode_address']}")
    print(f"wallet: {info['wallet']}\nlogs:   {info['logs']}\n"
          f"client file: {net.layout.network_file}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    net = _network(args)
    if not net.state_file.exists():
        raise UserError(f"no network in {args.dir} (run `cityunion network up`)")
    rows = net.status()
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            state = f"running (pid {r['pid']})" if r["running"] else "stopped"
            print(f"{r['node']:<16} {r['kind']:<9} {r['address']:<16} {state}")
    return 0 if all(r["running"] for r in rows) else 1


def run_down(args: argparse.Namespace) -> int:
    net = _network(args)
    stopped = net.down(purge=args.purge)
    print(f"stopped {len(stopped)} processes" + (f": {', '.join(stopped)}"
                                                  if stopped else ""))
    return 0
