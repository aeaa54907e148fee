"""Risk monitoring (风险管控): records worth a person's look, found by the
read side's rules (projections.views: impossible travel between cities, an
amount far outside its scene's range, a terminal repeating a record), each with
the records behind it."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import CurrentIdentity, PageDep, ReadDB, scope_city
from api.problems import READ
from api.schemas import Day, Page
from chaincode.contract import Name
from projections import queries
from projections.queries import Where

router = APIRouter(prefix="/api/risk-alerts", tags=["card transactions"])
Kind = Literal["impossible_travel", "unusual_amount", "terminal_repeat"]


class RiskAlertOut(BaseModel):
    id: str
    kind: str
    business_day: str
    acquirer_city: str
    issuer_city: str
    subject: str  # the card's hash, or the terminal
    detail: str
    records: list[dict[str, Any]]
    detected_at: str


@router.get("", responses=READ)
async def list_alerts(p: CurrentIdentity, read: ReadDB, page: PageDep,
                      kind: Kind | None = None, business_day: Day | None = None,
                      city: Name | None = None) -> Page[RiskAlertOut]:
    """Alerts, newest first; ``city`` matches the acquirer or the issuer.
    Non-center roles see their own city's."""
    involved = scope_city(p, city)
    where = (Where().eq("kind", kind).eq("business_day", business_day)
             .cond("(acquirer_city = ? OR issuer_city = ?)", involved, involved))
    return Page[RiskAlertOut].of(
        await read(queries.risk_alerts, where, page.limit, page.offset))
