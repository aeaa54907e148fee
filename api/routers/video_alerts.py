"""Video alerts: raised by a video worker (terminal identity; at
``/api/cameras/{camera_id}/alerts``), reviewed by people (confirmed or false
alarm), dispatched to a department, handled; listed by status, camera, kind
and day from the read model."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import CommandsDep, CurrentIdentity, PageDep, ReadDB, scope_city
from api.problems import COMMAND_ON, READ, READ_ONE
from api.schemas import CommandResult, Page, Request
from chaincode.cameras import AlertKind
from chaincode.contract import Name, Text
from projections import queries
from projections.queries import Where

AlertStatus = Literal["raised", "confirmed", "false_alarm", "dispatched", "handled"]

router = APIRouter(prefix="/api/video-alerts", tags=["video"])


class ReviewRequest(Request):
    verdict: Literal["confirmed", "false_alarm"]
    note: Text | None = None


class DispatchRequest(Request):
    department: Name


class HandleRequest(Request):
    outcome: Text


class VideoAlertOut(BaseModel):
    id: UUID
    camera_id: UUID
    city: str
    department: str
    incident: str
    kind: str
    zone: str
    confidence_permille: int
    observed_at: datetime
    evidence_sm3: str
    status: str
    raised_by: str
    raised_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None
    note: str | None
    dispatched_to: str | None
    dispatched_at: datetime | None
    handled_by: str | None
    handled_at: datetime | None
    outcome: str | None
    version: int


@router.get("", responses=READ)
async def list_video_alerts(p: CurrentIdentity, read: ReadDB, page: PageDep,
                            city: Name | None = None, status: AlertStatus | None = None,
                            camera_id: UUID | None = None,
                            kind: AlertKind | None = None,
                            day: date | None = None) -> Page[VideoAlertOut]:
    """Video alerts, newest observation first; ``day`` is the observed day (UTC)."""
    where = (Where().eq("city", scope_city(p, city)).eq("status", status)
             .eq("camera_id", str(camera_id) if camera_id else None)
             .eq("kind", kind).eq("day", day.isoformat() if day else None))
    return Page[VideoAlertOut].of(
        await read(queries.video_alerts, where, page.limit, page.offset))


@router.get("/{alert_id}", responses=READ_ONE)
async def get_video_alert(alert_id: UUID, p: CurrentIdentity,
                          read: ReadDB) -> VideoAlertOut:
    row = await read.one(queries.video_alert, str(alert_id), "video alert",
                         "alert_id")
    scope_city(p, row["city"], "alert_id")
    return VideoAlertOut.model_validate(row)


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
