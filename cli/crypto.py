"""``cityunion crypto``: build the gmsm backend's SM2 library (Go), list the
crypto backends."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import UserError, print_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("crypto", help="the SM2/SM3/SM4 backends: build gmsm, list",
                       description=__doc__)
    act = p.add_subparsers(dest="crypto_command", required=True, metavar="ACTION")

    b = act.add_parser("build", help="build (or reuse) libcusm.so, the gmsm "
                       "backend's SM2 (github.com/emmansun/gmsm, pinned by go.sum)")
    b.add_argument("--cache", type=Path, help="where to keep it (default: "
                   "$CITYUNION_GMSM_CACHE or ~/.cache/cityunion/gmsm)")
    b.add_argument("--force", action="store_true", help="rebuild even if present")
    b.set_defaults(run=run_build)

    ls = act.add_parser("backends", help="which backends are available here, and "
                        "which get_backend() and fastest_verifier() pick")
    ls.set_defaults(run=run_backends)


def run_build(args: argparse.Namespace) -> int:
    from ledger.crypto import gmsm_build
    from network.binaries import terminal_progress

    try:
        where = gmsm_build.build(args.cache, terminal_progress(), args.force)
    except gmsm_build.BuildError as e:
        raise UserError(f"gmsm library: {e}") from None
    print(where)
    return 0


def run_backends(args: argparse.Namespace) -> int:
    from ledger import crypto

    print_json({"available": crypto.available_backends(),
                "default": crypto.get_backend().name,
                "fastest_verifier": crypto.fastest_verifier().name})
    return 0
