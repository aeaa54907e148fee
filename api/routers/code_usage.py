"""City QR code usage (用码) and its supervision (监管及考核分析): terminals
report the codes they scanned; the read side answers scans per code, per
scheme, city and day, zombie codes (僵尸码) per batch, schemes that issue far
more than is used, likely copies of static codes and replays of dynamic ones,
each with the records behind it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from api.deps import CommandsDep
from api.limits import MIB
from api.problems import COMMAND
from api.schemas import CommandResult, Request
from chaincode.contract import Hash, Name
from chaincode.merkle import merkle_root
from chaincode.usage import MAX_SCANS, CodeScan, scan_of

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
