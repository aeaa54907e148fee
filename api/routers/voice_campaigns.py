"""Outbound call campaigns run by this server (what ``cityunion voice campaign
start`` does from a shell): a department posts its template and contacts, the
server calls them (``workers.voice.service``: Ray call workers, the journal,
calling hours, retries, the do-not-call list) and records the start, the
per-call outcomes and the counts on the ledger with the department's
identity. Followed, paused, resumed and cancelled here; the numbers stay on
this node (``DATA_DIR/voice/campaigns/NAME``), never on chain or in a reply.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field, field_validator

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
from chaincode.contract import Name
from chaincode.encoding import canonical_json
from chaincode.identity import Role

if TYPE_CHECKING:  # the voice extra (pjsua2) is imported when a campaign starts
    from workers.voice.service import CampaignRegistry, LocalCampaign

router = APIRouter(prefix="/api/voice/campaigns", tags=["voice"])
START = responses(400, 401, 403, 409, 413, 422, 503)
Number = Annotated[str, Field(min_length=3, max_length=32)]


class CampaignRun(Request):
    name: Name
    template: Annotated[str, Field(min_length=1, max_length=256 * 1024, description=(
        "the call script, YAML or JSON (`cityunion voice template schema`)"))]
    contacts: Annotated[str, Field(min_length=1, max_length=8 * 1024 * 1024,
                                   description="CSV with a header naming id and "
                                               "number")]
    do_not_call: Annotated[list[Number], Field(max_length=100_000)] = Field(
        default_factory=list)
    hours: str = Field("09:00-20:00", description="calling hours, China time")
    concurrency: Annotated[int, Field(ge=1, le=256)] = 4
    workers: Annotated[int, Field(ge=1, le=64, description=(
        "call workers (Ray actors), 4 calls each"))] = 1
    attempts: Annotated[int, Field(ge=1, le=20)] = 3
    retry_after_s: Annotated[float, Field(ge=0, le=7 * 86400)] = 600.0
    gateway: Annotated[str, Field(min_length=1, max_length=512, description=(
        "the SIP URI to dial, {number} replaced"))] = "sip:{number}@127.0.0.1:5070"
    ring_timeout_s: Annotated[float, Field(gt=0, le=300)] | None = None


    @field_validator("template", "contacts")
    @classmethod
    def _utf8(cls, text: str) -> str:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"not UTF-8 text ({e.reason} at character "
                             f"{e.start})") from None
        return text


class CampaignOut(BaseModel):
    name: str
    city: str
    department: str
    state: Literal["starting", "running", "finished", "failed"]
    status: Literal["running", "paused", "done", "cancelled"] | None
    contacts: int | None
    finished: int
    in_flight: int
    outcomes: dict[str, int]
    started_at: datetime
    started_by: str
    concurrency: int
    workers: int
    hours: str
    attempts: int
    started_tx: str | None
    completed_tx: str | None
    error: str | None


def _department(p: Principal) -> str:
    if p.role is not Role.DEPARTMENT or not p.department:
        raise Problem(403, "forbidden-role", "a campaign is run by a department; "
                      f"this token's role is {p.role.value}", "role", "department")
    return p.department


def _registry(runtime: Any) -> CampaignRegistry:
    try:
        registry: CampaignRegistry = runtime.campaigns
    except ImportError as e:
        raise Problem(503, "voice-unavailable", "this node cannot place calls: "
                      f"the voice workers are not installed ({e}); pip install "
                      "'cityunion[voice]'") from None
    return registry


def _start(runtime: Any, p: Principal, body: CampaignRun) -> LocalCampaign:
    department = _department(p)
    registry = _registry(runtime)
    from workers.voice.runner import RunError, StartOptions

    data_dir = runtime.settings.data_dir
    opts = StartOptions(
        name=body.name, template=data_dir, contacts=data_dir, city=p.city,
        department=department, hours=body.hours, concurrency=body.concurrency,
        workers=body.workers, attempts=body.attempts,
        retry_after=body.retry_after_s, gateway=body.gateway,
        ring_timeout=body.ring_timeout_s)
    try:
        return registry.start(opts, data_dir, runtime.gateway.connection, p.label,
                              body.template, body.contacts, body.do_not_call)
    except RunError as e:
        field = {"retry_after": "retry_after_s"}.get(e.field, e.field)
        if e.exists:
            raise Problem(409, "campaign-exists", str(e), field) from None
        raise Problem(422, "bad-campaign", str(e), field) from None


@router.post("", status_code=201, responses=START)
async def start_campaign(body: CampaignRun, p: CurrentIdentity, runtime: RuntimeDep,
                         response: Response,
                         key: IdempotencyKey = None) -> CampaignOut:
    """Start calling a department's contacts with a template, on this server.
    Everything is checked before anything starts: the template (the line and
    field of a mistake), the contacts file (the line), the do-not-call
    numbers, calling hours, and enough call workers for the concurrency; a
    template whose answers need speech needs a speech model on the node. The
    start goes on the ledger, then the calls begin; follow it with GET."""
    if key is not None:
        digest = canonical_json(body.model_dump(mode="json"))
        replay = _registry(runtime).keyed(p.label, key, digest, p.city,
                                          p.department or "")
        if replay is not None:
            response.headers[REPLAYED_HEADER] = "true"
            return CampaignOut.model_validate(replay.describe())
    campaign = await blocking(_start, runtime, p, body)
    if key is not None:
        _registry(runtime).keys.remember(p.label, key, digest, campaign.name)
    return CampaignOut.model_validate(campaign.describe())


@router.get("", responses=READ)
async def list_campaigns(p: CurrentIdentity, runtime: RuntimeDep,
                         city: Name | None = None) -> list[CampaignOut]:
    """The campaigns this server runs (and those ended since it started),
    newest first, with their progress: contacts ended, calls under way,
    counts per outcome. Limited to the caller's city (center admins and
    auditors: every city, or ``city``)."""
    scoped = scope_city(p, city)
    return [CampaignOut.model_validate(c.describe())
            for c in _registry(runtime).all()
            if scoped is None or c.opts.city == scoped]


def _campaign_of(runtime: Any, p: Principal, name: str) -> LocalCampaign:
    """The caller's department's campaign ``name`` on this server."""
    campaign = _registry(runtime).get(p.city, p.department or "", name)
    if campaign is None:
        raise Problem(404, "not-found", f"no campaign {name} of {p.label} on this "
                      "server", "name")
    return campaign


@router.get("/{name}", responses=READ_ONE)
async def get_campaign(name: Name, p: CurrentIdentity,
                       runtime: RuntimeDep) -> CampaignOut:
    """One of the caller's department's campaigns and its progress."""
    return CampaignOut.model_validate(_campaign_of(runtime, p, name).describe())


@router.post("/{name}/{action}", status_code=202,
             responses=responses(400, 401, 403, 404, 409, 413, 422, 503))
async def control_campaign(name: Name, action: Literal["pause", "resume", "cancel"],
                           p: CurrentIdentity, runtime: RuntimeDep,
                           key: IdempotencyKey = None) -> CampaignOut:
    """Pause (no new calls; calls under way finish), resume, or cancel (no
    new calls; the rest end ``cancelled`` and the counts go on the ledger).
    Takes effect within a second; answers the progress as it stands. Asking
    twice does what asking once does (an ``Idempotency-Key`` is accepted).
    Resume or cancel of a campaign whose process died (this server's before
    a restart, or a shell's) drives it here from its journal."""
    department = _department(p)
    registry = _registry(runtime)
    campaign = registry.get(p.city, department, name)
    if campaign is None and action != "pause":
        # Not run here since this server started: a campaign whose process
        # died (this server's before a restart, or a shell's) goes on here.
        taken = await blocking(_take_over, runtime, registry, p, name, action)
        return CampaignOut.model_validate(taken.describe())
    campaign = _campaign_of(runtime, p, name)
    if campaign.state in ("finished", "failed"):
        raise Problem(409, "campaign-ended", f"campaign {name} has {campaign.state}",
                      "name")
    campaign.command(action)
    return CampaignOut.model_validate(campaign.describe())


def _take_over(runtime: Any, registry: CampaignRegistry, p: Principal, name: str,
               action: str) -> LocalCampaign:
    from workers.voice.runner import RunError

    try:
        taken = registry.take_over(runtime.settings.data_dir,
                                   runtime.gateway.connection, p.city,
                                   p.department or "", name, action, p.label)
    except RunError as e:
        status = 409 if e.exists or "completed" in str(e) else 422
        raise Problem(status, "campaign-not-resumable", str(e), "name") from None
    if taken is None:
        raise Problem(404, "not-found", f"no campaign {name} of {p.label} on this "
                      "node", "name")
    return taken
