"""Settlement (结算) of cleared days: each city's statement (JSON, CSV, PDF),
its confirmation with the city's SM2 signature, its completion by the center,
and the cities' settlement keys. Unconfirmed statements past their day are
overdue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from api.deps import (
    CommandsDep,
    CurrentIdentity,
    LedgerDep,
    PageDep,
    ReadDB,
    blocking,
    scope_city,
)
from api.problems import COMMAND, COMMAND_ON, QUERY, READ, files
from api.schemas import CommandResult, Day, Page, Request
from api.statements import to_csv, to_pdf
from chaincode.contract import Hash, Name, Text
from chaincode.settlement import PemText, SignatureB64
from projections import queries
from projections.queries import Where

router = APIRouter(prefix="/api/settlements", tags=["settlement"])
keys = APIRouter(prefix="/api/settlement-keys", tags=["settlement"])

Status = Literal["pending", "confirmed", "completed", "overdue"]


class SettlementOut(BaseModel):
    business_day: str
    city: str
    position_fen: int
    gross_fen: int
    fees_fen: int
    statement_sm3: str
    confirm_by: str
    status: str
    overdue: bool
    confirmed_by: str | None
    confirmed_at: datetime | None
    completed_at: datetime | None
    payment_reference: str | None


class StatementOut(BaseModel):
    statement: dict[str, Any]
    statement_sm3: str
    settlement: dict[str, Any] | None


class ConfirmRequest(Request):
    statement_sm3: Hash
    signature: SignatureB64


class CompleteRequest(Request):
    payment_reference: Text


class SettlementKeyCreate(Request):
    public_key_pem: PemText


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def _out(row: dict[str, Any], now: str) -> SettlementOut:
    return SettlementOut.model_validate(
        {**row, "overdue": row["status"] == "pending" and row["confirm_by"] < now})


@router.get("", responses=READ)
async def list_settlements(p: CurrentIdentity, read: ReadDB, page: PageDep,
                           business_day: Day | None = None,
                           city: Name | None = None,
                           status: Status | None = None) -> Page[SettlementOut]:
    """Each city's settlement per cleared day, newest first; ``overdue``:
    pending past its confirm-by day. Non-center roles see their own city."""
    now = today()
    where = (Where().eq("business_day", business_day)
             .eq("city", scope_city(p, city)))
    if status == "overdue":
        where.cond("status = 'pending' AND confirm_by < ?", now)
    else:
        where.eq("status", status)
    found = await read(queries.settlements, where, page.limit, page.offset)
    return Page[SettlementOut](items=[_out(r, now) for r in found.items],
                               total=found.total, limit=found.limit,
                               offset=found.offset)


@router.get("/{business_day}/{city}", responses={**QUERY, **files(
    "text/csv", "application/pdf")},
            response_model=StatementOut)
async def get_statement(business_day: Day, city: Name, p: CurrentIdentity,
                        ledger: LedgerDep,
                        format: Annotated[Literal["json", "csv", "pdf"],
                                          Query()] = "json") -> Any:
    """A city's statement of a cleared day, read from the ledger
    (GetSettlementStatement): ``json`` (the canonical document the city signs,
    its SM3 and the settlement so far), ``csv`` or ``pdf``."""
    scope_city(p, city)
    got = await blocking(ledger.ledger_for(p).evaluate, "GetSettlementStatement",
                         {"business_day": business_day, "city": city})
    if format == "json":
        return StatementOut.model_validate(got)
    name = f"statement-{city}-{business_day}"
    args = (got["statement"], got["statement_sm3"], got["settlement"])
    if format == "csv":
        return Response(to_csv(*args), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition":
                                 f'attachment; filename="{name}.csv"'})
    pdf = await blocking(to_pdf, *args)
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{name}.pdf"'})


@router.post("/{business_day}/confirmation", status_code=201, responses=COMMAND_ON)
async def confirm(business_day: Day, body: ConfirmRequest,
                  commands: CommandsDep) -> CommandResult:
    """ConfirmSettlement (city admin): the SM2 signature, base64 DER, over the
    canonical JSON of the caller city's statement, with its registered key."""
    return await commands.submit("ConfirmSettlement", {
        "business_day": business_day, **body.model_dump(mode="json")})


@router.post("/{business_day}/{city}/completion", status_code=201,
             responses=COMMAND_ON)
async def complete(business_day: Day, city: Name, body: CompleteRequest,
                   commands: CommandsDep) -> CommandResult:
    """CompleteSettlement (center admin): the funds of a confirmed statement
    have moved; the payment's reference is recorded."""
    return await commands.submit("CompleteSettlement", {
        "business_day": business_day, "city": city,
        "payment_reference": body.payment_reference})


@keys.post("", status_code=201, responses=COMMAND)
async def register_key(body: SettlementKeyCreate,
                       commands: CommandsDep) -> CommandResult:
    """RegisterSettlementKey (city admin): the SM2 public key (PEM) the city
    signs statements with; registering another rotates it."""
    return await commands.submit("RegisterSettlementKey",
                                 body.model_dump(mode="json"))
