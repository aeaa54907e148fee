"""Video watches: analysis of a camera's stream or recording started, followed
and stopped through the API (what ``cityunion video watch`` does from a shell).
The server runs each watch in threads of its own process
(``workers.video.service``) and raises its alerts with the terminal identity
of the camera's city from this node's wallet, so the chain checks them as it
checks a worker's. Watches live as long as the server; a watch started again
resumes from the camera's checkpoint without raising an incident twice.

A department may watch its own cameras, a city admin any camera of its city.
A source is an rtsp(s):// or http(s):// URL, or the name of a recording under
``DATA_DIR/video/recordings``; its credentials are shown and logged masked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field, StringConstraints

from api.deps import (
    REPLAYED_HEADER,
    CurrentIdentity,
    IdempotencyKey,
    RuntimeDep,
    blocking,
    scope_city,
)
from api.problems import READ, READ_ONE, Problem, responses
from api.schemas import Request
from api.tokens import Principal
from chaincode.cameras import derive_camera_id
from chaincode.contract import Name
from chaincode.encoding import canonical_json
from chaincode.errors import NotFound
from chaincode.identity import Role
from workers.video.health import HealthWriter
from workers.video.service import (
    LocalWatch,
    Raiser,
    WatchError,
    check_source,
    watch_config,
)

router = APIRouter(prefix="/api/video/watches", tags=["video"])
START = responses(400, 401, 403, 409, 413, 422, 503)
Estimator = Literal["foreground", "hog"]
ZoneOrAll = Annotated[str, StringConstraints(
    pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$")]
Source = Annotated[str, StringConstraints(min_length=1, max_length=2048,
                                          pattern=r"^[!-~]+$")]


class WatchOptions(Request):
    sample_fps: Annotated[float, Field(gt=0, le=60)] = 10.0
    pace: Annotated[float, Field(ge=0, le=100)] = 0.0  # files: x real time
    queue_size: Annotated[int, Field(ge=1, le=1024)] = 32
    reconnect_attempts: Annotated[int, Field(ge=0, le=1000)] = 8
    max_backoff_s: Annotated[float, Field(gt=0, le=600)] = 8.0
    crowd_estimator: Estimator | Annotated[
        dict[ZoneOrAll, Estimator], Field(max_length=17)] = Field(
        default="foreground", description=(
            "how crowds are counted: `foreground` density or `hog` (OpenCV's "
            "people detector), for every zone, or by zone name (`*`: the "
            "others)"))


class WatchCreate(Request):
    camera: Annotated[str, Field(min_length=1, max_length=64, description=(
        "the camera's id, or its code in the caller's city"))]
    source: Annotated[Source, Field(description=(
        "rtsp(s):// or http(s):// URL, or a recording's path under the node's "
        "DATA_DIR/video/recordings"))]
    options: WatchOptions = Field(default_factory=WatchOptions)


class WatchOut(BaseModel):
    id: UUID
    camera_id: UUID
    camera_code: str | None
    city: str
    department: str
    source: str  # credentials masked
    state: Literal["starting", "running", "reconnecting", "finished", "stopped",
                   "failed"]
    started_at: datetime
    started_by: str
    frames: int = 0
    fps: float = 0.0  # analysed per second, over the last few seconds
    lag_s: float | None = None  # from the latest frame's capture to now
    last_frame_at: datetime | None = None
    updated_at: datetime | None = None
    dropped: int = 0
    reconnects: int = 0  # attempts to reopen a live source, in all
    gap_s: float = 0.0  # its last outage: from its last frame to the next
    alerts: int = 0
    pending_alerts: int = 0
    last_error: str | None = None


def _may_start(p: Principal) -> None:
    if p.role not in (Role.DEPARTMENT, Role.CITY_ADMIN):
        raise Problem(403, "forbidden-role", "watches are started and stopped by "
                      f"a department or a city admin; this token's role is "
                      f"{p.role.value}", "role", "department, city_admin")


def _may_watch(p: Principal, camera: dict[str, Any]) -> None:
    """A department its own cameras; a city admin its city's."""
    _may_start(p)
    if camera["city"] != p.city or (p.role is Role.DEPARTMENT
                                    and camera["department"] != p.department):
        owner = f"{camera['city']}'s department {camera['department']}"
        raise Problem(403, "forbidden-camera", f"camera {camera['id']} is "
                      f"{owner}'s; {p.label} may not watch or stop it", "camera")


