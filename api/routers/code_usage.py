"""City QR code usage (用码) and its supervision (监管及考核分析): terminals
report the codes they scanned; the read side answers scans per code, per
scheme, city and day, zombie codes (僵尸码) per batch, schemes that issue far
more than is used, likely copies of static codes and replays of dynamic ones,
each with the records behind it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import (
    CommandsDep,
    CurrentIdentity,
    PageDep,
    PageParams,
    ReadDB,
    Reads,
    not_found,
    scope_city,
)
from api.limits import MIB
from api.problems import COMMAND, READ, READ_ONE, Problem, files
from api.routers.statistics import Format, From, Rows, To, answer
from api.schemas import CommandResult, Day, Page, Request
from api.tokens import Principal
from chaincode.contract import Hash, Name
from chaincode.merkle import merkle_root
from chaincode.usage import MAX_SCANS, CodeScan, SchemeId, Serial, scan_of
from projections import queries
from projections.queries import INVOLVES_ALERT_CITY, Where

router = APIRouter(prefix="/api/code-usage", tags=["code usage"])
# 10,000 scans with the longest reasons are about 6 MB of JSON.
MAX_BODY = 8 * MIB


class UsageReport(Request):
    terminal_id: Name
    # The contract's scan type is the wire format the Merkle root is computed
    # over, so the API takes scans in exactly that shape.
    scans: Annotated[list[CodeScan], Field(min_length=1, max_length=MAX_SCANS)]
    merkle_root: Hash | None = Field(None, description="SM3 Merkle root of the "
                                     "scans; computed by the API when absent")


@router.post("", status_code=201, responses=COMMAND)
async def report_usage(body: UsageReport, commands: CommandsDep) -> CommandResult:
    """ReportCodeUsage (terminal or city admin of the reporting city): up to
    10,000 scans, valid or refused, of any member city's codes; the same
    scans are reported once."""
    scans = [scan_of(s) for s in body.scans]
    return await commands.submit("ReportCodeUsage", {
        "terminal_id": body.terminal_id, "scans": scans,
        "merkle_root": body.merkle_root or merkle_root(scans)})


# ------------------------------------------------------------------- reads
class ScanOut(BaseModel):
    report_id: str
    idx: int  # the scan's place in its report
    city: str  # where it was scanned
    terminal_id: str
    serial: str
    scheme_id: str
    kind: str
    scanned_at: str
    result: str
    reason: str | None
    code_sm3: str
    reported_at: str


class CodeBatchOut(BaseModel):
    id: str
    scheme_id: str
    city: str
    department: str
    code_count: int
    serial_prefix: str | None
    not_before: str
    not_after: str
    merkle_root: str
    issued_at: str


class CodeScansOut(BaseModel):
    serial: str
    scans: list[ScanOut]
    batches: list[CodeBatchOut]  # the batches whose serial prefix it carries


class ZombieBatchOut(CodeBatchOut):
    scanned: int  # distinct serials scanned valid in the window
    zombie: int  # issued minus scanned


class BatchUse(BaseModel):
    id: str
    code_count: int
    serial_prefix: str | None
    issued_at: str
    scanned: int


class OverIssuingOut(BaseModel):
    scheme_id: str
    city: str
    department: str
    issued: int
    scanned: int  # distinct serials ever scanned valid
    ratio: float | None  # issued / scanned; null: none scanned
    batches: list[BatchUse]


class OverIssuing(BaseModel):
    schemes: list[OverIssuingOut]


class CodeAlertOut(BaseModel):
    id: str
    kind: str
    subject: str  # the serial (a copy) or the code's SM3 (a replay)
    scheme_id: str
    day: str
    detail: str
    records: list[dict[str, Any]]  # the scans: report, idx, city, terminal, at
    detected_at: str


@router.get("", responses={**READ, **files("text/csv")}, response_model=Rows)
async def usage(p: CurrentIdentity, read: ReadDB, scheme: SchemeId | None = None,
                city: Name | None = None, day_from: From = None,
                day_to: To = None, format: Format = "json") -> Any:
    """Scans per day, scheme, scanning city, kind and result, for days
    ``from..to``; ``city``: scanned there or of its schemes' codes.
    Non-center roles see their own city's."""
    if day_from and day_to and day_from > day_to:
        raise Problem(422, "invalid-request", f"from ({day_from}) is after to "
                      f"({day_to})", "from", "a day on or before to")
    rows = await read(queries.code_usage, scheme, scope_city(p, city), day_from,
                      day_to)
    return answer(rows, format, "code-usage")


