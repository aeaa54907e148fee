"""Cross-city card transaction batches (互联互通): the acquirer city reports,
issuer cities confirm or dispute record by record."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import (
    CurrentIdentity,
    LedgerDep,
    PageDep,
    ReadDB,
    scope_city,
    submit,
)
from api.problems import RESPONSES, Problem
from api.schemas import CommandResult, Page, Request
from chaincode.contract import MAX_BATCH_RECORDS, CardRecord, Day, Hash, Name, Text
from chaincode.merkle import merkle_root
from projections import queries
from projections.queries import INVOLVES_CITY, Where

router = APIRouter(prefix="/api/card-batches", tags=["card transactions"],
                   responses=RESPONSES)


class CardBatchCreate(Request):
    business_day: Day
    # The contract's record type is the wire format the Merkle root is computed
    # over, so the API takes records in exactly that shape.
    records: Annotated[list[CardRecord], Field(min_length=1,
                                               max_length=MAX_BATCH_RECORDS)]
    merkle_root: Hash | None = Field(None, description="SM3 Merkle root of the "
                                     "records; computed by the API when absent")


class ConfirmRequest(Request):
    record_ids: list[Name] = Field([], description="empty: every record of the "
                                   "caller's city still reported")


class DisputeRequest(Request):
    record_ids: Annotated[list[Name], Field(min_length=1)]
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


@router.post("", status_code=201)
async def report_batch(body: CardBatchCreate, p: CurrentIdentity,
                       gateway: LedgerDep) -> CommandResult:
    """ReportTransactionBatch (city admin, terminal of the acquirer city)."""
    records = [r.model_dump() for r in body.records]
    root = body.merkle_root or merkle_root(records)
    return await submit(gateway, p, "ReportTransactionBatch", {
        "business_day": body.business_day, "records": records,
        "merkle_root": root})


@router.post("/{batch_id}/confirm")
async def confirm_batch(batch_id: UUID, body: ConfirmRequest, p: CurrentIdentity,
                        gateway: LedgerDep) -> CommandResult:
    """ConfirmTransactions (issuer city admin) before the day is cleared."""
    return await submit(gateway, p, "ConfirmTransactions", {
        "batch_id": str(batch_id), "record_ids": body.record_ids})


@router.post("/{batch_id}/dispute")
async def dispute_batch(batch_id: UUID, body: DisputeRequest, p: CurrentIdentity,
                        gateway: LedgerDep) -> CommandResult:
    """DisputeTransactions (issuer city admin): disputed records are excluded
    from clearing."""
    return await submit(gateway, p, "DisputeTransactions", {
        "batch_id": str(batch_id), **body.model_dump(mode="json")})


@router.get("")
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


@router.get("/{batch_id}")
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
