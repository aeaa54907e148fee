"""The FastAPI application: routers, problem+json errors, and the lifespan that
opens the ledger node, the read models and the projection follower; the
cockpit page at /dashboard with its files under /static."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api import openapi, problems
from api.deps import Runtime
from api.limits import DEFAULT_MAX_BODY, BodyLimit
from api.routers import ROUTERS, card_batches, code_usage, pages
from api.settings import Settings

DESCRIPTION = """
Commands (POST) are chaincode transactions submitted as the bearer token's
identity; they answer with the tx id, the block number and the recorded events.
Queries (GET) read the projections. Errors are `application/problem+json` and
name the field. Tokens come from `cityunion token issue`.

A command may carry an `Idempotency-Key` header: it then commits at most once
for that key, and a retry with the same key and body is answered with the
first receipt. Request bodies are limited to 1 MiB (card batches and code
usage reports: 8 MiB).
"""


def create_app(settings: Settings | None = None,
               runtime: Runtime | None = None) -> FastAPI:
    """The API for one node. The runtime (ledger node, read models, follower)
    is opened when the app starts, unless an open one is given; either way it
    is closed when the app stops."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = runtime or Runtime.open(settings)
        try:
            yield
        finally:
            app.state.runtime.close()

    app = FastAPI(title="cityunion", version="0.1.0", description=DESCRIPTION,
                  lifespan=lifespan)
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", pages.static_files(), name="static")
    app.add_middleware(BodyLimit, default=DEFAULT_MAX_BODY,
                       larger={card_batches.router.prefix: card_batches.MAX_BODY,
                               code_usage.router.prefix: code_usage.MAX_BODY})

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi.exact(app)
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
    return app
