"""Card loss and blacklist (挂失、黑名单): issuer cities report cards; terminals
fetch what changed since a ledger height as a document sealed with this node's
SM2 key (``/api/signing-key``) and check it offline."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import CommandsDep, CurrentIdentity, ReadDB, RuntimeDep
from api.problems import AUTHENTICATED, COMMAND
from api.schemas import BlockNumber, CommandResult, Request, Sealed
from chaincode.blacklist import MAX_CARDS, BlockedCard
from chaincode.encoding import sm3_hex
from projections import queries
from projections.views import Blacklist

router = APIRouter(prefix="/api/card-blacklist", tags=["card transactions"])
signing = APIRouter(prefix="/api/signing-key", tags=["system"])
DELTA_LIMIT = 10_000
MAX_BLOCK_CARDS = 10_000_000  # more than any block holds


class BlacklistCreate(Request):
    cards: Annotated[list[BlockedCard], Field(min_length=1, max_length=MAX_CARDS)]


class SigningKeyOut(BaseModel):
    public_key_pem: str
    key_sm3: str


@router.post("", status_code=201, responses=COMMAND)
async def blacklist(body: BlacklistCreate, commands: CommandsDep) -> CommandResult:
    """BlacklistCards (city admin of the issuer city): cards by the hash of
    their number, the reason and the time from which they are blocked."""
    return await commands.submit("BlacklistCards", body.model_dump(mode="json"))


@router.get("/delta", responses=AUTHENTICATED)
async def delta(_: CurrentIdentity, read: ReadDB, runtime: RuntimeDep,
                since: Annotated[BlockNumber, Query(
                    description="the ledger height the terminal has: cards "
                    "blacklisted in later blocks are returned")] = 0) -> Sealed:
    """The cards blacklisted after block ``since``, oldest first (at most
    10,000: ``through_block`` is where to continue; ``complete`` says whether
    that was all), sealed with this node's SM2 key."""
    # Blocks before the one the projection is in are wholly projected; the
    # cards of that one come with a later delta (a card sent twice is harmless).
    position = runtime.follower.positions.get(Blacklist.name)
    projected = position.block - 1 if position is not None else -1
    rows = await read(queries.blacklist_since, since, DELTA_LIMIT + 1)
    rows = [r for r in rows if r["block"] <= projected]
    complete = len(rows) <= DELTA_LIMIT
    if complete:
        through = max(since, projected)
    else:  # end on a whole block, so the next delta starts cleanly
        first, through = rows[0]["block"], rows[DELTA_LIMIT]["block"] - 1
        if through < first:  # one block holds more than the limit: send it whole
            through = first
            rows = await read(queries.blacklist_since, first - 1, MAX_BLOCK_CARDS)
        rows = [r for r in rows if r["block"] <= through]
    return Sealed.model_validate(runtime.signer.seal({
        "kind": "cityunion/card-blacklist-delta/1", "since_block": since,
        "through_block": through, "complete": complete, "cards": rows}))


@signing.get("", responses=AUTHENTICATED)
async def signing_key(_: CurrentIdentity, runtime: RuntimeDep) -> SigningKeyOut:
    """This node's SM2 public key, which seals the documents terminals check
    offline: pin it (compare ``key_sm3`` out of band)."""
    return SigningKeyOut(public_key_pem=runtime.signer.public_pem,
                         key_sm3=sm3_hex(runtime.signer.pair[1]))
