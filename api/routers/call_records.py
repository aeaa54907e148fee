"""Per-call records of outbound call campaigns: each contact's final outcome, by
campaign, outcome and day (the China day its last call ended). A contact is a
keyed hash (HMAC-SM3 under its department's off-chain secret), never a number.
Center admins and auditors read every city, city admins their city,
departments (and their terminals) their own department's records."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import CurrentIdentity, PageDep, ReadDB, scope_city
from api.problems import READ, Problem
from api.schemas import Page
from chaincode.calls import Outcome
from chaincode.contract import Name
from projections import queries
from projections.queries import Where

router = APIRouter(prefix="/api/call-records", tags=["voice"])


class CallRecordOut(BaseModel):
    campaign_id: UUID
    campaign: str
    city: str
    department: str
    contact: str
    outcome: str
    attempts: int
    day: date
    talk_s: int
    batch: int


@router.get("", responses=READ)
async def list_call_records(p: CurrentIdentity, read: ReadDB, page: PageDep,
                            campaign_id: UUID | None = None,
                            city: Name | None = None,
                            department: Name | None = None,
                            outcome: Annotated[Outcome | None, Query()] = None,
                            day: date | None = None) -> Page[CallRecordOut]:
    """Per-call records, newest day first; filter by campaign, outcome, day."""
    if p.department is not None:  # a department reads its own calls only
        if department not in (None, p.department):
            raise Problem(403, "forbidden-department",
                          f"a {p.role.value} token of {p.department} reads only "
                          f"{p.department}'s call records", "department",
                          p.department)
        department = p.department
    where = (Where().eq("city", scope_city(p, city)).eq("department", department)
             .eq("campaign_id", str(campaign_id) if campaign_id else None)
             .eq("outcome", outcome).eq("day", day.isoformat() if day else None))
    return Page[CallRecordOut].of(
        await read(queries.call_records, where, page.limit, page.offset))
