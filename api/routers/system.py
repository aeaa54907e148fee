"""Health, the caller's identity, and the projections' progress."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import CurrentIdentity, RuntimeDep, blocking
from api.problems import Problem, ProblemBody, responses
from api.schemas import ProjectionStatus

router = APIRouter(tags=["system"])


class MeOut(BaseModel):
    city: str
    role: str
    department: str | None
    token_id: str
    expires_at: datetime
    sees_every_city: bool


class HealthOut(BaseModel):
    status: Literal["ok"]


@router.get("/healthz", responses={503: {
    "model": ProblemBody, "description": "Service Unavailable: unhealthy, the "
    "read models are not following the ledger (the detail says why; "
    "/api/projections shows where)"}})
async def health(runtime: RuntimeDep) -> HealthOut:
    """Liveness and the read models' health (no token needed): a 503 problem
    while the projection follower fails or has stopped at an event it cannot
    apply."""
    status = await blocking(runtime.follower.status)  # may ask the ledger
    if not status.healthy:
        raise Problem(503, "unhealthy", "unhealthy: "
                      f"{status.error or status.failure}")
    return HealthOut(status="ok")


@router.get("/api/me", responses=responses(401))
async def me(p: CurrentIdentity) -> MeOut:
    """Who the bearer token speaks for."""
    return MeOut(city=p.city, role=p.role.value, department=p.department,
                 token_id=p.jti, expires_at=p.expires_at,
                 sees_every_city=p.sees_every_city)


@router.get("/api/projections", responses=responses(401))
async def projections(_: CurrentIdentity, runtime: RuntimeDep) -> ProjectionStatus:
    """Each projection's position and the lag behind the ledger."""
    return ProjectionStatus.of(await blocking(runtime.follower.status))
