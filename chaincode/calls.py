"""Outbound call campaigns (外呼): a department records that it started one
(which template version, how many contacts), each contact's final outcome in
numbered batches while it runs, and, at the end, how many contacts ended with
each outcome (which must be what the batches say, when there are batches).

Phone numbers never reach the chain: not even their hashes, since a hash of an
11-digit number is reversed by trying them all. A per-call record names its
contact by a keyed hash instead: HMAC-SM3, under a secret the department keeps
off chain, of the department's own contact id (``workers.voice.campaign.
contact_key``). Without the secret it links nothing to a person; with it the
department finds its contact's record; deleting it forgets who was called.
Why on chain rather than a read model fed from the campaign's journal: every
member city's endorsers then check the records (one outcome per contact, no
more records than contacts, counts that match the completion), and the read
models follow the chain like all the others, wherever the API runs.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any
from uuid import UUID

from eventsourcing.domain import event
from pydantic import Field

from chaincode.errors import Conflict, InvalidArgument
from chaincode.identity import Role
from chaincode.recorder import LedgerAggregate, derive_id
from chaincode.registry import (
    Args,
    Context,
    Day,
    Hash,
    Name,
    command,
    query,
    state_of,
)

MAX_CONTACTS = 10_000_000
Outcome = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Count = Annotated[int, Field(ge=0, le=MAX_CONTACTS)]
TemplateVersion = Annotated[int, Field(ge=1, le=1_000_000)]
ContactCount = Annotated[int, Field(ge=1, le=MAX_CONTACTS)]
OutcomeCounts = Annotated[dict[Outcome, Count], Field(min_length=1, max_length=32)]
MAX_BATCH = 500  # per-call records a transaction
_RECORDED = "callrec~"  # + campaign id ~ contact: that contact has its outcome
BatchNumber = Annotated[int, Field(ge=0, le=MAX_CONTACTS)]


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
        self.batches = 0  # per-call record batches so far (numbered from 0)
        self.recorded: dict[str, int] = {}  # their final outcomes, counted

    def record_calls(self, batch: int, calls: list[dict[str, Any]], by: str) -> None:
        if self.status != "started":
            raise Conflict(f"call campaign {self.campaign} is already {self.status}",
                           field="campaign")
        if batch < self.batches:
            raise Conflict(f"batch {batch} of call campaign {self.campaign} is "
                           "already recorded", field="batch")
        if batch > self.batches:
            raise InvalidArgument(f"batch: {batch} skips ahead; the next batch of "
                                  f"call campaign {self.campaign} is {self.batches}",
                                  "batch")
        contacts = [c["contact"] for c in calls]
        if len(set(contacts)) != len(contacts):
            raise InvalidArgument("calls: a contact appears twice (each contact "
                                  "ends with exactly one outcome)", "calls")
        total = sum(self.recorded.values()) + len(calls)
        if total > self.contact_count:
            raise InvalidArgument(
                f"calls: {total} records, but the campaign has "
                f"{self.contact_count} contacts", "calls")
        counts = Counter(c["outcome"] for c in calls)
        self._calls_recorded(batch=batch, calls=calls,
                             counts=dict(sorted(counts.items())), recorded_by=by)

    @event("CallsRecorded")
    def _calls_recorded(self, batch: int, calls: list[dict[str, Any]],
                        counts: dict[str, int], recorded_by: str) -> None:
        self.batches = batch + 1
        for outcome, n in counts.items():
            self.recorded[outcome] = self.recorded.get(outcome, 0) + n

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
        if self.recorded and dict(sorted(outcomes.items())) != dict(
                sorted(self.recorded.items())):
            raise InvalidArgument(
                f"outcomes: {dict(sorted(outcomes.items()))} differ from the "
                f"per-call records {dict(sorted(self.recorded.items()))}",
                "outcomes")
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


class CallRecord(Args):
    """One contact's final outcome. ``contact``: HMAC-SM3 of the department's
    contact id under its own secret (never a number); ``day``: the (China)
    day the contact's last call ended; ``talk_s``: seconds on the line."""

    contact: Hash
    outcome: Outcome
    attempts: Annotated[int, Field(ge=0, le=100)]
    day: Day
    talk_s: Annotated[int, Field(ge=0, le=86_400)]


class RecordCallOutcomesArgs(Args):
    campaign: Name
    batch: BatchNumber
    calls: Annotated[list[CallRecord], Field(min_length=1, max_length=MAX_BATCH)]


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


@command("RecordCallOutcomes", RecordCallOutcomesArgs, Role.DEPARTMENT)
def record_call_outcomes(ctx: Context, a: RecordCallOutcomesArgs) -> dict[str, Any]:
    """Batch ``batch`` (0, 1, ... in order) of the campaign's per-call records;
    a batch sent again is refused (Conflict), so a campaign resumed after a
    crash can send it again safely."""
    city, dept = ctx.caller.city, str(ctx.caller.department)
    c: CallCampaign = ctx.session.get(CallCampaign.create_id(city, dept, a.campaign),
                                      CallCampaign, "call campaign", "campaign")
    c.record_calls(a.batch, [r.model_dump() for r in a.calls], str(ctx.caller))
    for i, r in enumerate(a.calls):  # one outcome a contact, across batches too
        key = f"{_RECORDED}{c.id}~{r.contact}"
        if ctx.stub.get_state(key) is not None:
            raise Conflict(f"contact {r.contact} already has an outcome in call "
                           f"campaign {a.campaign}", field=f"calls.{i}.contact")
        ctx.stub.put_state(key, r.outcome.encode())
    ctx.session.save(c)
    return {"id": str(c.id), "batch": a.batch,
            "recorded": sum(c.recorded.values())}


@query("GetCallCampaign", CallCampaignQueryArgs)
def get_call_campaign(ctx: Context, a: CallCampaignQueryArgs) -> dict[str, Any]:
    return state_of(ctx.session.get(
        CallCampaign.create_id(a.city, a.department, a.campaign), CallCampaign,
        "call campaign", "campaign"))
