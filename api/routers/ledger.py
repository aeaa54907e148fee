"""Auditor endpoints (auditor, center admin): the history of any key with tx ids,
creators and block numbers; a block with its hashes and signatures; and a
verification of a block range that says what failed. These read the ledger
itself, not the projections."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from starlette.convertors import Convertor, register_url_convertor

from api.deps import Auditor, LedgerDep, blocking
from api.gateway import Gateway
from api.problems import Problem, responses
from api.schemas import BlockNumber

router = APIRouter(prefix="/api/ledger", tags=["audit"])


class _AnyText(Convertor[str]):
    """A path segment of any text, line breaks included (Starlette's ``path``
    stops at one), so that the key's own validation answers for every key."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("any_text", _AnyText())
# A world-state key as the contract writes them: printable, up to 1024 long.
LedgerKey = Annotated[str, Path(min_length=1, max_length=1024,
                                pattern=r"^[^\x00-\x1f\x7f]+$")]


class KeyVersionOut(BaseModel):
    key: str
    block_number: int
    tx_index: int
    tx_id: str
    creator: str
    timestamp: datetime
    value: str | None
    is_delete: bool


class TransactionOut(BaseModel):
    tx_id: str
    function: str
    creator_msp: str
    creator: str
    timestamp: datetime
    validation: str
    signature: str
    events: int


class LedgerBlockOut(BaseModel):
    number: int
    hash: str
    previous_hash: str
    data_hash: str
    timestamp: datetime
    tx_count: int
    signature: str = Field(description="embedded: the node's SM2 signature of the "
                           "hash; Fabric: the orderers that signed the block")
    transactions: list[TransactionOut]


class VerifyOut(BaseModel):
    ok: bool
    start: int = Field(serialization_alias="from")
    end: int = Field(serialization_alias="to")
    blocks: int
    transactions: int
    events: int
    error: str | None
    block_number: int | None
    tx_id: str | None


def _check_range(height: int, field: str, value: int) -> None:
    if not 0 <= value < height:
        raise Problem(404 if field == "number" else 400, "out-of-range",
                      f"block {value} is not on the chain", field,
                      f"0..{height - 1}")


def _history(gateway: Gateway, key: str) -> list[KeyVersionOut]:
    return [KeyVersionOut.model_validate(v, from_attributes=True)
            for v in gateway.reader.history(key)]


def _block(gateway: Gateway, number: int) -> LedgerBlockOut:
    _check_range(gateway.reader.height(), "number", number)
    block = gateway.reader.block(number)
    txs = [TransactionOut.model_validate({**t, "events": len(t["events"])})
           for t in block["transactions"]]
    return LedgerBlockOut.model_validate({**block, "transactions": txs})


def _verify(gateway: Gateway, start: int | None, end: int | None) -> VerifyOut:
    height = gateway.reader.height()
    first = 0 if start is None else start
    last = height - 1 if end is None else end
    _check_range(height, "from", first)
    _check_range(height, "to", last)
    if first > last:
        raise Problem(400, "out-of-range", f"from ({first}) is after to ({last})",
                      "from", f"0..{last}")
    report = gateway.verify(first, last)
    return VerifyOut(ok=report.ok, start=first, end=last, blocks=report.blocks,
                     transactions=report.transactions, events=report.events,
                     error=report.error, block_number=report.block_number,
                     tx_id=report.tx_id)


@router.get("/history/{key:any_text}", responses=responses(401, 403, 422, 503))
async def key_history(key: LedgerKey,
                      _: Auditor, gateway: LedgerDep) -> list[KeyVersionOut]:
    """Every version of a world-state key, oldest first (e.g. ``a~<id>`` is an
    aggregate's head, ``e~<id>~<version>`` one of its events)."""
    return await blocking(_history, gateway, key)


@router.get("/blocks/{number}", responses=responses(401, 403, 404, 422, 503))
async def ledger_block(number: Annotated[BlockNumber, Path()], _: Auditor,
                       gateway: LedgerDep) -> LedgerBlockOut:
    """A block as stored: header, hash, node signature, and its transactions
    with their creators and signatures (the genesis block lists none)."""
    return await blocking(_block, gateway, number)


@router.get("/verify", response_model_by_alias=True,
            responses=responses(400, 401, 403, 422, 503))
async def verify(_: Auditor, gateway: LedgerDep,
                 start: Annotated[BlockNumber | None, Query(alias="from")] = None,
                 end: Annotated[BlockNumber | None, Query(alias="to")] = None,
                 ) -> VerifyOut:
    """Re-check blocks ``from..to`` (default: the whole chain): header hashes and
    links, node signatures, data hashes, each transaction's creator certificate
    chain and signature, and the recorded events. ``ok`` is false with the
    first failure's block, tx id and reason."""
    return await blocking(_verify, gateway, start, end)
