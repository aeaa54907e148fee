"""Health, the caller's identity, and the projections' progress."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import CurrentIdentity, RuntimeDep
from api.problems import RESPONSES
from api.schemas import ProjectionStatus

router = APIRouter(tags=["system"], responses=RESPONSES)


class MeOut(BaseModel):
    city: str
    role: str
    department: str | None
    token_id: str
    expires_at: datetime
    sees_every_city: bool


@router.get("/healthz")
async def health(runtime: RuntimeDep) -> dict[str, str]:
    """Liveness (no token needed)."""
    status = runtime.follower.status()
    return {"status": "ok" if status.error is None else "degraded"}


@router.get("/api/me")
async def me(p: CurrentIdentity) -> MeOut:
    """Who the bearer token speaks for."""
    return MeOut(city=p.city, role=p.role.value, department=p.department,
                 token_id=p.jti, expires_at=p.expires_at,
                 sees_every_city=p.sees_every_city)


@router.get("/api/projections")
async def projections(_: CurrentIdentity, runtime: RuntimeDep) -> ProjectionStatus:
    """Each projection's position and the lag behind the ledger."""
    return ProjectionStatus.of(runtime.follower.status())
