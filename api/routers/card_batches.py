"""Cross-city card transaction batches (互联互通): the acquirer city reports,
issuer cities confirm or dispute record by record."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter
from pydantic import AfterValidator, BaseModel, Field

from api.deps import CommandsDep, CurrentIdentity, PageDep, ReadDB, scope_city
from api.limits import MIB
from api.problems import COMMAND, COMMAND_ON, READ, READ_ONE, Problem
from api.schemas import CommandResult, Day, Page, Request
from chaincode.cards import Party, RecordIds
from chaincode.contract import MAX_BATCH_RECORDS, CardRecord, Hash, Name, Text
from chaincode.merkle import merkle_root
from projections import queries
from projections.queries import INVOLVES_CITY, Where

router = APIRouter(prefix="/api/card-batches", tags=["card transactions"])
# A batch of MAX_BATCH_RECORDS records with the longest ids is 4 MB of JSON
# (4.9 MB indented): room for that, and for nothing much larger.
MAX_BODY = 8 * MIB


class CardBatchCreate(Request):
    business_day: Day
    # The contract's record type is the wire format the Merkle root is computed
    # over, so the API takes records in exactly that shape.
    records: Annotated[list[CardRecord], Field(min_length=1,
                                               max_length=MAX_BATCH_RECORDS)]
    merkle_root: Hash | None = Field(None, description="SM3 Merkle root of the "
                                     "records; computed by the API when absent")


def _distinct(record_ids: list[str]) -> list[str]:
    seen: set[str] = set()
    for rid in record_ids:
        if rid in seen:
            raise ValueError(f"record {rid!r} is listed twice")
        seen.add(rid)
    return record_ids


# The contract counts a repeated id once; a request that repeats one is refused
# here, as a client's mistake (and a way to make a transaction large).
DistinctRecordIds = Annotated[RecordIds, Field(json_schema_extra={
    "uniqueItems": True}), AfterValidator(_distinct)]


class ConfirmRequest(Request):
    record_ids: DistinctRecordIds = Field([], description="empty: every record "
                                          "of the caller's city still reported")


class DisputeRequest(Request):
    record_ids: Annotated[DistinctRecordIds, Field(min_length=1)]
    reason: Text


class DisputeResponse(Request):
    record_ids: Annotated[DistinctRecordIds, Field(min_length=1)]
    response: Literal["accept", "contest"]
    evidence_sm3: Hash | None = Field(None, description="contest: SM3 of the "
                                      "evidence, which stays off chain")
    note: Text | None = None


class Arbitration(Request):
    record_ids: Annotated[DistinctRecordIds, Field(min_length=1)]
    decision: Party
    reason: Text


class IssuerSummary(BaseModel):
    issuer_city: str
    status: str
    record_count: int
    amount_fen: int


class CardBatchOut(BaseModel):
    id: UUID
    acquirer_city: str
    business_day: str
    merkle_root: str
    record_count: int
    amount_fen: int
    confirmed_count: int
    disputed_count: int
    reported_by: str
    reported_at: datetime
    version: int


class CardBatchDetail(CardBatchOut):
    issuers: list[IssuerSummary]


@router.post("", status_code=201, responses=COMMAND)
async def report_batch(body: CardBatchCreate, commands: CommandsDep) -> CommandResult:
    """ReportTransactionBatch (city admin, terminal of the acquirer city); up
    to 10,000 records, a body of up to 8 MiB."""
    records = [r.model_dump(exclude_none=True) for r in body.records]
    root = body.merkle_root or merkle_root(records)
    return await commands.submit("ReportTransactionBatch", {
        "business_day": body.business_day, "records": records,
        "merkle_root": root})


@router.post("/{batch_id}/confirm", responses=COMMAND_ON)
async def confirm_batch(batch_id: UUID, body: ConfirmRequest,
                        commands: CommandsDep) -> CommandResult:
    """ConfirmTransactions (issuer city admin) before the day is cleared."""
    return await commands.submit("ConfirmTransactions", {
        "batch_id": str(batch_id), "record_ids": body.record_ids})


@router.post("/{batch_id}/dispute", responses=COMMAND_ON)
async def dispute_batch(batch_id: UUID, body: DisputeRequest,
                        commands: CommandsDep) -> CommandResult:
    """DisputeTransactions (issuer city admin): disputed records are excluded
    from clearing."""
    return await commands.submit("DisputeTransactions", {
        "batch_id": str(batch_id), **body.model_dump(mode="json")})


@router.post("/{batch_id}/dispute-response", responses=COMMAND_ON)
async def respond_to_dispute(batch_id: UUID, body: DisputeResponse,
                             commands: CommandsDep) -> CommandResult:
    """RespondToDispute (acquirer city admin): ``accept`` withdraws the disputed
    records; ``contest`` sends them to the center with the evidence's SM3."""
    return await commands.submit("RespondToDispute", {
        "batch_id": str(batch_id),
        **body.model_dump(mode="json", exclude_none=True)})


@router.post("/{batch_id}/arbitration", responses=COMMAND_ON)
async def arbitrate(batch_id: UUID, body: Arbitration,
                    commands: CommandsDep) -> CommandResult:
    """ArbitrateDispute (center admin): contested records decided for the
    ``acquirer`` are cleared (as an adjustment in the next run when their day
    is already cleared); for the ``issuer``, withdrawn."""
    return await commands.submit("ArbitrateDispute", {
        "batch_id": str(batch_id), **body.model_dump(mode="json")})


@router.get("", responses=READ)
async def list_batches(p: CurrentIdentity, read: ReadDB, page: PageDep,
                       business_day: Day | None = None,
                       acquirer_city: Name | None = None,
                       city: Name | None = None) -> Page[CardBatchOut]:
    """Batches, newest business day first; ``city`` matches the acquirer or an
    issuer. Non-center roles see batches that involve their city only."""
    involved = scope_city(p, city)
    where = (Where().eq("business_day", business_day)
             .eq("acquirer_city", acquirer_city)
             .cond(INVOLVES_CITY, involved, involved))
    return Page[CardBatchOut].of(
        await read(queries.card_batches, where, page.limit, page.offset))


@router.get("/{batch_id}", responses=READ_ONE)
async def get_batch(batch_id: UUID, p: CurrentIdentity,
                    read: ReadDB) -> CardBatchDetail:
    """One batch with record counts and amounts per issuer city and status."""
    row = await read.one(queries.card_batch, str(batch_id), "card batch",
                         "batch_id")
    cities = {row["acquirer_city"], *(i["issuer_city"] for i in row["issuers"])}
    if not p.sees_every_city and p.city not in cities:
        raise Problem(403, "forbidden-city", f"batch {batch_id} does not involve "
                      f"{p.city}", "batch_id", p.city)
    return CardBatchDetail.model_validate(row)
