"""Models and types shared by the routers: pages, command receipts, events, and
the bounded types of parameters (days, block numbers, offsets).

Resource models live with their routers; none of them is a storage row: rows
are validated into these models field by field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from chaincode.contract import Day as ContractDay
from ledger.protocol import Receipt
from projections.follower import FollowerStatus
from projections.queries import Page as RowPage

M = TypeVar("M", bound=BaseModel)

# Integers the storage can hold (SQL BIGINT); larger ones are refused as 422.
MAX_INT64 = 2**63 - 1
# A calendar day as the contract takes it (YYYY-MM-DD, a real date), documented
# as a JSON Schema date so that a schema-driven client makes real ones.
Day = Annotated[ContractDay, WithJsonSchema(
    {"type": "string", "format": "date", "examples": ["2026-11-20"]})]
BlockNumber = Annotated[int, Field(ge=0, le=MAX_INT64)]


class Request(BaseModel):
    """Base of request bodies: unknown fields are an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[M]):
    items: list[M]
    total: int
    limit: int
    offset: int

    @classmethod
    def of(cls, rows: RowPage) -> Page[M]:
        """Validate a page of rows into the parametrised item model."""
        return cls.model_validate({"items": rows.items, "total": rows.total,
                                   "limit": rows.limit, "offset": rows.offset})


class EventOut(BaseModel):
    """A domain event the command recorded."""

    type: str
    aggregate_id: str
    version: int
    timestamp: datetime
    data: dict[str, Any]


class CommandResult(BaseModel):
    """A committed command: where it is on the ledger and what it recorded."""

    tx_id: str
    block_number: int
    status: str
    result: dict[str, Any]
    events: list[EventOut]

    @classmethod
    def of(cls, receipt: Receipt) -> CommandResult:
        return cls(tx_id=receipt.tx_id, block_number=receipt.block_number,
                   status=receipt.status, result=receipt.result,
                   events=[EventOut.model_validate(e) for e in receipt.events])


class ProjectionFailureOut(BaseModel):
    """An event a projection could not apply: the follower stopped before it
    (nothing after it is projected) until it is applied after a fix."""

    projection: str
    block: int
    tx: int
    event: int
    tx_id: str | None
    event_type: str
    error: str
    failed_at: datetime


class ProjectionStatus(BaseModel):
    """How far the read models are behind the ledger, and whether they are
    following it (``healthy``: no error, no failed event)."""

    healthy: bool
    running: bool
    ledger_height: int
    projected_block: int
    behind_blocks: int  # from a failed event's block on, when one failed
    positions: dict[str, tuple[int, int, int]]
    last_applied_at: datetime | None
    last_lag_ms: float | None
    error: str | None
    failed: ProjectionFailureOut | None

    @classmethod
    def of(cls, s: FollowerStatus) -> ProjectionStatus:
        projected = s.positions["blocks"].block
        complete = projected  # the last block whose events are all projected
        failed = None
        if (f := s.failure) is not None:
            complete = min(projected, f.position.block - 1)
            failed = {"projection": f.projection, "block": f.position.block,
                      "tx": f.position.tx, "event": f.position.event,
                      "tx_id": f.tx_id, "event_type": f.event_type,
                      "error": f.error, "failed_at": f.failed_at}
        return cls.model_validate({
            "healthy": s.healthy, "running": s.running,
            "ledger_height": s.ledger_height, "projected_block": projected,
            "behind_blocks": max(0, s.ledger_height - 1 - complete),
            "positions": s.positions, "last_applied_at": s.last_applied_at,
            "last_lag_ms": s.last_lag_ms,
            "error": s.error or (str(f) if f is not None else None),
            "failed": failed})


class Sealed(BaseModel):
    """A document sealed with this node's SM2 key (``ledger/crypto/sealed.py``):
    terminals check it offline against the pinned ``/api/signing-key``."""

    document: dict[str, Any]
    sm3: str
    signature: str
    key_sm3: str
