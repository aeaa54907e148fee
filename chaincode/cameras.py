"""Cameras and their video alerts (AI jobs): a department registers a camera
at a registered place; a video worker raises alerts; people review them
(confirmed or false alarm), dispatch confirmed ones to a department, and that
department reports them handled.

Workers raise alerts with a ``terminal`` identity of the camera's city: a worker
is a device like a card terminal, and a terminal may not review, dispatch or
handle, so a machine's finding always passes a person before anyone acts on
it. An alert's id is derived from the camera and the worker's incident key,
so a restarted worker that raises the same incident again is refused
(``Conflict``) and the chain holds one alert per incident.

Stream addresses and credentials stay off chain (the worker's configuration);
evidence stays off chain too, in a content-addressed store, and only its SM3
is recorded. The aggregates live here rather than in ``domain.py`` so that the
family is one module.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from eventsourcing.domain import event
from pydantic import AfterValidator, Field

from chaincode.domain import Department, Identifier
from chaincode.errors import Conflict, InvalidArgument, Unauthorized
from chaincode.identity import Caller, Role
from chaincode.recorder import LedgerAggregate, derive_id
from chaincode.registry import (
    QUERIES,
    Args,
    Context,
    Hash,
    IdArgs,
    Name,
    Text,
    command,
    getter,
)

AlertKind = Literal["crowd", "fire", "garbage"]
ALERT_KINDS = ("crowd", "fire", "garbage")


def _utc_time(v: str) -> str:
    datetime.fromisoformat(v)  # a ValueError here names the field
    return v


# UTC to the microsecond at most, a real time (not 13:61 on 02-30).
UtcTime = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"
                                       r"(\.\d{1,6})?Z$",
                               json_schema_extra={"format": "date-time"}),
                    AfterValidator(_utc_time)]
# Image coordinates in pixels of the analysed frame (up to 8K).
Coordinate = Annotated[int, Field(ge=0, le=8192)]
Point = Annotated[list[Coordinate], Field(min_length=2, max_length=2)]


class ZoneArgs(Args):
    zone: Name
    polygon: Annotated[list[Point], Field(min_length=3, max_length=32)]
    detectors: Annotated[list[AlertKind], Field(min_length=1, max_length=3)]
    min_people: Annotated[int, Field(ge=1, le=10_000)] = 8
    hold_seconds: Annotated[int, Field(ge=1, le=3_600)] = 3
    garbage_seconds: Annotated[int, Field(ge=1, le=86_400)] = 300


class RegisterCameraArgs(Args):
    camera_code: Name
    place_id: UUID
    department: Name
    zones: Annotated[list[ZoneArgs], Field(min_length=1, max_length=16)]


class RaiseVideoAlertArgs(Args):
    camera_id: UUID
    incident: Name
    kind: AlertKind
    confidence_permille: Annotated[int, Field(ge=0, le=1000)]  # no floats on chain
    observed_at: UtcTime
    zone: Name
    evidence_sm3: Hash


class ReviewAlertArgs(Args):
    alert_id: UUID
    verdict: Literal["confirmed", "false_alarm"]
    note: Text | None = None


class DispatchAlertArgs(Args):
    alert_id: UUID
    department: Name


class HandleAlertArgs(Args):
    alert_id: UUID
    outcome: Text


# ------------------------------------------------------------------ aggregates
class Camera(LedgerAggregate):
    """A camera at a place, run by a department, with the zones its detectors
    watch (polygons and thresholds)."""

    @staticmethod
    def create_id(city: str, camera_code: str, **_: Any) -> UUID:
        return derive_id("camera", city, camera_code)

    @event("Registered")
    def __init__(self, city: str, camera_code: str, place_id: str,
                 department: str, zones: list[dict[str, Any]],
                 registered_by: str) -> None:
        self.city = city
        self.camera_code = camera_code
        self.place_id = place_id
        self.department = department
        self.zones = zones
        self.registered_by = registered_by


class VideoAlert(LedgerAggregate):
    """One incident a worker found: raised, then reviewed (confirmed or
    false_alarm), a confirmed one dispatched to a department, then handled."""

    @staticmethod
    def create_id(camera_id: str, incident: str, **_: Any) -> UUID:
        return derive_id("videoalert", camera_id, incident)

    @event("Raised")
    def __init__(self, camera_id: str, city: str, department: str, incident: str,
                 kind: str, confidence_permille: int, observed_at: str, zone: str,
                 evidence_sm3: str, raised_by: str) -> None:
        self.camera_id = camera_id
        self.city = city
        self.department = department  # the camera's, who reviews
        self.incident = incident
        self.kind = kind
        self.confidence_permille = confidence_permille
        self.observed_at = observed_at
        self.zone = zone
        self.evidence_sm3 = evidence_sm3
        self.raised_by = raised_by
        self.status = "raised"
        self.dispatched_to: str | None = None

    def _expect(self, status: str, doing: str) -> None:
        if self.status != status:
            raise Conflict(f"alert {self.id} is {self.status}; only a {status} "
                           f"alert can be {doing}", field="alert_id")

    def review(self, verdict: str, note: str | None, by: str) -> None:
        self._expect("raised", "reviewed")
        self._reviewed(verdict=verdict, note=note, reviewed_by=by)

    @event("Reviewed")
    def _reviewed(self, verdict: str, note: str | None, reviewed_by: str) -> None:
        self.status = verdict

    def dispatch(self, department: str, by: str) -> None:
        self._expect("confirmed", "dispatched")
        self._dispatched(department=department, dispatched_by=by)

    @event("Dispatched")
    def _dispatched(self, department: str, dispatched_by: str) -> None:
        self.status = "dispatched"
        self.dispatched_to = department

    def handle(self, outcome: str, by: str) -> None:
        self._expect("dispatched", "handled")
        self._handled(outcome=outcome, handled_by=by)

    @event("Handled")
    def _handled(self, outcome: str, handled_by: str) -> None:
        self.status = "handled"


# -------------------------------------------------------------------- commands
def _require_department(ctx: Context, department: str, field: str) -> None:
    if not ctx.session.exists(Department.create_id(ctx.caller.city, department)):
        raise InvalidArgument(f"department {department} is not registered in "
                              f"{ctx.caller.city}", field)


def _may_act_for(caller: Caller, city: str, department: str, what: str) -> None:
    """The city's admin, or the department itself."""
    if caller.city == city and (caller.role is Role.CITY_ADMIN
                                or caller.department == department):
        return
    raise Unauthorized(f"only {city}'s city admin or its department {department} "
                       f"may {what}; the caller is {caller}")


