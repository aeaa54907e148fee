"""Cameras (AI jobs): a department registers a camera at a registered place,
with the zones its detectors watch; a video worker raises the camera's alerts.
Stream addresses stay with the worker. Both commands name what they act on in
the path (a place, a camera), so an unknown one is a 404 there. The cameras'
health is what their ``video watch`` drivers on this node last wrote."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import CommandsDep, CurrentIdentity, RuntimeDep, blocking, scope_city
from api.problems import COMMAND_ON, READ
from api.schemas import CommandResult, Request
from chaincode.cameras import AlertKind, UtcTime, ZoneArgs
from chaincode.contract import Hash, Name
from workers.video.health import STALE_S, read_health

router = APIRouter(prefix="/api", tags=["video"])


class CameraCreate(Request):
    camera_code: Name
    department: Name
    zones: Annotated[list[ZoneArgs], Field(min_length=1, max_length=16)]


class VideoAlertCreate(Request):
    incident: Name
    kind: AlertKind
    confidence_permille: Annotated[int, Field(ge=0, le=1000)]
    observed_at: UtcTime
    zone: Name
    evidence_sm3: Hash


@router.post("/identifiers/{place_id}/cameras", status_code=201,
             responses=COMMAND_ON)
async def register_camera(place_id: UUID, body: CameraCreate,
                          commands: CommandsDep) -> CommandResult:
    """RegisterCamera (the department itself, or its city admin): a camera at
    this active place identifier, with its zones (polygons and thresholds)."""
    return await commands.submit("RegisterCamera", {
        "place_id": str(place_id), **body.model_dump(mode="json")})


@router.post("/cameras/{camera_id}/alerts", status_code=201, responses=COMMAND_ON)
async def raise_video_alert(camera_id: UUID, body: VideoAlertCreate,
                            commands: CommandsDep) -> CommandResult:
    """RaiseVideoAlert (terminal of the camera's city): one alert per incident;
    the same incident again is 409."""
    return await commands.submit("RaiseVideoAlert", {
        "camera_id": str(camera_id), **body.model_dump(mode="json")})


class CameraHealthOut(BaseModel):
    camera_id: UUID
    city: str
    camera_code: str | None = None
    status: Literal["running", "reconnecting", "stopped", "stale"]
    fps: float  # frames analysed per second, over the last few seconds
    lag_s: float | None  # seconds from the latest frame's capture to the report
    last_frame_at: datetime | None
    updated_at: datetime
    frames: int = 0
    dropped: int = 0
    reconnects: int = 0  # attempts to reopen a live source, in all
    gap_s: float = 0.0  # its last outage: from its last frame to the next
    alerts: int = 0


@router.get("/cameras/health", responses=READ)
async def camera_health(p: CurrentIdentity, runtime: RuntimeDep,
                        city: Name | None = None) -> list[CameraHealthOut]:
    """Each camera's health as its ``video watch`` driver on this node last
    wrote it (``DATA_DIR/video/health``): status (running, reconnecting,
    stopped; ``stale`` when not updated for 30 s), frames analysed per second,
    the lag of the latest frame and its time. Limited to the caller's city
    (center admins and auditors: every city, or ``city``)."""
    scoped = scope_city(p, city)
    rows = await blocking(read_health, runtime.settings.data_dir / "video" / "health",
                          None, STALE_S)
    out = []
    for row in rows:
        if scoped is not None and row.get("city") != scoped:
            continue
        try:
            out.append(CameraHealthOut.model_validate(row))
        except ValueError:
            continue  # a file this version cannot read: not a camera's health
    return out
