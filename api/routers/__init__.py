"""One router per resource; ``ROUTERS`` is what the app includes."""

from __future__ import annotations

from api.routers import (
    blocks,
    call_campaigns,
    call_records,
    cameras,
    card_batches,
    card_blacklist,
    card_volumes,
    clearing_runs,
    code_schemes,
    code_usage,
    dashboard,
    departments,
    disputes,
    fee_rules,
    identifiers,
    issuer_keys,
    ledger,
    pages,
    risk_alerts,
    settlements,
    statistics,
    system,
    video_alerts,
    video_watches,
    voice_campaigns,
)

ROUTERS = [identifiers.router, departments.router, code_schemes.router,
           card_batches.router, card_volumes.router, clearing_runs.router,
           fee_rules.router, disputes.router, settlements.router, settlements.keys,
           card_blacklist.router, card_blacklist.signing, statistics.router,
           risk_alerts.router, issuer_keys.router, issuer_keys.urls,
           issuer_keys.bundle, issuer_keys.schemes, code_usage.router,
           cameras.router, video_alerts.router, video_watches.router,
           call_campaigns.router, call_records.router, voice_campaigns.router,
           blocks.router, ledger.router, dashboard.router, system.router,
           pages.router]