@command("RegisterCamera", RegisterCameraArgs, Role.DEPARTMENT, Role.CITY_ADMIN)
def register_camera(ctx: Context, a: RegisterCameraArgs) -> dict[str, Any]:
    city = ctx.caller.city
    if ctx.caller.role is Role.DEPARTMENT and a.department != ctx.caller.department:
        raise Unauthorized(f"department {ctx.caller.department} may register "
                           f"cameras for itself, not for {a.department}",
                           "department")
    _require_department(ctx, a.department, "department")
    place = ctx.session.get(a.place_id, Identifier, "identifier", "place_id")
    if place.kind != "place" or place.status != "active":
        raise InvalidArgument(f"identifier {a.place_id} is a {place.status} "
                              f"{place.kind}; a camera needs an active place",
                              "place_id")
    if place.city != city:
        raise Unauthorized(f"place {a.place_id} belongs to {place.city}, not "
                           f"{city}", "place_id")
    names = [z.zone for z in a.zones]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise InvalidArgument(f"zone {name!r} appears twice", f"zones.{i}.zone")
    if ctx.session.exists(Camera.create_id(city, a.camera_code)):
        raise Conflict(f"camera {a.camera_code} of {city} is already registered",
                       field="camera_code")
    zones = [z.model_dump() for z in a.zones]
    for z in zones:
        z["detectors"] = sorted(set(z["detectors"]))
    camera = Camera(city=city, camera_code=a.camera_code, place_id=str(a.place_id),
                    department=a.department, zones=zones,
                    registered_by=str(ctx.caller))
    ctx.session.save(camera)
    return {"id": str(camera.id)}


