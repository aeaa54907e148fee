"""The blocks read model: hashes, size, time and the verification state found
when each block was projected."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel

from api.deps import CurrentIdentity, PageDep, ReadDB
from api.problems import AUTHENTICATED, responses
from api.schemas import BlockNumber, Page
from projections import queries
from projections.queries import Where

router = APIRouter(prefix="/api/blocks", tags=["blocks"])


class BlockOut(BaseModel):
    number: int
    hash: str
    previous_hash: str
    data_hash: str
    tx_count: int
    committed_at: datetime
    verified: bool | None  # None: not checked by this node
    verify_error: str | None


@router.get("", responses=AUTHENTICATED)
async def list_blocks(_: CurrentIdentity, read: ReadDB, page: PageDep,
                      verified: bool | None = None) -> Page[BlockOut]:
    """Blocks, newest first; ``verified=false`` lists the ones that failed."""
    where = Where().eq("verified", None if verified is None else int(verified))
    return Page[BlockOut].of(await read(queries.blocks, where, page.limit, page.offset))


@router.get("/{number}", responses=responses(401, 404, 422))
async def get_block(number: Annotated[BlockNumber, Path()], _: CurrentIdentity,
                    read: ReadDB) -> BlockOut:
    row = await read.one(queries.block, number, "block", "number")
    return BlockOut.model_validate(row)
