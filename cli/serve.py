"""``cityunion serve``: the HTTP API with the projection follower."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Any

from cli.common import add_data_dir, add_ledger


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve", help="run the HTTP API (OpenAPI docs at /docs)",
        description="Run the HTTP API on this node, with the projection follower "
                    "keeping the read models up to date. Embedded by default: "
                    "SQLite read models, no servers needed.")
    add_data_dir(p)
    add_database(p)
    add_ledger(p)
    p.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="default: 8000")
    p.set_defaults(run=run)


def add_database(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database", default=os.environ.get("CITYUNION_DATABASE"),
        help="read models in PostgreSQL at this DSN (postgresql://...) instead "
             "of SQLite <data-dir>/readmodel.sqlite (default: $CITYUNION_DATABASE)")


def settings_of(args: argparse.Namespace, **extra: Any) -> Any:
    """API settings from the common options (unset ones keep their default)."""
    from api.settings import Settings

    given = {"data_dir": args.data_dir, "ledger_dsn": args.dsn,
             "database": args.database, "ledger": getattr(args, "ledger", None),
             "network": getattr(args, "network", None), **extra}
    return Settings(**{k: v for k, v in given.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.deps import Runtime

    settings = settings_of(args, host=args.host, port=args.port)
    # Reads wait on the GIL behind commands' Python work; a shorter switch
    # interval than the default 5 ms keeps their tail latency low.
    sys.setswitchinterval(0.001)
    runtime = Runtime.open(settings)  # fails here, in one line, not in uvicorn
    print(f"cityunion API on http://{settings.host}:{settings.port} (docs: /docs); "
          f"ledger: {settings.ledger} in "
          f"{settings.network if settings.ledger == 'fabric' else settings.data_dir}"
          "; read models: "
          f"{'PostgreSQL' if settings.database else settings.read_model_target}",
          flush=True)
    app = create_app(settings, runtime)
    # What exists now lives as long as the server: keep it out of the cyclic
    # collector's full passes, which otherwise stall requests under load.
    gc.freeze()
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning",
                access_log=False)
    return 0
