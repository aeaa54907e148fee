"""Outbound call campaigns (外呼): a department records that it started one
(which template version, how many contacts) and, at the end, how many calls
ended with each outcome. Phone numbers never reach the chain: not even their
hashes, since a hash of an 11-digit number is reversed by trying them all.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from eventsourcing.domain import event
from pydantic import Field

from chaincode.errors import Conflict, InvalidArgument
from chaincode.identity import Role
from chaincode.recorder import LedgerAggregate, derive_id
from chaincode.registry import Args, Context, Hash, Name, command, query, state_of

MAX_CONTACTS = 10_000_000
Outcome = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Count = Annotated[int, Field(ge=0, le=MAX_CONTACTS)]
TemplateVersion = Annotated[int, Field(ge=1, le=1_000_000)]
ContactCount = Annotated[int, Field(ge=1, le=MAX_CONTACTS)]
OutcomeCounts = Annotated[dict[Outcome, Count], Field(min_length=1, max_length=32)]


class CallCampaign(LedgerAggregate):
    """One campaign of one department, named by the department."""

    @staticmethod
    def create_id(city: str, department: str, campaign: str, **_: Any) -> UUID:
        return derive_id("callcampaign", city, department, campaign)

    @event("Started")
    def __init__(self, city: str, department: str, campaign: str,
                 template_name: str, template_version: int, template_sm3: str,
                 contact_count: int, started_by: str) -> None:
        self.city = city
        self.department = department
        self.campaign = campaign
        self.template_name = template_name
        self.template_version = template_version
        self.template_sm3 = template_sm3
        self.contact_count = contact_count
        self.started_by = started_by
        self.status = "started"
        self.outcomes: dict[str, int] = {}

    def complete(self, outcomes: dict[str, int], by: str) -> None:
        if self.status != "started":
            raise Conflict(f"call campaign {self.campaign} is already {self.status}",
                           field="campaign")
        total = sum(outcomes.values())
        if total != self.contact_count:
            raise InvalidArgument(
                f"outcomes: the counts add up to {total}, but the campaign has "
                f"{self.contact_count} contacts (every contact ends with exactly "
                "one outcome)", "outcomes")
        self._completed(outcomes=dict(sorted(outcomes.items())), completed_by=by)

    @event("Completed")
    def _completed(self, outcomes: dict[str, int], completed_by: str) -> None:
        self.status = "completed"
        self.outcomes = outcomes


class StartCallCampaignArgs(Args):
    campaign: Name
    template_name: Name
    template_version: TemplateVersion
    template_sm3: Hash
    contact_count: ContactCount


class CompleteCallCampaignArgs(Args):
    campaign: Name
    outcomes: OutcomeCounts


class CallCampaignQueryArgs(Args):
    city: Name
    department: Name
    campaign: Name


@command("StartCallCampaign", StartCallCampaignArgs, Role.DEPARTMENT)
def start_call_campaign(ctx: Context, a: StartCallCampaignArgs) -> dict[str, Any]:
    # The dispatcher has checked that the department is registered.
    city, dept = ctx.caller.city, str(ctx.caller.department)
    if ctx.session.exists(CallCampaign.create_id(city, dept, a.campaign)):
        raise Conflict(f"{dept} of {city} already started campaign {a.campaign}",
                       field="campaign")
    c = CallCampaign(city=city, department=dept, campaign=a.campaign,
                     template_name=a.template_name,
                     template_version=a.template_version,
                     template_sm3=a.template_sm3, contact_count=a.contact_count,
                     started_by=str(ctx.caller))
    ctx.session.save(c)
    return {"id": str(c.id), "status": c.status}


@command("CompleteCallCampaign", CompleteCallCampaignArgs, Role.DEPARTMENT)
def complete_call_campaign(ctx: Context, a: CompleteCallCampaignArgs
                           ) -> dict[str, Any]:
    # A campaign id is derived from the caller's own city and department, so
    # another department's campaign of the same name is simply not found.
    city, dept = ctx.caller.city, str(ctx.caller.department)
    c: CallCampaign = ctx.session.get(CallCampaign.create_id(city, dept, a.campaign),
                                      CallCampaign, "call campaign", "campaign")
    c.complete(dict(a.outcomes), str(ctx.caller))
    ctx.session.save(c)
    return {"id": str(c.id), "status": c.status}


@query("GetCallCampaign", CallCampaignQueryArgs)
def get_call_campaign(ctx: Context, a: CallCampaignQueryArgs) -> dict[str, Any]:
    return state_of(ctx.session.get(
        CallCampaign.create_id(a.city, a.department, a.campaign), CallCampaign,
        "call campaign", "campaign"))
