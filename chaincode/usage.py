"""City QR code usage (用码): a city's terminals report the codes they scanned,
valid or refused, in batches of up to 10,000 scans with the Merkle root of the
scans, one event per batch (CodeUsageReported). The read side finds zombie
codes, over-issuing schemes, copied static codes and replayed dynamic ones.

No personal data: a serial is random, a code appears only as its SM3.

A scan's Merkle leaf is the canonical JSON (chaincode.encoding) of the scan as
sent, ``reason`` only when present (every other field admits one spelling
only: the scheme id is a UUID's lowercase hyphenated form);
``chaincode.merkle.merkle_root(scans)`` computes the root.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from chaincode.domain import CodeUsage
from chaincode.errors import Conflict, InvalidArgument, Unauthorized
from chaincode.identity import Role
from chaincode.issuing import Moment
from chaincode.merkle import merkle_root
from chaincode.registry import Args, Context, Hash, Name, Text, command
from network.consortium import load_consortium

MAX_SCANS = 10_000
# A scan may be stamped a little after the transaction by a terminal whose clock
# runs ahead; anything later is a wrong clock or an invented scan.
CLOCK_SKEW = timedelta(minutes=5)

Serial = Annotated[str, Field(pattern=r"^[0-9a-f]{24}$")]  # 12 random bytes
# A UUID as a string of one spelling, so that the leaf is the scan as sent.
SchemeId = Annotated[str, Field(
    pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    json_schema_extra={"format": "uuid"})]
ScanKind = Literal["static", "dynamic"]
ScanResult = Literal["valid", "refused"]


class CodeScan(Args):
    serial: Serial
    scheme_id: SchemeId
    kind: ScanKind
    at: Moment
    result: ScanResult
    reason: Text | None = None  # the verifier's, for a refused scan only
    code_sm3: Hash  # SM3 of the code's text

    @field_validator("at")
    @classmethod
    def _real_time(cls, v: str) -> str:
        datetime.fromisoformat(v)  # 13:61 on 02-30 is refused, naming the field
        return v


class ReportUsageArgs(Args):
    terminal_id: Name
    scans: Annotated[list[CodeScan], Field(min_length=1, max_length=MAX_SCANS)]
    merkle_root: Hash


def scan_of(scan: CodeScan) -> dict[str, Any]:
    """A validated scan as its Merkle leaf encodes it and the event carries it."""
    return scan.model_dump(mode="json", exclude_none=True)


@command("ReportCodeUsage", ReportUsageArgs, Role.TERMINAL, Role.CITY_ADMIN)
def report_code_usage(ctx: Context, a: ReportUsageArgs) -> dict[str, Any]:
    """A city's terminal (or its city admin) reports scans; the report is the
    caller's city's, and the same scans are reported once."""
    city = ctx.caller.city
    if city not in load_consortium().city_names:
        raise Unauthorized("only a member city's terminals report code usage")
    latest = ctx.stub.get_tx_timestamp() + CLOCK_SKEW
    scans = [scan_of(s) for s in a.scans]
    for i, s in enumerate(scans):
        if s["result"] == "valid" and "reason" in s:
            raise InvalidArgument("a valid scan has no refusal reason",
                                  f"scans.{i}.reason")
        if datetime.fromisoformat(s["at"]) > latest:
            raise InvalidArgument(f"scan time {s['at']} is after the transaction "
                                  f"({latest - CLOCK_SKEW:%Y-%m-%dT%H:%M:%SZ}); "
                                  "check the terminal's clock", f"scans.{i}.at")
    root = merkle_root(scans)
    if root != a.merkle_root:
        raise InvalidArgument(f"Merkle root does not match the scans (computed "
                              f"{root})", "merkle_root")
    report_id = CodeUsage.create_id(root)
    if ctx.session.exists(report_id):
        raise Conflict("these scans are already reported", field="merkle_root")
    valid = sum(s["result"] == "valid" for s in scans)
    report = CodeUsage(city=city, terminal_id=a.terminal_id, merkle_root=root,
                       count=len(scans), valid=valid, refused=len(scans) - valid,
                       scans=scans, reported_by=str(ctx.caller))
    ctx.session.save(report)
    return {"id": str(report_id), "count": report.count, "valid": valid,
            "refused": report.refused}
