"""Fee rules (服务价格): the center publishes a versioned rule per scene and
party; every member reads every version (from the ledger: GetFeeRules)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import CommandsDep, CurrentIdentity, LedgerDep, blocking
from api.problems import COMMAND, QUERY
from api.schemas import CommandResult, Day, Request
from chaincode.cards import FeeFen, Party, RateBps, Scene

router = APIRouter(prefix="/api/fee-rules", tags=["clearing"])


class FeeRuleCreate(Request):
    scene: Scene
    party: Party
    rate_bps: RateBps
    min_fee_fen: FeeFen
    max_fee_fen: FeeFen
    effective_day: Day


@router.post("", status_code=201, responses=COMMAND)
async def publish_fee_rule(body: FeeRuleCreate,
                           commands: CommandsDep) -> CommandResult:
    """PublishFeeRule (center admin): a new version of the fee a party pays per
    record of a scene, from its effective business day."""
    return await commands.submit("PublishFeeRule", body.model_dump(mode="json"))


class FeeRuleOut(BaseModel):
    id: str
    scene: str
    party: str
    rate_bps: int
    min_fee_fen: int
    max_fee_fen: int
    effective_day: str
    rule_version: int


class FeeRules(BaseModel):
    rules: list[FeeRuleOut]


@router.get("", responses=QUERY)
async def list_fee_rules(p: CurrentIdentity, ledger: LedgerDep) -> FeeRules:
    """Every version of every fee rule, by scene, party and effective day (a
    version is in effect from its day until a later one's)."""
    got = await blocking(ledger.ledger_for(p).evaluate, "GetFeeRules", {})
    return FeeRules.model_validate(got)
