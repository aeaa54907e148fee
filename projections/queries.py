"""Queries over the read models: filtered, paginated, and never touching the
ledger. Each returns plain rows (dicts); the API maps them to response models.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from projections.db import Database, Row


@dataclass
class Where:
    """An AND of conditions with their parameters; ``None`` values are skipped."""

    clauses: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def eq(self, column: str, value: Any) -> Where:
        if value is not None:
            self.clauses.append(f"{column} = ?")
            self.params.append(value)
        return self

    def cond(self, clause: str, *params: Any) -> Where:
        if all(p is not None for p in params):
            self.clauses.append(clause)
            self.params.extend(params)
        return self

    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.clauses) if self.clauses else ""


@dataclass(frozen=True)
class Page:
    items: list[Row]
    total: int
    limit: int
    offset: int


def page(db: Database, source: str, where: Where, order: str, limit: int,
         offset: int, columns: str = "*") -> Page:
    """One page of ``SELECT columns FROM source WHERE ... ORDER BY order``."""
    total = db.query(f"SELECT COUNT(*) AS n FROM {source}{where.sql()}",
                     where.params)[0]["n"]
    items = db.query(f"SELECT {columns} FROM {source}{where.sql()} ORDER BY {order} "
                     "LIMIT ? OFFSET ?", [*where.params, limit, offset])
    return Page(items, int(total), limit, offset)


# ----------------------------------------------------------------- identifiers
def identifiers(db: Database, where: Where, limit: int, offset: int) -> Page:
    return page(db, "identifiers", where, "registered_at DESC, id DESC", limit,
                offset)


def identifier(db: Database, identifier_id: str) -> Row | None:
    row = db.query_one("SELECT * FROM identifiers WHERE id = ?", (identifier_id,))
    if row is not None:
        row["links"] = db.query(
            "SELECT target_id, relation, linked_by, linked_at FROM identifier_links "
            "WHERE identifier_id = ? ORDER BY linked_at, target_id",
            (identifier_id,))
        row["linked_from"] = db.query(
            "SELECT identifier_id, relation, linked_by, linked_at "
            "FROM identifier_links WHERE target_id = ? "
            "ORDER BY linked_at, identifier_id", (identifier_id,))
    return row


# ---------------------------------------------------------------- code schemes
def _department(row: Row) -> Row:
    row["duties"] = json.loads(row["duties"])
    return row


def departments(db: Database, where: Where, limit: int, offset: int) -> Page:
    result = page(db, "departments", where, "city, code", limit, offset)
    return Page([_department(r) for r in result.items], result.total, limit, offset)


def department(db: Database, department_id: str) -> Row | None:
    row = db.query_one("SELECT * FROM departments WHERE id = ?", (department_id,))
    return _department(row) if row else None


def _scheme(row: Row) -> Row:
    checks = {k: bool(row[f"check_{k}"]) for k in ("duty", "duplicate", "sharing")}
    row["checks"] = checks if row["check_duty"] is not None else None
    return row


def code_schemes(db: Database, where: Where, limit: int, offset: int) -> Page:
    result = page(db, "code_schemes", where, "applied_at DESC, id DESC", limit,
                  offset)
    return Page([_scheme(r) for r in result.items], result.total, limit, offset)


def code_scheme(db: Database, scheme_id: str) -> Row | None:
    row = db.query_one("SELECT * FROM code_schemes WHERE id = ?", (scheme_id,))
    return _scheme(row) if row else None


# ------------------------------------------------------------- call campaigns
def _campaign(row: Row) -> Row:
    row["outcomes"] = json.loads(row["outcomes"]) if row["outcomes"] else None
    return row


def call_campaigns(db: Database, where: Where, limit: int, offset: int) -> Page:
    result = page(db, "call_campaigns", where, "started_at DESC, id DESC", limit,
                  offset)
    return Page([_campaign(r) for r in result.items], result.total, limit, offset)


def call_campaign(db: Database, campaign_id: str) -> Row | None:
    row = db.query_one("SELECT * FROM call_campaigns WHERE id = ?", (campaign_id,))
    return _campaign(row) if row else None


# ------------------------------------------------ cross-city card transactions
INVOLVES_CITY = ("(acquirer_city = ? OR EXISTS (SELECT 1 FROM card_records r "
                 "WHERE r.batch_id = card_batches.id AND r.issuer_city = ?))")


def card_batches(db: Database, where: Where, limit: int, offset: int) -> Page:
    return page(db, "card_batches", where, "business_day DESC, reported_at DESC, id",
                limit, offset)


def card_batch(db: Database, batch_id: str) -> Row | None:
    row = db.query_one("SELECT * FROM card_batches WHERE id = ?", (batch_id,))
    if row is not None:
        row["issuers"] = db.query(
            "SELECT issuer_city, status, COUNT(*) AS record_count, "
            "CAST(SUM(amount_fen) AS BIGINT) AS amount_fen FROM card_records "
            "WHERE batch_id = ? GROUP BY issuer_city, status "
            "ORDER BY issuer_city, status", (batch_id,))
    return row


def card_volumes(db: Database, where: Where, limit: int, offset: int) -> Page:
    return page(db, "card_volumes", where,
                "business_day DESC, acquirer_city, issuer_city", limit, offset)


# -------------------------------------------------------------------- clearing
def clearing_runs(db: Database, where: Where, limit: int, offset: int) -> Page:
    return page(db, "clearing_runs", where, "business_day DESC", limit, offset)


def clearing_run(db: Database, business_day: str) -> Row | None:
    row = db.query_one("SELECT * FROM clearing_runs WHERE business_day = ?",
                       (business_day,))
    if row is not None:
        row["positions"] = db.query(
            "SELECT city, net_fen FROM clearing_positions WHERE business_day = ? "
            "ORDER BY city", (business_day,))
    return row


# ---------------------------------------------------------------------- blocks
def blocks(db: Database, where: Where, limit: int, offset: int) -> Page:
    return page(db, "block_summaries", where, "number DESC", limit, offset)


def block(db: Database, number: int) -> Row | None:
    return db.query_one("SELECT * FROM block_summaries WHERE number = ?",
                        (number,))


# ------------------------------------------------------------------- dashboard
def dashboard(db: Database, days: int = 30, latest_blocks: int = 10) -> Row:
    """Everything the leaders' cockpit (领导驾驶舱) shows, in one read."""
    total = "CAST(SUM(amount_fen) AS BIGINT)"
    last = db.query("SELECT MAX(business_day) AS d FROM clearing_runs")[0]["d"]
    return {
        "volume_per_day": db.query(
            f"SELECT business_day, CAST(SUM(record_count) AS BIGINT) AS "
            f"record_count, {total} AS amount_fen FROM card_volumes "
            "GROUP BY business_day ORDER BY business_day DESC LIMIT ?", (days,)),
        "city_pair_flows": db.query(
            f"SELECT acquirer_city, issuer_city, CAST(SUM(record_count) AS BIGINT) "
            f"AS record_count, {total} AS amount_fen FROM card_volumes "
            "GROUP BY acquirer_city, issuer_city ORDER BY acquirer_city, "
            "issuer_city"),
        "net_positions": db.query(
            "SELECT city, CAST(SUM(net_fen) AS BIGINT) AS net_fen, COUNT(*) AS days, "
            "MAX(business_day) AS last_business_day FROM clearing_positions "
            "GROUP BY city ORDER BY city"),
        "latest_clearing": clearing_run(db, last) if last else None,
        "code_schemes_by_status": db.query(
            "SELECT status, COUNT(*) AS count FROM code_schemes GROUP BY status "
            "ORDER BY status"),
        "identifiers_by_kind": db.query(
            "SELECT kind, status, COUNT(*) AS count FROM identifiers "
            "GROUP BY kind, status ORDER BY kind, status"),
        "latest_blocks": db.query(
            "SELECT * FROM block_summaries ORDER BY number DESC LIMIT ?",
            (latest_blocks,)),
    }


class DashboardCache:
    """The dashboard's rows, recomputed only when a projection has moved: its
    aggregates cost far more than reading the positions, and leaders' screens
    poll it."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._entries: dict[tuple[int, int], tuple[list[Row], Row]] = {}
        self._lock = threading.Lock()

    def __call__(self, db: Database, days: int = 30, latest_blocks: int = 10) -> Row:
        positions = db.query("SELECT name, block, tx, event FROM "
                             "projection_tracking ORDER BY name")
        key = (days, latest_blocks)
        with self._lock:
            found = self._entries.get(key)
        if found is not None and found[0] == positions:
            return found[1]
        rows = dashboard(db, days, latest_blocks)
        with self._lock:
            if len(self._entries) >= self.size:
                self._entries.clear()
            self._entries[key] = (positions, rows)
        return rows