@router.get("/codes/{serial}", responses=READ_ONE)
async def code_scans(serial: Serial, p: CurrentIdentity,
                     read: ReadDB) -> CodeScansOut:
    """One code's scans, oldest first, and its batch; 404 when neither is
    known. Non-center roles see the scans made in their city or of their
    schemes' codes, and their city's batches."""
    found = await read(queries.code_scans, serial, scope_city(p, None))
    if not (found["scans"] or found["batches"]):
        raise not_found("scan or batch of code", serial, "serial")
    return CodeScansOut.model_validate(found)


@router.get("/zombies", responses=READ)
async def zombies(p: CurrentIdentity, read: ReadDB, page: PageDep,
                  days: Annotated[int, Query(ge=1, le=3660)] = 30,
                  as_of: Day | None = None,
                  city: Name | None = None) -> Page[ZombieBatchOut]:
    """Zombie codes (僵尸码) per batch: of the batches issued at least ``days``
    days before the end of ``as_of`` (default today, UTC), the codes not
    scanned valid in those days; most first. ``city``: the batches' city."""
    end = datetime.combine(date.fromisoformat(as_of) if as_of
                           else datetime.now(UTC).date(), time(), UTC)
    until = int((end + timedelta(days=1)).timestamp())
    return Page[ZombieBatchOut].of(await read(
        queries.zombie_batches, until, days, scope_city(p, city), page.limit,
        page.offset))


@router.get("/over-issuing", responses=READ)
async def over_issuing(p: CurrentIdentity, read: ReadDB,
                       ratio: Annotated[float, Query(ge=1, le=1e9)] = 10,
                       city: Name | None = None) -> OverIssuing:
    """Schemes issuing far more codes than are used: issued at least ``ratio``
    times the distinct codes ever scanned valid, with their batches."""
    return OverIssuing(schemes=[OverIssuingOut.model_validate(r) for r in await read(
        queries.over_issuing, ratio, scope_city(p, city))])


async def _alerts(p: Principal, read: Reads, page: PageParams, kind: str,
                  city: str | None, day: str | None) -> Page[CodeAlertOut]:
    involved = scope_city(p, city)
    where = (Where().eq("kind", kind).eq("day", day)
             .cond(INVOLVES_ALERT_CITY, involved, involved))
    return Page[CodeAlertOut].of(
        await read(queries.code_alerts, where, page.limit, page.offset))


@router.get("/copies", responses=READ)
async def copies(p: CurrentIdentity, read: ReadDB, page: PageDep,
                 city: Name | None = None,
                 day: Day | None = None) -> Page[CodeAlertOut]:
    """Likely copies: one static code scanned valid in two cities within 10
    minutes, with the scans; newest first. ``city``: a city of the scans or
    the scheme's."""
    return await _alerts(p, read, page, "likely_copy", city, day)


@router.get("/replays", responses=READ)
async def replays(p: CurrentIdentity, read: ReadDB, page: PageDep,
                  city: Name | None = None,
                  day: Day | None = None) -> Page[CodeAlertOut]:
    """Dynamic replays: one dynamic code (its SM3) accepted by two terminals,
    with the scans; newest first."""
    return await _alerts(p, read, page, "dynamic_replay", city, day)

