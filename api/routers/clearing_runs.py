"""Daily clearing (清分结算): run it for a business day; read runs and the net
position of every city."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import CommandsDep, CurrentIdentity, PageDep, ReadDB
from api.problems import AUTHENTICATED, COMMAND, READ_ONE
from api.schemas import CommandResult, Day, Page, Request
from projections import queries
from projections.queries import Where

router = APIRouter(prefix="/api/clearing-runs", tags=["clearing"])


class ClearingRunCreate(Request):
    business_day: Day


class PositionOut(BaseModel):
    city: str
    net_fen: int  # after fees; with the center's fee income, they sum to zero
    gross_fen: int | None  # owed to the city less owed by it (runs with fees)
    fees_fen: int | None  # the city's fees to the center
    settlement: str | None  # pending, confirmed or completed


class ClearingRunOut(BaseModel):
    business_day: str
    id: UUID
    batch_count: int
    record_count: int
    excluded_disputed: int
    gross_fen: int
    run_by: str
    completed_at: datetime


class ClearingRunDetail(ClearingRunOut):
    positions: list[PositionOut]
    center_fee_fen: int
    adjustment_records: int  # records of earlier days cleared in this run
    adjustment_fen: int
    flagged_records: int  # records of blacklisted cards


@router.post("", status_code=201, responses=COMMAND)
async def run_clearing(body: ClearingRunCreate,
                       commands: CommandsDep) -> CommandResult:
    """RunClearing (center admin): nets every non-disputed record of the day;
    the day is closed afterwards."""
    return await commands.submit("RunClearing", body.model_dump(mode="json"))


@router.get("", responses=AUTHENTICATED)
async def list_runs(_: CurrentIdentity, read: ReadDB, page: PageDep,
                    day_from: Annotated[Day | None, Query(alias="from")] = None,
                    day_to: Annotated[Day | None, Query(alias="to")] = None,
                    ) -> Page[ClearingRunOut]:
    """Clearing runs, newest first (every member sees the consortium's runs)."""
    where = (Where().cond("business_day >= ?", day_from)
             .cond("business_day <= ?", day_to))
    return Page[ClearingRunOut].of(
        await read(queries.clearing_runs, where, page.limit, page.offset))


@router.get("/{business_day}", responses=READ_ONE)
async def get_run(business_day: Day, _: CurrentIdentity,
                  read: ReadDB) -> ClearingRunDetail:
    """One day's run: each city's net position, gross, fees and settlement
    status; the center's fee income; adjustments; flagged records."""
    row = await read.one(queries.clearing_run, business_day, "clearing run for",
                         "business_day")
    return ClearingRunDetail.model_validate(row)
