"""Cameras (AI jobs): a department registers a camera at a registered place,
with the zones its detectors watch; a video worker raises the camera's alerts.
Stream addresses stay with the worker. Both commands name what they act on in
the path (a place, a camera), so an unknown one is a 404 there."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter
from pydantic import Field

from api.deps import CommandsDep
from api.problems import COMMAND_ON
from api.schemas import CommandResult, Request
from chaincode.cameras import AlertKind, Point, UtcTime
from chaincode.contract import Hash, Name

router = APIRouter(prefix="/api", tags=["video"])


class ZoneIn(Request):
    zone: Name
    polygon: Annotated[list[Point], Field(min_length=3, max_length=32)]
    detectors: Annotated[list[AlertKind], Field(min_length=1, max_length=3)]
    min_people: Annotated[int, Field(ge=1, le=10_000)] = 8
    hold_seconds: Annotated[int, Field(ge=1, le=3_600)] = 3
    garbage_seconds: Annotated[int, Field(ge=1, le=86_400)] = 300


class CameraCreate(Request):
    camera_code: Name
    department: Name
    zones: Annotated[list[ZoneIn], Field(min_length=1, max_length=16)]


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
