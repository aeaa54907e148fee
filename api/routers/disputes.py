"""Disputed card records and how each resolved: disputed by the issuer,
withdrawn (accepted, or decided for the issuer), contested with evidence, or
upheld for the acquirer."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import CurrentIdentity, PageDep, ReadDB, scope_city
from api.problems import READ
from api.schemas import Day, Page
from chaincode.contract import Name
from projections import queries
from projections.queries import INVOLVES_DISPUTE, Where

router = APIRouter(prefix="/api/disputes", tags=["card transactions"])


class DisputeOut(BaseModel):
    batch_id: str
    record_id: str
    business_day: str
    acquirer_city: str
    issuer_city: str
    amount_fen: int
    status: str
    reason: str
    evidence_sm3: str | None
    note: str | None
    decision: str | None
    decision_reason: str | None
    disputed_at: str
    updated_at: str


@router.get("", responses=READ)
async def list_disputes(
        p: CurrentIdentity, read: ReadDB, page: PageDep,
        status: Literal["disputed", "contested", "withdrawn", "upheld"] | None = None,
        business_day: Day | None = None, city: Name | None = None,
) -> Page[DisputeOut]:
    """Disputed records, latest change first; ``city`` matches the acquirer or
    the issuer. Non-center roles see their own city's."""
    involved = scope_city(p, city)
    where = (Where().eq("status", status).eq("business_day", business_day)
             .cond(INVOLVES_DISPUTE, involved, involved))
    return Page[DisputeOut].of(
        await read(queries.disputes, where, page.limit, page.offset))
