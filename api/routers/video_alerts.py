"""Video alerts: raised by a video worker (terminal identity; at
``/api/cameras/{camera_id}/alerts``), reviewed by people (confirmed or false
alarm), dispatched to a department, handled; listed by status, camera, kind
and day from the read model."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path
from typing import Literal
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel

from api.deps import (
    CommandsDep,
    CurrentIdentity,
    PageDep,
    ReadDB,
    RuntimeDep,
    blocking,
    scope_city,
)
from api.problems import COMMAND_ON, READ, READ_ONE, Problem, ProblemBody
from api.schemas import CommandResult, Page, Request
from chaincode.cameras import AlertKind
from chaincode.contract import Name, Text
from chaincode.encoding import sm3_hex
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


_DIGEST = re.compile(r"^[0-9a-f]{64}$")
EVIDENCE = {
    **READ_ONE,
    200: {"description": "The alert's evidence frame (the JPEG with the "
                         "detections boxed), its SM3 checked",
          "content": {"image/jpeg": {"schema": {"type": "string",
                                                "format": "binary"}}}},
    404: {"model": ProblemBody, "description": "Not Found: no such alert in the "
          "read model, or its evidence is not on this node"},
    409: {"model": ProblemBody, "description": "Conflict: the evidence on this "
          "node does not match the SM3 the alert recorded (altered or corrupt)"},
}


def _evidence_frame(root: Path, alert_id: str, digest: str) -> bytes:
    """The frame the alert's evidence names, each blob checked against its
    SM3: the alert records the manifest's digest (workers.video.evidence), the
    manifest the frame's. A problem when a blob is absent or altered."""
    def blob(d: str, what: str) -> bytes:
        path = root / d[:2] / d
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise Problem(404, "evidence-not-here", f"the {what} of video alert "
                          f"{alert_id} (SM3 {d}) is not on this node", "alert_id"
                          ) from None
        if sm3_hex(data) != d:
            raise Problem(409, "evidence-altered", f"the {what} of video alert "
                          f"{alert_id} on this node does not match its SM3 {d}",
                          "alert_id")
        return data

    data = blob(digest, "evidence")
    if data.startswith(b"\xff\xd8"):  # the alert names the frame itself
        return data
    try:
        manifest = json.loads(data)
        frame = manifest["frame"]
        if not isinstance(frame, str) or not _DIGEST.match(frame):
            raise ValueError(frame)
    except (ValueError, KeyError, TypeError):
        raise Problem(409, "evidence-unreadable", f"the evidence {digest} of "
                      f"video alert {alert_id} names no frame", "alert_id"
                      ) from None
    return blob(frame, "evidence frame")


@router.get("/{alert_id}/evidence", responses=EVIDENCE, response_class=Response)
async def get_video_alert_evidence(alert_id: UUID, p: CurrentIdentity,
                                   read: ReadDB, runtime: RuntimeDep) -> Response:
    """The alert's evidence frame as ``image/jpeg`` (for thumbnails), read from
    this node's evidence store (``DATA_DIR/video/evidence``, where ``video
    watch`` puts it) and checked against the SM3 the alert recorded. Readable
    by whoever may read the alert."""
    row = await read.one(queries.video_alert, str(alert_id), "video alert",
                         "alert_id")
    scope_city(p, row["city"], "alert_id")
    digest = str(row["evidence_sm3"]).lower()
    if not _DIGEST.match(digest):
        raise Problem(409, "evidence-unreadable", f"video alert {alert_id} "
                      "records no SM3 digest of evidence", "alert_id")
    root = runtime.settings.data_dir / "video" / "evidence"
    data = await blocking(_evidence_frame, root, str(alert_id), digest)
    return Response(data, media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=86400"})


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
