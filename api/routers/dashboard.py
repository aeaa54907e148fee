"""The leaders' cockpit (领导驾驶舱) data: one JSON document with everything
the dashboard page shows, read from the projections only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import Leader, ReadDB, RuntimeDep, blocking
from api.problems import READ
from api.routers.blocks import BlockOut
from api.routers.clearing_runs import ClearingRunDetail
from api.schemas import ProjectionStatus

router = APIRouter(prefix="/api/dashboard", tags=["dashboard"])


class DayVolume(BaseModel):
    business_day: str
    record_count: int
    amount_fen: int


class Flow(BaseModel):
    acquirer_city: str
    issuer_city: str
    record_count: int
    amount_fen: int


class NetPosition(BaseModel):
    city: str
    net_fen: int  # summed over every cleared day
    days: int
    last_business_day: str


class StatusCount(BaseModel):
    status: str
    count: int


class KindCount(BaseModel):
    kind: str
    status: str
    count: int


class DaySettlements(BaseModel):
    business_day: str
    pending: int
    confirmed: int
    completed: int
    overdue: int  # pending past the confirm-by day


class RiskCount(BaseModel):
    kind: str
    count: int
    last_business_day: str


class CityRank(BaseModel):
    rank: int
    city: str
    record_count: int
    amount_fen: int


class DashboardSummary(BaseModel):
    generated_at: datetime
    volume_per_day: list[DayVolume]
    city_pair_flows: list[Flow]
    net_positions: list[NetPosition]
    latest_clearing: ClearingRunDetail | None
    code_schemes_by_status: list[StatusCount]
    identifiers_by_kind: list[KindCount]
    latest_blocks: list[BlockOut]
    settlements_by_day: list[DaySettlements]
    disputes_by_status: list[StatusCount]
    blacklisted_cards: int
    risk_by_kind: list[RiskCount]
    ranking: list[CityRank]
    peak_days: list[DayVolume]
    projection: ProjectionStatus
    video_alerts_by_kind: list[KindCount]  # crowd, fire, garbage


@router.get("/summary", responses=READ)
async def summary(_: Leader, read: ReadDB, runtime: RuntimeDep,
                  days: Annotated[int, Query(ge=1, le=366)] = 30,
                  blocks: Annotated[int, Query(ge=1, le=100)] = 10) -> DashboardSummary:
    """Cross-city volume per business day (latest ``days``), flows between city
    pairs, net clearing positions, code schemes by status, identifiers by kind,
    the latest ``blocks`` blocks with their verification state, the cities'
    settlements of the latest ``days`` cleared days (overdue: unconfirmed
    past the confirm-by day), disputes by status, the blacklisted cards, risk
    alerts by kind, the ranking of cities and the peak days (all days), video
    alerts by kind and status, and the projection lag. For center admins,
    auditors and city admins."""
    data = await read(runtime.dashboard, days, blocks)
    return DashboardSummary.model_validate({
        **data, "generated_at": datetime.now(UTC),
        "projection": ProjectionStatus.of(await blocking(runtime.follower.status))})
