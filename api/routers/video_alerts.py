"""Video alerts: raised by a video worker (terminal identity), reviewed by
people (confirmed or false alarm), dispatched to a department, handled."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter
from pydantic import Field

from api.deps import CommandsDep
from api.problems import COMMAND, COMMAND_ON
from api.schemas import CommandResult, Request
from chaincode.cameras import AlertKind, UtcTime
from chaincode.contract import Hash, Name, Text

router = APIRouter(prefix="/api/video-alerts", tags=["video"])


class VideoAlertCreate(Request):
    camera_id: UUID
    incident: Name
    kind: AlertKind
    confidence_permille: Annotated[int, Field(ge=0, le=1000)]
    observed_at: UtcTime
    zone: Name
    evidence_sm3: Hash


class ReviewRequest(Request):
    verdict: Literal["confirmed", "false_alarm"]
    note: Text | None = None


class DispatchRequest(Request):
    department: Name


class HandleRequest(Request):
    outcome: Text


@router.post("", status_code=201, responses=COMMAND)
async def raise_video_alert(body: VideoAlertCreate,
                            commands: CommandsDep) -> CommandResult:
    """RaiseVideoAlert (terminal of the camera's city): one alert per incident;
    the same incident again is 409."""
    return await commands.submit("RaiseVideoAlert", body.model_dump(mode="json"))


@router.post("/{alert_id}/review", responses=COMMAND_ON)
async def review_alert(alert_id: UUID, body: ReviewRequest,
                       commands: CommandsDep) -> CommandResult:
    """ReviewAlert (the camera's department or its city admin)."""
    return await commands.submit("ReviewAlert", {
        "alert_id": str(alert_id), **body.model_dump(mode="json", exclude_none=True)})


@router.post("/{alert_id}/dispatch", responses=COMMAND_ON)
async def dispatch_alert(alert_id: UUID, body: DispatchRequest,
                         commands: CommandsDep) -> CommandResult:
    """DispatchAlert (the camera's department or its city admin): a confirmed
    alert to a registered department of the city."""
    return await commands.submit("DispatchAlert", {
        "alert_id": str(alert_id), "department": body.department})


@router.post("/{alert_id}/handle", responses=COMMAND_ON)
async def handle_alert(alert_id: UUID, body: HandleRequest,
                       commands: CommandsDep) -> CommandResult:
    """HandleAlert (the department it was dispatched to, or the city admin)."""
    return await commands.submit("HandleAlert", {
        "alert_id": str(alert_id), "outcome": body.outcome})
