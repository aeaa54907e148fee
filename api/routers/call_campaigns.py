"""Outbound call campaigns (外呼): a department records the start (template
version, contact count), each contact's final outcome in numbered batches (a
keyed hash of the contact, see ``chaincode/calls.py``) and the end (counts per
outcome). Phone numbers never come here; the voice workers keep them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import CommandsDep, CurrentIdentity, PageDep, ReadDB, scope_city
from api.problems import COMMAND, COMMAND_ON, READ, READ_ONE
from api.schemas import CommandResult, Page, Request
from chaincode.calls import (
    BatchNumber,
    CallRecord,
    ContactCount,
    OutcomeCounts,
    TemplateVersion,
)
from chaincode.contract import Hash, Name
from projections import queries
from projections.queries import Where

router = APIRouter(prefix="/api/call-campaigns", tags=["voice"])


class CallCampaignStart(Request):
    campaign: Name
    template_name: Name
    template_version: TemplateVersion
    template_sm3: Hash
    contact_count: ContactCount


class CallCampaignCompletion(Request):
    outcomes: OutcomeCounts


class CallRecordBatch(Request):
    batch: BatchNumber
    calls: list[CallRecord]


class CallCampaignOut(BaseModel):
    id: UUID
    city: str
    department: str
    campaign: str
    template_name: str
    template_version: int
    template_sm3: str
    contact_count: int
    status: Literal["started", "completed"]
    outcomes: dict[str, int] | None
    started_by: str
    started_at: datetime
    completed_by: str | None
    completed_at: datetime | None
    recorded: dict[str, int]  # per-call records so far, by outcome
    recorded_total: int
    version: int


@router.post("", status_code=201, responses=COMMAND)
async def start_call_campaign(body: CallCampaignStart,
                              commands: CommandsDep) -> CommandResult:
    """StartCallCampaign (department): the template's name, version and SM3,
    and the number of contacts (never the numbers)."""
    return await commands.submit("StartCallCampaign", body.model_dump(mode="json"))


@router.post("/{campaign}/complete", responses=COMMAND_ON)
async def complete_call_campaign(campaign: Name, body: CallCampaignCompletion,
                                 commands: CommandsDep) -> CommandResult:
    """CompleteCallCampaign (department, its own campaign): how many contacts
    ended with each outcome; the counts add up to the contact count."""
    return await commands.submit("CompleteCallCampaign", {
        "campaign": campaign, **body.model_dump(mode="json")})


@router.post("/{campaign}/calls", responses=COMMAND_ON)
async def record_call_outcomes(campaign: Name, body: CallRecordBatch,
                               commands: CommandsDep) -> CommandResult:
    """RecordCallOutcomes (department, its own campaign): batch ``batch`` (0,
    1, ... in order; one sent again is a 409) of final outcomes, each contact
    named by its keyed hash."""
    return await commands.submit("RecordCallOutcomes", {
        "campaign": campaign, **body.model_dump(mode="json")})


@router.get("", responses=READ)
async def list_call_campaigns(p: CurrentIdentity, read: ReadDB, page: PageDep,
                              city: Name | None = None,
                              department: Name | None = None,
                              status: Literal["started", "completed"] | None = None
                              ) -> Page[CallCampaignOut]:
    """Call campaigns, newest first (a city's own; every city for the center
    and auditors)."""
    where = (Where().eq("city", scope_city(p, city)).eq("department", department)
             .eq("status", status))
    return Page[CallCampaignOut].of(
        await read(queries.call_campaigns, where, page.limit, page.offset))


@router.get("/{campaign_id}", responses=READ_ONE)
async def get_call_campaign(campaign_id: UUID, p: CurrentIdentity,
                            read: ReadDB) -> CallCampaignOut:
    row = await read.one(queries.call_campaign, str(campaign_id), "call campaign",
                         "campaign_id")
    scope_city(p, row["city"], "campaign_id")
    return CallCampaignOut.model_validate(row)
