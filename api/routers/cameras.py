"""Cameras (AI jobs): a department registers a camera at a registered place,
with the zones its detectors watch. Stream addresses stay with the worker."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter
from pydantic import Field

from api.deps import CommandsDep
from api.problems import COMMAND
from api.schemas import CommandResult, Request
from chaincode.cameras import AlertKind, Point
from chaincode.contract import Name

router = APIRouter(prefix="/api/cameras", tags=["video"])


class ZoneIn(Request):
    zone: Name
    polygon: Annotated[list[Point], Field(min_length=3, max_length=32)]
    detectors: Annotated[list[AlertKind], Field(min_length=1, max_length=3)]
    min_people: Annotated[int, Field(ge=1, le=10_000)] = 8
    hold_seconds: Annotated[int, Field(ge=1, le=3_600)] = 3
    garbage_seconds: Annotated[int, Field(ge=1, le=86_400)] = 300


class CameraCreate(Request):
    camera_code: Name
    place_id: UUID
    department: Name
    zones: Annotated[list[ZoneIn], Field(min_length=1, max_length=16)]


@router.post("", status_code=201, responses=COMMAND)
async def register_camera(body: CameraCreate, commands: CommandsDep) -> CommandResult:
    """RegisterCamera (the department itself, or its city admin): a camera at an
    active place identifier, with its zones (polygons and thresholds)."""
    return await commands.submit("RegisterCamera", body.model_dump(mode="json"))