@command("RaiseVideoAlert", RaiseVideoAlertArgs, Role.TERMINAL)
def raise_video_alert(ctx: Context, a: RaiseVideoAlertArgs) -> dict[str, Any]:
    camera: Camera = ctx.session.get(a.camera_id, Camera, "camera", "camera_id")
    if ctx.caller.city != camera.city:
        raise Unauthorized(f"only a terminal of {camera.city} may raise alerts of "
                           f"its cameras; the caller is {ctx.caller}", "camera_id")
    zone = next((z for z in camera.zones if z["zone"] == a.zone), None)
    if zone is None:
        accepted = ", ".join(z["zone"] for z in camera.zones)
        raise InvalidArgument(f"camera {camera.camera_code} has no zone {a.zone!r} "
                              f"(accepted: {accepted})", "zone")
    if a.kind not in zone["detectors"]:
        raise InvalidArgument(f"zone {a.zone!r} watches for "
                              f"{', '.join(zone['detectors'])}, not {a.kind}", "kind")
    alert_id = VideoAlert.create_id(str(camera.id), a.incident)
    if ctx.session.exists(alert_id):
        raise Conflict(f"incident {a.incident} of camera {camera.camera_code} was "
                       f"already raised as alert {alert_id}", field="incident")
    alert = VideoAlert(camera_id=str(camera.id), city=camera.city,
                       department=camera.department, incident=a.incident,
                       kind=a.kind, confidence_permille=a.confidence_permille,
                       observed_at=a.observed_at, zone=a.zone,
                       evidence_sm3=a.evidence_sm3, raised_by=str(ctx.caller))
    ctx.session.save(alert)
    return {"id": str(alert.id), "status": alert.status}


def _alert(ctx: Context, alert_id: UUID) -> VideoAlert:
    alert: VideoAlert = ctx.session.get(alert_id, VideoAlert, "video alert",
                                        "alert_id")
    return alert


@command("ReviewAlert", ReviewAlertArgs, Role.DEPARTMENT, Role.CITY_ADMIN)
def review_alert(ctx: Context, a: ReviewAlertArgs) -> dict[str, Any]:
    alert = _alert(ctx, a.alert_id)
    _may_act_for(ctx.caller, alert.city, alert.department, "review this alert")
    alert.review(a.verdict, a.note, str(ctx.caller))
    ctx.session.save(alert)
    return {"id": str(alert.id), "status": alert.status}


@command("DispatchAlert", DispatchAlertArgs, Role.DEPARTMENT, Role.CITY_ADMIN)
def dispatch_alert(ctx: Context, a: DispatchAlertArgs) -> dict[str, Any]:
    alert = _alert(ctx, a.alert_id)
    _may_act_for(ctx.caller, alert.city, alert.department, "dispatch this alert")
    _require_department(ctx, a.department, "department")
    alert.dispatch(a.department, str(ctx.caller))
    ctx.session.save(alert)
    return {"id": str(alert.id), "status": alert.status}


@command("HandleAlert", HandleAlertArgs, Role.DEPARTMENT, Role.CITY_ADMIN)
def handle_alert(ctx: Context, a: HandleAlertArgs) -> dict[str, Any]:
    alert = _alert(ctx, a.alert_id)
    _may_act_for(ctx.caller, alert.city, str(alert.dispatched_to or alert.department),
                 "report this alert handled")
    alert.handle(a.outcome, str(ctx.caller))
    ctx.session.save(alert)
    return {"id": str(alert.id), "status": alert.status}


def derive_camera_id(city: str, camera_code: str) -> str:
    """Clients (the worker) use this to know a camera's id."""
    return str(Camera.create_id(city, camera_code))


def derive_alert_id(camera_id: str, incident: str) -> str:
    """The id the alert of a camera's incident has (or will have)."""
    return str(VideoAlert.create_id(camera_id, incident))


QUERIES["GetCamera"] = (IdArgs, getter(Camera, "camera"))
QUERIES["GetVideoAlert"] = (IdArgs, getter(VideoAlert, "video alert"))
