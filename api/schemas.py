"""Response models shared by the routers: pages, command receipts, events.

Resource models live with their routers; none of them is a storage row: rows
are validated into these models field by field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from ledger.protocol import Receipt
from projections.follower import FollowerStatus
from projections.queries import Page as RowPage

M = TypeVar("M", bound=BaseModel)


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


class ProjectionStatus(BaseModel):
    """How far the read models are behind the ledger."""

    running: bool
    ledger_height: int
    projected_block: int
    behind_blocks: int
    positions: dict[str, tuple[int, int, int]]
    last_applied_at: datetime | None
    last_lag_ms: float | None
    error: str | None

    @classmethod
    def of(cls, s: FollowerStatus) -> ProjectionStatus:
        projected = s.positions["blocks"].block
        return cls.model_validate({
            "running": s.running, "ledger_height": s.ledger_height,
            "projected_block": projected,
            "behind_blocks": max(0, s.ledger_height - 1 - projected),
            "positions": s.positions, "last_applied_at": s.last_applied_at,
            "last_lag_ms": s.last_lag_ms, "error": s.error})
