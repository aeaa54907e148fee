"""One router per resource; ``ROUTERS`` is what the app includes."""

from __future__ import annotations

from api.routers import (
    blocks,
    call_campaigns,
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
)

ROUTERS = [identifiers.router, departments.router, code_schemes.router,
           card_batches.router, card_volumes.router, clearing_runs.router,
           fee_rules.router, call_campaigns.router,
           blocks.router, ledger.router, dashboard.router, system.router,
           pages.router]
