"""Outbound call campaigns (外呼): a department records the start (template
version, contact count) and the end (counts per outcome). Phone numbers never
come here; the voice workers keep them."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CommandsDep
from api.problems import COMMAND, COMMAND_ON
from api.schemas import CommandResult, Request
from chaincode.calls import ContactCount, OutcomeCounts, TemplateVersion
from chaincode.contract import Hash, Name

router = APIRouter(prefix="/api/call-campaigns", tags=["voice"])


class CallCampaignStart(Request):
    campaign: Name
    template_name: Name
    template_version: TemplateVersion
    template_sm3: Hash
    contact_count: ContactCount


class CallCampaignCompletion(Request):
    outcomes: OutcomeCounts


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
