"""``cityunion workers up|status|down``: the workers' local Ray cluster."""

from __future__ import annotations

import argparse
from typing import Any

from cli.common import UserError, add_data_dir, print_json


def register(sub: Any) -> None:
    p = sub.add_parser("workers", help="start, inspect or stop the local Ray "
                                       "cluster the video and voice workers use")
    wsub = p.add_subparsers(dest="workers_command", required=True, metavar="ACTION")
    up = wsub.add_parser("up", help="start a Ray head here (idempotent); workers "
                                    "of this data directory then join it")
    up.add_argument("--num-cpus", type=int, default=None,
                    help="CPUs Ray may schedule on (default: all)")
    up.add_argument("--port", type=int, default=None,
                    help="the head's port (default: a free one)")
    status = wsub.add_parser("status", help="the running cluster "
                                            "(exit status 1 if none)")
    down = wsub.add_parser("down", help="stop the cluster (SIGTERM to its head)")
    for q, fn in ((up, run_up), (status, run_status), (down, run_down)):
        add_data_dir(q)
        q.set_defaults(run=fn)


def run_up(args: argparse.Namespace) -> int:
    from workers.cluster import ClusterError, up

    if args.num_cpus is not None and args.num_cpus < 1:
        raise UserError(f"--num-cpus {args.num_cpus}: give 1 or more")
    try:
        cluster = up(args.data_dir, args.num_cpus, args.port)
    except ClusterError as e:
        raise UserError(str(e)) from None
    print_json({"running": True, **cluster.public()})
    return 0


def run_status(args: argparse.Namespace) -> int:
    from workers.cluster import load

    cluster = load(args.data_dir)
    print_json({"running": cluster is not None,
                **(cluster.public() if cluster else {})})
    return 0 if cluster else 1


def run_down(args: argparse.Namespace) -> int:
    from workers.cluster import ClusterError, down

    try:
        was = down(args.data_dir)
    except ClusterError as e:
        raise UserError(str(e)) from None
    print_json({"stopped": was})
    return 0
