"""One router per resource; ``ROUTERS`` is what the app includes."""

from __future__ import annotations

from api.routers import (
    blocks,
    cameras,
    card_batches,
    card_volumes,
    clearing_runs,
    code_schemes,
    dashboard,
    departments,
    fee_rules,
    identifiers,
    ledger,
    pages,
    system,
    video_alerts,
)

ROUTERS = [identifiers.router, departments.router, code_schemes.router,
           card_batches.router, card_volumes.router, clearing_runs.router,
           fee_rules.router, cameras.router, video_alerts.router,
           blocks.router, ledger.router, dashboard.router, system.router,
           pages.router]