def _start(runtime: Any, p: Principal, body: WatchCreate) -> LocalWatch:
    _may_start(p)
    conn = runtime.gateway.connection
    try:
        camera_id = str(UUID(body.camera))
    except ValueError:
        camera_id = derive_camera_id(p.city, body.camera)
    try:
        camera = runtime.gateway.reader.evaluate("GetCamera", {"id": camera_id})
    except NotFound:
        raise Problem(422, "unknown-camera", f"camera {body.camera}: no such "
                      "camera on the ledger (register it first)", "camera") from None
    _may_watch(p, camera)
    try:
        place = runtime.gateway.reader.evaluate("GetIdentifier",
                                                {"id": camera["place_id"]})
    except NotFound:
        place = {"status": "unknown"}
    if place.get("status") != "active":
        raise Problem(409, "camera-inactive", f"camera {camera_id} stands at place "
                      f"{camera['place_id']}, which is {place.get('status')}; only "
                      "a camera at an active place is watched", "camera")
    terminal = conn.find_user(camera["city"], Role.TERMINAL.value, None)
    if terminal is None:
        raise Problem(409, "no-identity", f"this node's wallet holds no terminal "
                      f"identity of {camera['city']} to raise the camera's alerts: "
                      f"`cityunion token issue --city {camera['city']} --role "
                      "terminal` enrols one", "camera")
    data_dir = runtime.settings.data_dir
    try:
        source = check_source(body.source, data_dir / "video" / "recordings")
        config = watch_config(camera, source, data_dir,
                              **body.options.model_dump())
    except WatchError as e:
        field = (f"options.{e.field}" if e.field in WatchOptions.model_fields
                 else e.field)
        raise Problem(422, "bad-watch", str(e), field, e.accepted) from None
    from workers.video.evidence import EvidenceStore

    video = data_dir / "video"
    raiser = Raiser(conn.client(camera["city"], terminal), camera_id,
                    EvidenceStore(video / "evidence"))
    health = HealthWriter(video / "health", camera_id, camera["city"],
                          camera.get("camera_code"))
    watch = LocalWatch(config, camera, raiser, health, p.label, body.source)
    try:
        return runtime.watches.start(watch)
    except WatchError as e:
        raise Problem(409, "already-watched", str(e), e.field) from None


@router.post("", status_code=201, responses=START)
async def start_watch(body: WatchCreate, p: CurrentIdentity, runtime: RuntimeDep,
                      response: Response, key: IdempotencyKey = None) -> WatchOut:
    """Start analysing a camera's stream or recording on this server: its
    incidents are raised as video alerts by the terminal identity of the
    camera's city. The camera must be the caller's department's (a city admin:
    its city's) and stand at an active place; the source is checked by reading
    a frame before anything starts. One running watch per camera (409)."""
    if key is not None:
        digest = canonical_json(body.model_dump(mode="json"))
        replay = runtime.watches.keyed(p.label, key, digest)
        if replay is not None:
            response.headers[REPLAYED_HEADER] = "true"
            return WatchOut.model_validate(replay.describe())
    watch = await blocking(_start, runtime, p, body)
    if key is not None:
        runtime.watches.keys.remember(p.label, key, digest, watch.id)
    return WatchOut.model_validate(watch.describe())


@router.get("", responses=READ)
async def list_watches(p: CurrentIdentity, runtime: RuntimeDep,
                       city: Name | None = None) -> list[WatchOut]:
    """The watches this server runs (and those ended and not yet deleted), with
    their progress: frames analysed, fps, lag of the latest frame, state,
    reconnects, alerts raised and the last error. Limited to the caller's city
    (center admins and auditors: every city, or ``city``)."""
    scoped = scope_city(p, city)
    return [WatchOut.model_validate(w.describe()) for w in runtime.watches.all()
            if scoped is None or w.camera["city"] == scoped]


def _watch_of(runtime: Any, p: Principal, watch_id: UUID) -> LocalWatch:
    watch = runtime.watches.get(str(watch_id))
    if watch is None or not (p.sees_every_city or watch.camera["city"] == p.city):
        raise Problem(404, "not-found", f"no watch {watch_id} on this server",
                      "watch_id")
    return watch


@router.get("/{watch_id}", responses=READ_ONE)
async def get_watch(watch_id: UUID, p: CurrentIdentity,
                    runtime: RuntimeDep) -> WatchOut:
    """One watch and its progress."""
    return WatchOut.model_validate(_watch_of(runtime, p, watch_id).describe())


@router.delete("/{watch_id}", responses=READ_ONE)
async def stop_watch(watch_id: UUID, p: CurrentIdentity,
                     runtime: RuntimeDep) -> WatchOut:
    """Stop a watch (the department of its camera, or the city admin) and
    forget it; answers its final progress. Alerts it found are raised before
    it stops; its checkpoint stays, so a new watch resumes there."""
    watch = _watch_of(runtime, p, watch_id)
    _may_watch(p, watch.camera)
    await blocking(runtime.watches.remove, watch.id)
    return WatchOut.model_validate(watch.describe())
