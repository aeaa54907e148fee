"""Cross-city card volumes per business day and city pair (acquirer → issuer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import CurrentIdentity, PageDep, ReadDB, scope_city
from api.problems import READ
from api.schemas import Day, Page
from chaincode.contract import Name
from projections import queries
from projections.queries import Where

router = APIRouter(prefix="/api/card-volumes", tags=["card transactions"])


class CardVolumeOut(BaseModel):
    business_day: str
    acquirer_city: str
    issuer_city: str
    record_count: int
    amount_fen: int
    confirmed_count: int
    confirmed_fen: int
    disputed_count: int
    disputed_fen: int


@router.get("", responses=READ)
async def list_volumes(p: CurrentIdentity, read: ReadDB, page: PageDep,
                       day_from: Annotated[Day | None, Query(alias="from")] = None,
                       day_to: Annotated[Day | None, Query(alias="to")] = None,
                       acquirer_city: Name | None = None,
                       issuer_city: Name | None = None,
                       city: Name | None = None) -> Page[CardVolumeOut]:
    """Volumes for business days ``from..to`` (inclusive); ``city`` matches
    either side. Non-center roles see pairs that involve their city only."""
    involved = scope_city(p, city)
    where = (Where().cond("business_day >= ?", day_from)
             .cond("business_day <= ?", day_to).eq("acquirer_city", acquirer_city)
             .eq("issuer_city", issuer_city)
             .cond("(acquirer_city = ? OR issuer_city = ?)", involved, involved))
    return Page[CardVolumeOut].of(
        await read(queries.card_volumes, where, page.limit, page.offset))
