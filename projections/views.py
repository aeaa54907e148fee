"""The read models and the projections that keep them, one per event family.

A projection owns some tables and handles committed events by type; unknown
types are skipped (their position still advances). Handlers only write through
the cursor they are given, inside the follower's transaction, so a view update
and the projection's position always commit together. The blocks projection
follows block numbers instead of events.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar

from ledger.protocol import CommittedEvent
from projections.db import Cursor

Handler = Callable[[Any, Cursor, CommittedEvent], None]

TRACKING_SCHEMA = """
CREATE TABLE IF NOT EXISTS projection_tracking (
    name TEXT PRIMARY KEY, block BIGINT NOT NULL, tx INTEGER NOT NULL,
    event INTEGER NOT NULL, updated_at TEXT, tx_id TEXT)
"""


def on(event_type: str) -> Callable[[Handler], Handler]:
    """Mark a projection method as the handler of one event type."""
    def mark(fn: Handler) -> Handler:
        fn.event_type = event_type  # type: ignore[attr-defined]
        return fn
    return mark


class Projection:
    """A read model: its tables (DDL) and its event handlers."""

    name: ClassVar[str]
    schema: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]
    handlers: ClassVar[dict[str, Handler]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.handlers = {fn.event_type: fn for fn in vars(cls).values()
                        if hasattr(fn, "event_type")}

    def apply(self, cur: Cursor, ev: CommittedEvent) -> None:
        handler = self.handlers.get(ev.type)
        if handler is not None:
            handler(self, cur, ev)


def _flag(value: Any) -> int | None:
    return None if value is None else int(bool(value))


class Identifiers(Projection):
    """Unified identifiers (统一基础标识) with their links."""

    name = "identifiers"
    tables = ("identifier_links", "identifiers")
    schema = """
    CREATE TABLE IF NOT EXISTS identifiers (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, category TEXT NOT NULL,
        scheme TEXT NOT NULL, natural_key_hash TEXT NOT NULL, city TEXT NOT NULL,
        status TEXT NOT NULL, has_attributes INTEGER NOT NULL,
        registered_by TEXT NOT NULL, registered_at TEXT NOT NULL,
        revoked_reason TEXT, updated_at TEXT NOT NULL, version INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS identifiers_city ON identifiers (city, kind);
    CREATE INDEX IF NOT EXISTS identifiers_newest ON identifiers (registered_at, id);
    CREATE TABLE IF NOT EXISTS identifier_links (
        identifier_id TEXT NOT NULL, target_id TEXT NOT NULL, relation TEXT NOT NULL,
        linked_by TEXT NOT NULL, linked_at TEXT NOT NULL,
        PRIMARY KEY (identifier_id, target_id, relation));
    CREATE INDEX IF NOT EXISTS identifier_links_target
        ON identifier_links (target_id)
    """

    @staticmethod
    def _touch(cur: Cursor, ev: CommittedEvent, sets: str = "",
               params: tuple[Any, ...] = ()) -> None:
        cur.execute(f"UPDATE identifiers SET {sets}version = ?, updated_at = ? "
                    "WHERE id = ?", (*params, ev.version, ev.timestamp,
                                     ev.aggregate_id))

    @on("IdentifierRegistered")
    def registered(self, cur: Cursor, ev: CommittedEvent) -> None:
        d = ev.data
        cur.execute("INSERT INTO identifiers VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                    (ev.aggregate_id, d["kind"], d["category"], d["scheme"],
                     d["natural_key_hash"], d["city"],
                     "pending" if d["kind"] == "object" else "active",
                     int(d.get("attributes") is not None), d["registered_by"],
                     ev.timestamp, ev.timestamp, ev.version))

    @on("IdentifierLinked")
    def linked(self, cur: Cursor, ev: CommittedEvent) -> None:
        d = ev.data
        cur.execute("INSERT INTO identifier_links VALUES (?, ?, ?, ?, ?)",
                    (ev.aggregate_id, d["target_id"], d["relation"], d["linked_by"],
                     ev.timestamp))
        self._touch(cur, ev)

    @on("IdentifierActivated")
    def activated(self, cur: Cursor, ev: CommittedEvent) -> None:
        self._touch(cur, ev, "status = ?, ", ("active",))

    @on("IdentifierRevoked")
    def revoked(self, cur: Cursor, ev: CommittedEvent) -> None:
        self._touch(cur, ev, "status = ?, revoked_reason = ?, ",
                    ("revoked", ev.data["reason"]))


class CodeSchemes(Projection):
    """City QR code (城市二维码): departments and code schemes with their checks."""

    name = "code_schemes"
    tables = ("departments", "code_schemes")
    schema = """
    CREATE TABLE IF NOT EXISTS departments (
        id TEXT PRIMARY KEY, city TEXT NOT NULL, code TEXT NOT NULL,
        name TEXT NOT NULL, duties TEXT NOT NULL, registered_at TEXT NOT NULL,
        UNIQUE (city, code));
    CREATE TABLE IF NOT EXISTS code_schemes (
        id TEXT PRIMARY KEY, city TEXT NOT NULL, department TEXT NOT NULL,
        application_name TEXT NOT NULL, code_type TEXT NOT NULL, scope TEXT NOT NULL,
        data_sharing_commitment INTEGER NOT NULL, status TEXT NOT NULL,
        check_duty INTEGER, check_duplicate INTEGER, check_sharing INTEGER,
        applied_by TEXT NOT NULL, applied_at TEXT NOT NULL, decided_by TEXT,
        decided_at TEXT, reason TEXT, version INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS code_schemes_city ON code_schemes (city, status);
    CREATE INDEX IF NOT EXISTS code_schemes_newest ON code_schemes (applied_at, id)
    """

    @on("DepartmentRegistered")
    def department(self, cur: Cursor, ev: CommittedEvent) -> None:
        d = ev.data
        cur.execute("INSERT INTO departments VALUES (?, ?, ?, ?, ?, ?)",
                    (ev.aggregate_id, d["city"], d["code"], d["name"],
                     json.dumps(d["duties"]), ev.timestamp))

    @on("CodeSchemeApplied")
    def applied(self, cur: Cursor, ev: CommittedEvent) -> None:
        d = ev.data
        cur.execute("INSERT INTO code_schemes VALUES (?, ?, ?, ?, ?, ?, ?, "
                    "'applied', NULL, NULL, NULL, ?, ?, NULL, NULL, NULL, ?)",
                    (ev.aggregate_id, d["city"], d["department"],
                     d["application_name"], d["code_type"], d["scope"],
                     int(d["data_sharing_commitment"]), d["applied_by"],
                     ev.timestamp, ev.version))

    def _decide(self, cur: Cursor, ev: CommittedEvent, status: str,
                by: str) -> None:
        checks = ev.data.get("checks", {})
        cur.execute("UPDATE code_schemes SET status = ?, check_duty = ?, "
                    "check_duplicate = ?, check_sharing = ?, decided_by = ?, "
                    "decided_at = ?, reason = ?, version = ? WHERE id = ?",
                    (status, _flag(checks.get("duty")),
                     _flag(checks.get("duplicate")), _flag(checks.get("sharing")),
                     by, ev.timestamp, ev.data.get("reason"), ev.version,
                     ev.aggregate_id))

    @on("CodeSchemeApproved")
    def approved(self, cur: Cursor, ev: CommittedEvent) -> None:
        self._decide(cur, ev, "approved", ev.data["approved_by"])

    @on("CodeSchemeRejected")
    def rejected(self, cur: Cursor, ev: CommittedEvent) -> None:
        self._decide(cur, ev, "rejected", ev.data["rejected_by"])


class CardTransactions(Projection):
    """Cross-city card transactions (互联互通): batches, their records and the
    volume per business day and city pair (acquirer → issuer)."""

    name = "card_transactions"
    tables = ("card_volumes", "card_records", "card_batches")
    schema = """
    CREATE TABLE IF NOT EXISTS card_batches (
        id TEXT PRIMARY KEY, acquirer_city TEXT NOT NULL, business_day TEXT NOT NULL,
        merkle_root TEXT NOT NULL, record_count INTEGER NOT NULL,
        amount_fen BIGINT NOT NULL, confirmed_count INTEGER NOT NULL,
        disputed_count INTEGER NOT NULL, reported_by TEXT NOT NULL,
        reported_at TEXT NOT NULL, version INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS card_batches_day
        ON card_batches (business_day, acquirer_city);
    CREATE TABLE IF NOT EXISTS card_records (
        batch_id TEXT NOT NULL, record_id TEXT NOT NULL, issuer_city TEXT NOT NULL,
        amount_fen BIGINT NOT NULL, status TEXT NOT NULL,
        PRIMARY KEY (batch_id, record_id));
    CREATE INDEX IF NOT EXISTS card_records_issuer
        ON card_records (issuer_city, batch_id);
    CREATE TABLE IF NOT EXISTS card_volumes (
        business_day TEXT NOT NULL, acquirer_city TEXT NOT NULL,
        issuer_city TEXT NOT NULL, record_count INTEGER NOT NULL,
        amount_fen BIGINT NOT NULL, confirmed_count INTEGER NOT NULL,
        confirmed_fen BIGINT NOT NULL, disputed_count INTEGER NOT NULL,
        disputed_fen BIGINT NOT NULL,
        PRIMARY KEY (business_day, acquirer_city, issuer_city))
    """

    @on("TransactionBatchReported")
    def reported(self, cur: Cursor, ev: CommittedEvent) -> None:
        d = ev.data
        cur.execute("INSERT INTO card_batches VALUES "
                    "(?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?)",
                    (ev.aggregate_id, d["acquirer_city"], d["business_day"],
                     d["merkle_root"], d["count"], d["amount_fen"],
                     d["reported_by"], ev.timestamp, ev.version))
        records = d["records"]
        cur.executemany("INSERT INTO card_records VALUES (?, ?, ?, ?, 'reported')",
                        [(ev.aggregate_id, r["record_id"], r["issuer_city"],
                          r["amount_fen"]) for r in records])
        pairs: dict[str, list[int]] = {}
        for r in records:
            pair = pairs.setdefault(r["issuer_city"], [0, 0])
            pair[0] += 1
            pair[1] += int(r["amount_fen"])
        cur.executemany(
            "INSERT INTO card_volumes VALUES (?, ?, ?, ?, ?, 0, 0, 0, 0) "
            "ON CONFLICT (business_day, acquirer_city, issuer_city) DO UPDATE SET "
            "record_count = card_volumes.record_count + excluded.record_count, "
            "amount_fen = card_volumes.amount_fen + excluded.amount_fen",
            [(d["business_day"], d["acquirer_city"], issuer, n, fen)
             for issuer, (n, fen) in sorted(pairs.items())])

    def _settle(self, cur: Cursor, ev: CommittedEvent, status: str) -> None:
        ids = list(ev.data["record_ids"])
        marks = ", ".join("?" * len(ids))
        found = cur.query("SELECT COUNT(*) AS n, CAST(COALESCE(SUM(amount_fen), 0) "
                          "AS BIGINT) AS fen FROM card_records WHERE batch_id = ? "
                          f"AND record_id IN ({marks})", (ev.aggregate_id, *ids))[0]
        cur.execute(f"UPDATE card_records SET status = ? WHERE batch_id = ? AND "
                    f"record_id IN ({marks})", (status, ev.aggregate_id, *ids))
        cur.execute(f"UPDATE card_batches SET {status}_count = {status}_count + ?, "
                    "version = ? WHERE id = ?", (found["n"], ev.version,
                                                 ev.aggregate_id))
        cur.execute(f"UPDATE card_volumes SET {status}_count = {status}_count + ?, "
                    f"{status}_fen = {status}_fen + ? WHERE issuer_city = ? AND "
                    "(business_day, acquirer_city) = (SELECT business_day, "
                    "acquirer_city FROM card_batches WHERE id = ?)",
                    (found["n"], found["fen"], ev.data["issuer_city"],
                     ev.aggregate_id))

    @on("TransactionBatchConfirmed")
    def confirmed(self, cur: Cursor, ev: CommittedEvent) -> None:
        self._settle(cur, ev, "confirmed")

    @on("TransactionBatchDisputed")
    def disputed(self, cur: Cursor, ev: CommittedEvent) -> None:
        self._settle(cur, ev, "disputed")


class Clearing(Projection):
    """Daily clearing runs (清分) and each city's net position."""

    name = "clearing"
    tables = ("clearing_positions", "clearing_runs")
    schema = """
    CREATE TABLE IF NOT EXISTS clearing_runs (
        business_day TEXT PRIMARY KEY, id TEXT NOT NULL, batch_count INTEGER NOT NULL,
        record_count INTEGER NOT NULL, excluded_disputed INTEGER NOT NULL,
        gross_fen BIGINT NOT NULL, run_by TEXT NOT NULL, completed_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS clearing_positions (
        business_day TEXT NOT NULL, city TEXT NOT NULL, net_fen BIGINT NOT NULL,
        PRIMARY KEY (business_day, city))
    """

    @on("ClearingRunCompleted")
    def completed(self, cur: Cursor, ev: CommittedEvent) -> None:
        d = ev.data
        cur.execute("INSERT INTO clearing_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (d["business_day"], ev.aggregate_id, len(d["batches"]),
                     d["records"], d["excluded_disputed"], d["gross_fen"],
                     d["run_by"], ev.timestamp))
        cur.executemany("INSERT INTO clearing_positions VALUES (?, ?, ?)",
                        [(d["business_day"], city, fen)
                         for city, fen in sorted(d["positions"].items())])


class Blocks(Projection):
    """Blocks with their hashes and the verification state found when projected.

    Its position is ``(block, 0, 0)``: every block up to ``block`` is projected.
    """

    name = "blocks"
    # Not "blocks": the embedded ledger's own table has that name, and both may
    # live in one PostgreSQL database.
    tables = ("block_summaries",)
    schema = """
    CREATE TABLE IF NOT EXISTS block_summaries (
        number BIGINT PRIMARY KEY, hash TEXT NOT NULL, previous_hash TEXT NOT NULL,
        data_hash TEXT NOT NULL, tx_count INTEGER NOT NULL,
        committed_at TEXT NOT NULL, verified INTEGER, verify_error TEXT)
    """

    def add(self, cur: Cursor, number: int, block: dict[str, Any],
            error: str | None, checked: bool) -> None:
        cur.execute("INSERT INTO block_summaries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (number, block["hash"], block["previous_hash"],
                     block["data_hash"], block["tx_count"], block["timestamp"],
                     None if not checked else int(error is None), error))


class CallCampaigns(Projection):
    """Outbound call campaigns (外呼): template version, contacts, outcome
    counts. No phone numbers: the chain has none."""

    name = "call_campaigns"
    tables = ("call_campaigns",)
    schema = """
    CREATE TABLE IF NOT EXISTS call_campaigns (
        id TEXT PRIMARY KEY, city TEXT NOT NULL, department TEXT NOT NULL,
        campaign TEXT NOT NULL, template_name TEXT NOT NULL,
        template_version INTEGER NOT NULL, template_sm3 TEXT NOT NULL,
        contact_count INTEGER NOT NULL, status TEXT NOT NULL, outcomes TEXT,
        started_by TEXT NOT NULL, started_at TEXT NOT NULL, completed_by TEXT,
        completed_at TEXT, version INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS call_campaigns_newest
        ON call_campaigns (started_at, id)
    """

    @on("CallCampaignStarted")
    def started(self, cur: Cursor, ev: CommittedEvent) -> None:
        d = ev.data
        cur.execute("INSERT INTO call_campaigns VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                    "'started', NULL, ?, ?, NULL, NULL, ?)",
                    (ev.aggregate_id, d["city"], d["department"], d["campaign"],
                     d["template_name"], d["template_version"], d["template_sm3"],
                     d["contact_count"], d["started_by"], ev.timestamp, ev.version))

    @on("CallCampaignCompleted")
    def completed(self, cur: Cursor, ev: CommittedEvent) -> None:
        cur.execute("UPDATE call_campaigns SET status = 'completed', outcomes = ?, "
                    "completed_by = ?, completed_at = ?, version = ? WHERE id = ?",
                    (json.dumps(ev.data["outcomes"], sort_keys=True),
                     ev.data["completed_by"], ev.timestamp, ev.version,
                     ev.aggregate_id))


EVENT_PROJECTIONS: tuple[Projection, ...] = (Identifiers(), CodeSchemes(),
                                             CardTransactions(), Clearing(),
                                             CallCampaigns())
BLOCKS = Blocks()
ALL_PROJECTIONS: tuple[Projection, ...] = (*EVENT_PROJECTIONS, BLOCKS)
