"""Fee rules (服务价格): the center publishes a versioned rule per scene and
party. (Reading the versions goes through the contract's GetFeeRules for now;
a projection and list endpoint are still to come.)"""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CommandsDep
from api.problems import COMMAND
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
