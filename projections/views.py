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
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

from chaincode.domain import CONFIRM_WITHIN_DAYS, DEFAULT_SCENE, DEFAULT_TYPE
from ledger.protocol import CommittedEvent
from projections.db import Cursor, Row

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
    tables = ("card_disputes", "card_volumes", "card_records", "card_batches")
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
        PRIMARY KEY (business_day, acquirer_city, issuer_city));
    CREATE TABLE IF NOT EXISTS card_disputes (
        batch_id TEXT NOT NULL, record_id TEXT NOT NULL, business_day TEXT NOT NULL,
        acquirer_city TEXT NOT NULL, issuer_city TEXT NOT NULL,
        amount_fen BIGINT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL,
        evidence_sm3 TEXT, note TEXT, decision TEXT, decision_reason TEXT,
        disputed_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        PRIMARY KEY (batch_id, record_id));
    CREATE INDEX IF NOT EXISTS card_disputes_status
        ON card_disputes (status, updated_at)
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
        ids = list(ev.data["record_ids"])
        marks = ", ".join("?" * len(ids))
        cur.execute(
            "INSERT INTO card_disputes SELECT r.batch_id, r.record_id, "
            "b.business_day, b.acquirer_city, r.issuer_city, r.amount_fen, "
            "'disputed', ?, NULL, NULL, NULL, NULL, ?, ? FROM card_records r "
            "JOIN card_batches b ON b.id = r.batch_id WHERE r.batch_id = ? AND "
            f"r.record_id IN ({marks})",
            (ev.data["reason"], ev.timestamp, ev.timestamp, ev.aggregate_id, *ids))

    def _dispute_step(self, cur: Cursor, ev: CommittedEvent, status: str,
                      **columns: Any) -> None:
        ids = list(ev.data["record_ids"])
        marks = ", ".join("?" * len(ids))
        cur.execute(f"UPDATE card_records SET status = ? WHERE batch_id = ? AND "
                    f"record_id IN ({marks})", (status, ev.aggregate_id, *ids))
        sets = "".join(f", {name} = ?" for name in columns)
        cur.execute(f"UPDATE card_disputes SET status = ?, updated_at = ?{sets} "
                    f"WHERE batch_id = ? AND record_id IN ({marks})",
                    (status, ev.timestamp, *columns.values(), ev.aggregate_id,
                     *ids))
        cur.execute("UPDATE card_batches SET version = ? WHERE id = ?",
                    (ev.version, ev.aggregate_id))

    @on("TransactionBatchDisputeAccepted")
    def dispute_accepted(self, cur: Cursor, ev: CommittedEvent) -> None:
        self._dispute_step(cur, ev, "withdrawn", decision="accepted")

    @on("TransactionBatchDisputeContested")
    def dispute_contested(self, cur: Cursor, ev: CommittedEvent) -> None:
        self._dispute_step(cur, ev, "contested",
                           evidence_sm3=ev.data["evidence_sm3"],
                           note=ev.data["note"] or None)

    @on("TransactionBatchDisputeResolved")
    def dispute_resolved(self, cur: Cursor, ev: CommittedEvent) -> None:
        decision = ev.data["decision"]
        self._dispute_step(cur, ev,
                           "upheld" if decision == "acquirer" else "withdrawn",
                           decision=decision, decision_reason=ev.data["reason"])


class Clearing(Projection):
    """Daily clearing runs (清分) and each city's net position."""

    name = "clearing"
    tables = ("clearing_figures", "clearing_flags", "settlements",
              "clearing_positions", "clearing_runs")
    schema = """
    CREATE TABLE IF NOT EXISTS clearing_runs (
        business_day TEXT PRIMARY KEY, id TEXT NOT NULL, batch_count INTEGER NOT NULL,
        record_count INTEGER NOT NULL, excluded_disputed INTEGER NOT NULL,
        gross_fen BIGINT NOT NULL, run_by TEXT NOT NULL, completed_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS clearing_positions (
        business_day TEXT NOT NULL, city TEXT NOT NULL, net_fen BIGINT NOT NULL,
        PRIMARY KEY (business_day, city));
    CREATE TABLE IF NOT EXISTS settlements (
        business_day TEXT NOT NULL, city TEXT NOT NULL,
        position_fen BIGINT NOT NULL, gross_fen BIGINT NOT NULL,
        fees_fen BIGINT NOT NULL, statement_sm3 TEXT NOT NULL,
        confirm_by TEXT NOT NULL, status TEXT NOT NULL, settlement_id TEXT,
        confirmed_by TEXT, confirmed_at TEXT, completed_at TEXT,
        payment_reference TEXT, PRIMARY KEY (business_day, city));
    CREATE INDEX IF NOT EXISTS settlements_status
        ON settlements (status, confirm_by);
    CREATE TABLE IF NOT EXISTS clearing_figures (
        business_day TEXT PRIMARY KEY, center_fee_fen BIGINT NOT NULL,
        adjustment_records INTEGER NOT NULL, adjustment_fen BIGINT NOT NULL,
        flagged_records INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS clearing_flags (
        business_day TEXT NOT NULL, batch_id TEXT NOT NULL, record_id TEXT NOT NULL,
        card_id_hash TEXT NOT NULL, acquirer_city TEXT NOT NULL,
        issuer_city TEXT NOT NULL, time TEXT NOT NULL,
        blacklisted_at TEXT NOT NULL, PRIMARY KEY (batch_id, record_id))
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
        adjustments = d.get("adjustments") or []  # none before settlement
        cur.execute("INSERT INTO clearing_figures VALUES (?, ?, ?, ?, ?)", (
            d["business_day"], d.get("center_fee_fen", 0),
            sum(a["records"] for a in adjustments),
            sum(a["gross_fen"] for a in adjustments), len(d.get("flagged") or [])))
        statements = d.get("statements") or {}
        figures = d.get("cities") or {}
        confirm_by = (date.fromisoformat(d["business_day"])
                      + timedelta(days=CONFIRM_WITHIN_DAYS)).isoformat()
        cur.executemany(
            "INSERT INTO settlements VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', NULL, "
            "NULL, NULL, NULL, NULL)",
            [(d["business_day"], city, d["positions"][city],
              figures.get(city, {}).get("gross_fen", d["positions"][city]),
              figures.get(city, {}).get("fees_fen", 0), sm3, confirm_by)
             for city, sm3 in sorted(statements.items())])
        cur.executemany(
            "INSERT INTO clearing_flags VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(d["business_day"], f["batch_id"], f["record_id"], f["card_id_hash"],
              f["acquirer_city"], f["issuer_city"], f["time"], f["blacklisted_at"])
             for f in d.get("flagged") or []])

    @on("SettlementConfirmed")
    def confirmed(self, cur: Cursor, ev: CommittedEvent) -> None:
        d = ev.data
        cur.execute("UPDATE settlements SET status = 'confirmed', settlement_id = ?, "
                    "confirmed_by = ?, confirmed_at = ? WHERE business_day = ? AND "
                    "city = ?", (ev.aggregate_id, d["confirmed_by"], ev.timestamp,
                                 d["business_day"], d["city"]))

    @on("SettlementCompleted")
    def completed_payment(self, cur: Cursor, ev: CommittedEvent) -> None:
        cur.execute("UPDATE settlements SET status = 'completed', completed_at = ?, "
                    "payment_reference = ? WHERE settlement_id = ?",
                    (ev.timestamp, ev.data["payment_reference"], ev.aggregate_id))


class Blacklist(Projection):
    """Cards reported lost or blocked (挂失), with the block that recorded each,
    so terminals can fetch what changed since a ledger height."""

    name = "card_blacklist"
    tables = ("card_blacklist",)
    schema = """
    CREATE TABLE IF NOT EXISTS card_blacklist (
        card_id_hash TEXT PRIMARY KEY, issuer_city TEXT NOT NULL,
        reason TEXT NOT NULL, since TEXT NOT NULL, block BIGINT NOT NULL,
        tx_id TEXT NOT NULL, reported_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS card_blacklist_block ON card_blacklist (block)
    """

    @on("CardBlacklisted")
    def blacklisted(self, cur: Cursor, ev: CommittedEvent) -> None:
        d = ev.data
        cur.execute("INSERT INTO card_blacklist VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (d["card_id_hash"], d["issuer_city"], d["reason"], d["since"],
                     ev.position.block, ev.tx_id, ev.timestamp))


# Risk rules (风险管控) over the reported records, read side only: a rule finds
# records worth a person's look, it decides nothing on chain.
# - impossible travel: one card used in two different cities within this many
#   seconds (member cities are at least half an hour apart gate to gate);
TRAVEL_S = 30 * 60
# - unusual amount: above the scene's mean by this many standard deviations,
#   once the scene has this many records to judge by;
AMOUNT_SIGMAS, AMOUNT_MIN_RECORDS = 6, 100
# - terminal repeat: one terminal recording the same card and amount again
#   within this many seconds.
REPEAT_S = 10


# The statistics tables: the finest (card_stats) and rollups, each summing the
# same records at a coarser grain, so that a statistics read scans thousands of
# rows rather than millions (projections.queries picks the table).
_ROLLUPS = {
    "card_stats": ("business_day", "acquirer_city", "issuer_city", "scene",
                   "type"),
    "stats_day": ("business_day",),
    "stats_city_day": ("business_day", "city", "side"),
    "stats_scene_day": ("business_day", "scene", "type"),
}


def add_stats(cur: Cursor, rows: list[tuple[Any, ...]]) -> None:
    """Add ``(day, acquirer, issuer, scene, type, records, fen)`` rows to every
    statistics table."""
    def key(r: tuple[Any, ...], table: str) -> list[tuple[Any, ...]]:
        day, acquirer, issuer, scene, kind = r[:5]
        return {"card_stats": [r[:5]], "stats_day": [(day,)],
                "stats_city_day": [(day, acquirer, "acquirer"),
                                   (day, issuer, "issuer")],
                "stats_scene_day": [(day, scene, kind)]}[table]

    days = sorted({r[0] for r in rows})
    new_days = [d for d in days if not cur.query(
        "SELECT 1 FROM stats_day WHERE business_day = ?", (d,))]
    for table, columns in _ROLLUPS.items():
        sums: dict[tuple[Any, ...], list[int]] = {}
        for r in rows:
            for k in key(r, table):
                into = sums.setdefault(k, [0, 0])
                into[0] += r[5]
                into[1] += r[6]
        marks = ", ".join("?" * (len(columns) + 2))
        cur.executemany(
            f"INSERT INTO {table} VALUES ({marks}) ON CONFLICT "
            f"({', '.join(columns)}) DO UPDATE SET record_count = "
            f"{table}.record_count + excluded.record_count, amount_fen = "
            f"{table}.amount_fen + excluded.amount_fen",
            [(*k, n, fen) for k, (n, fen) in sorted(sums.items())])
    _add_running_totals(cur, rows, new_days)


def _add_running_totals(cur: Cursor, rows: list[tuple[Any, ...]],
                        new_days: list[str]) -> None:
    """Keep ``stats_pair_total``: per pair, its records and amount from the
    start up to each day that has records (every pair seen by then has a row
    on every such day). A range of days by pair is then the totals at its last
    day less those before its first: two days' rows, whatever the range."""
    for day in new_days:  # a day's rows start as the day before's
        cur.execute(
            "INSERT INTO stats_pair_total SELECT ?, acquirer_city, issuer_city, "
            "record_count, amount_fen FROM stats_pair_total WHERE business_day = "
            "(SELECT MAX(business_day) FROM stats_pair_total WHERE "
            "business_day < ?)", (day, day))
    sums: dict[tuple[str, str, str], list[int]] = {}
    for r in rows:
        into = sums.setdefault((r[0], r[1], r[2]), [0, 0])
        into[0] += r[5]
        into[1] += r[6]
    for (day, acquirer, issuer), (n, fen) in sorted(sums.items()):
        # this day's and every later day's totals of the pair grow
        cur.execute(
            "INSERT INTO stats_pair_total SELECT business_day, ?, ?, ?, ? FROM "
            "stats_day WHERE business_day >= ? ON CONFLICT (business_day, "
            "acquirer_city, issuer_city) DO UPDATE SET record_count = "
            "stats_pair_total.record_count + excluded.record_count, amount_fen = "
            "stats_pair_total.amount_fen + excluded.amount_fen",
            (acquirer, issuer, n, fen, day))


def _epoch(time: str) -> int:
    return int(datetime.fromisoformat(time).timestamp())


class CardAnalytics(Projection):
    """Every reported card record as a fact (for statistics and risk), the
    statistics per day, city pair, scene and type, and the risk alerts with the
    records behind each."""

    name = "card_analytics"
    tables = ("risk_alerts", "scene_amounts", "stats_pair_total",
              "stats_scene_day", "stats_city_day", "stats_day", "card_stats",
              "card_facts")
    schema = """
    CREATE TABLE IF NOT EXISTS card_facts (
        batch_id TEXT NOT NULL, record_id TEXT NOT NULL, business_day TEXT NOT NULL,
        acquirer_city TEXT NOT NULL, issuer_city TEXT NOT NULL,
        card_id_hash TEXT NOT NULL, terminal_id TEXT NOT NULL, scene TEXT NOT NULL,
        type TEXT NOT NULL, amount_fen BIGINT NOT NULL, time TEXT NOT NULL,
        ts BIGINT NOT NULL, PRIMARY KEY (batch_id, record_id));
    CREATE INDEX IF NOT EXISTS card_facts_card ON card_facts (card_id_hash, ts);
    CREATE INDEX IF NOT EXISTS card_facts_terminal
        ON card_facts (acquirer_city, terminal_id, card_id_hash, ts);
    CREATE TABLE IF NOT EXISTS card_stats (
        business_day TEXT NOT NULL, acquirer_city TEXT NOT NULL,
        issuer_city TEXT NOT NULL, scene TEXT NOT NULL, type TEXT NOT NULL,
        record_count BIGINT NOT NULL, amount_fen BIGINT NOT NULL,
        PRIMARY KEY (business_day, acquirer_city, issuer_city, scene, type));
    CREATE TABLE IF NOT EXISTS stats_day (
        business_day TEXT PRIMARY KEY, record_count BIGINT NOT NULL,
        amount_fen BIGINT NOT NULL);
    CREATE TABLE IF NOT EXISTS stats_city_day (
        business_day TEXT NOT NULL, city TEXT NOT NULL, side TEXT NOT NULL,
        record_count BIGINT NOT NULL, amount_fen BIGINT NOT NULL,
        PRIMARY KEY (business_day, city, side));
    CREATE INDEX IF NOT EXISTS stats_city_day_city
        ON stats_city_day (city, business_day);
    CREATE TABLE IF NOT EXISTS stats_scene_day (
        business_day TEXT NOT NULL, scene TEXT NOT NULL, type TEXT NOT NULL,
        record_count BIGINT NOT NULL, amount_fen BIGINT NOT NULL,
        PRIMARY KEY (business_day, scene, type));
    CREATE TABLE IF NOT EXISTS stats_pair_total (
        business_day TEXT NOT NULL, acquirer_city TEXT NOT NULL,
        issuer_city TEXT NOT NULL, record_count BIGINT NOT NULL,
        amount_fen BIGINT NOT NULL,
        PRIMARY KEY (business_day, acquirer_city, issuer_city));
    CREATE TABLE IF NOT EXISTS scene_amounts (
        scene TEXT PRIMARY KEY, n BIGINT NOT NULL, total BIGINT NOT NULL,
        squares DOUBLE PRECISION NOT NULL);
    CREATE TABLE IF NOT EXISTS risk_alerts (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, business_day TEXT NOT NULL,
        acquirer_city TEXT NOT NULL, issuer_city TEXT NOT NULL,
        subject TEXT NOT NULL, detail TEXT NOT NULL, records TEXT NOT NULL,
        detected_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS risk_alerts_day ON risk_alerts (business_day, kind)
    """

    @on("TransactionBatchReported")
    def reported(self, cur: Cursor, ev: CommittedEvent) -> None:
        d = ev.data
        day, acquirer, batch = d["business_day"], d["acquirer_city"], ev.aggregate_id
        facts = [(batch, r["record_id"], day, acquirer, r["issuer_city"],
                  r["card_id_hash"], r["terminal_id"], r.get("scene", DEFAULT_SCENE),
                  r.get("type", DEFAULT_TYPE), int(r["amount_fen"]), r["time"],
                  _epoch(r["time"])) for r in d["records"]]
        cur.executemany("INSERT INTO card_facts VALUES "
                        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", facts)
        stats: dict[tuple[str, str, str], list[int]] = {}
        for f in facts:
            into = stats.setdefault((f[4], f[7], f[8]), [0, 0])
            into[0] += 1
            into[1] += f[9]
        rows = [(day, acquirer, issuer, scene, kind, n, fen)
                for (issuer, scene, kind), (n, fen) in sorted(stats.items())]
        add_stats(cur, rows)
        self._unusual_amounts(cur, ev, facts)
        self._pairs(cur, ev, "impossible_travel", (
            "SELECT a.record_id AS a_record, a.acquirer_city AS a_city, "
            "a.time AS a_time, a.card_id_hash AS subject, b.batch_id AS b_batch, "
            "b.record_id AS b_record, b.acquirer_city AS b_city, b.time AS b_time, "
            "a.issuer_city, a.amount_fen AS a_amount, b.amount_fen AS b_amount "
            "FROM card_facts a JOIN card_facts b ON b.card_id_hash = a.card_id_hash "
            "AND b.ts BETWEEN a.ts - ? AND a.ts + ? AND b.acquirer_city <> "
            "a.acquirer_city WHERE a.batch_id = ? ORDER BY a.record_id, b.batch_id, "
            "b.record_id"), (TRAVEL_S, TRAVEL_S, batch),
            "used in {a_city} at {a_time} and in {b_city} at {b_time}")
        self._pairs(cur, ev, "terminal_repeat", (
            "SELECT a.record_id AS a_record, a.acquirer_city AS a_city, "
            "a.time AS a_time, a.terminal_id AS subject, b.batch_id AS b_batch, "
            "b.record_id AS b_record, b.acquirer_city AS b_city, b.time AS b_time, "
            "a.issuer_city, a.amount_fen AS a_amount, b.amount_fen AS b_amount "
            "FROM card_facts a JOIN card_facts b ON b.acquirer_city = "
            "a.acquirer_city AND b.terminal_id = a.terminal_id AND b.card_id_hash "
            "= a.card_id_hash AND b.ts BETWEEN a.ts - ? AND a.ts + ? AND "
            "b.amount_fen = a.amount_fen AND (b.batch_id <> a.batch_id OR "
            "b.record_id < a.record_id) WHERE a.batch_id = ? ORDER BY a.record_id, "
            "b.batch_id, b.record_id"), (REPEAT_S, REPEAT_S, batch),
            "terminal recorded the same card and amount at {b_time} and {a_time}")

    def _pairs(self, cur: Cursor, ev: CommittedEvent, kind: str, sql: str,
               params: tuple[Any, ...], detail: str) -> None:
        """One alert per record of this batch that ``sql`` pairs with others."""
        found: dict[str, list[Row]] = {}
        for row in cur.query(sql, params):
            found.setdefault(row["a_record"], []).append(row)
        d = ev.data
        for rid, rows in found.items():
            first = rows[0]
            records = [{"batch_id": ev.aggregate_id, "record_id": rid,
                        "city": first["a_city"], "time": first["a_time"],
                        "amount_fen": first["a_amount"]}] + [
                {"batch_id": r["b_batch"], "record_id": r["b_record"],
                 "city": r["b_city"], "time": r["b_time"],
                 "amount_fen": r["b_amount"]} for r in rows]
            self._alert(cur, ev, kind, rid, d["business_day"], d["acquirer_city"],
                        first["issuer_city"], first["subject"],
                        detail.format(**first), records)

    def _unusual_amounts(self, cur: Cursor, ev: CommittedEvent,
                         facts: list[tuple[Any, ...]]) -> None:
        """Judge each record by its scene's amounts before this batch, then add
        the batch's amounts to them."""
        known = {r["scene"]: r for r in cur.query(
            "SELECT scene, n, total, squares FROM scene_amounts")}
        adds: dict[str, list[float]] = {}
        for f in facts:
            rid, issuer, card, scene, amount = f[1], f[4], f[5], f[7], f[9]
            base = known.get(scene)
            if base is not None and int(base["n"]) >= AMOUNT_MIN_RECORDS:
                n, total = int(base["n"]), int(base["total"])
                mean = total / n
                sd = max(float(base["squares"]) / n - mean * mean, 0.0) ** 0.5
                if amount > mean + AMOUNT_SIGMAS * sd:
                    self._alert(
                        cur, ev, "unusual_amount", rid, f[2], f[3], issuer, card,
                        f"{amount} fen in {scene}, where the mean is "
                        f"{mean:.0f} fen (σ {sd:.0f}) over {n} records",
                        [{"batch_id": ev.aggregate_id, "record_id": rid,
                          "city": f[3], "time": f[10], "amount_fen": amount}])
            into = adds.setdefault(scene, [0, 0, 0.0])
            into[0] += 1
            into[1] += amount
            into[2] += float(amount) * amount  # a sum of squares outgrows BIGINT
        cur.executemany(
            "INSERT INTO scene_amounts VALUES (?, ?, ?, ?) ON CONFLICT (scene) DO "
            "UPDATE SET n = scene_amounts.n + excluded.n, total = "
            "scene_amounts.total + excluded.total, squares = "
            "scene_amounts.squares + excluded.squares",
            [(scene, int(n), int(total), squares)
             for scene, (n, total, squares) in sorted(adds.items())])

    def _alert(self, cur: Cursor, ev: CommittedEvent, kind: str, record_id: str,
               day: str, acquirer: str, issuer: str, subject: str, detail: str,
               records: list[dict[str, Any]]) -> None:
        cur.execute("INSERT INTO risk_alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (id) DO NOTHING",
                    (f"{kind}:{ev.aggregate_id}:{record_id}", kind, day, acquirer,
                     issuer, subject, detail, json.dumps(records), ev.timestamp))


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


class VideoAlerts(Projection):
    """Cameras and their video alerts (AI jobs), by status, camera, kind, day."""

    name = "video_alerts"
    tables = ("video_alerts", "cameras")
    schema = """
    CREATE TABLE IF NOT EXISTS cameras (
        id TEXT PRIMARY KEY, city TEXT NOT NULL, camera_code TEXT NOT NULL,
        place_id TEXT NOT NULL, department TEXT NOT NULL, zones TEXT NOT NULL,
        registered_by TEXT NOT NULL, registered_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS video_alerts (
        id TEXT PRIMARY KEY, camera_id TEXT NOT NULL, city TEXT NOT NULL,
        department TEXT NOT NULL, incident TEXT NOT NULL, kind TEXT NOT NULL,
        zone TEXT NOT NULL, confidence_permille INTEGER NOT NULL,
        observed_at TEXT NOT NULL, day TEXT NOT NULL, evidence_sm3 TEXT NOT NULL,
        status TEXT NOT NULL, raised_by TEXT NOT NULL, raised_at TEXT NOT NULL,
        reviewed_by TEXT, reviewed_at TEXT, note TEXT, dispatched_to TEXT,
        dispatched_by TEXT, dispatched_at TEXT, handled_by TEXT, handled_at TEXT,
        outcome TEXT, updated_at TEXT NOT NULL, version INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS video_alerts_status
        ON video_alerts (city, status, observed_at);
    CREATE INDEX IF NOT EXISTS video_alerts_camera
        ON video_alerts (camera_id, observed_at)
    """

    @on("CameraRegistered")
    def camera(self, cur: Cursor, ev: CommittedEvent) -> None:
        d = ev.data
        cur.execute("INSERT INTO cameras VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (ev.aggregate_id, d["city"], d["camera_code"], d["place_id"],
                     d["department"], json.dumps(d["zones"], sort_keys=True),
                     d["registered_by"], ev.timestamp))

    @on("VideoAlertRaised")
    def raised(self, cur: Cursor, ev: CommittedEvent) -> None:
        d = ev.data
        cur.execute("INSERT INTO video_alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                    "?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
                    "NULL, ?, ?)",
                    (ev.aggregate_id, d["camera_id"], d["city"], d["department"],
                     d["incident"], d["kind"], d["zone"], d["confidence_permille"],
                     d["observed_at"], d["observed_at"][:10], d["evidence_sm3"],
                     "raised", d["raised_by"], ev.timestamp, ev.timestamp,
                     ev.version))

    @staticmethod
    def _set(cur: Cursor, ev: CommittedEvent, **values: Any) -> None:
        sets = "".join(f"{k} = ?, " for k in values)
        cur.execute(f"UPDATE video_alerts SET {sets}version = ?, updated_at = ? "
                    "WHERE id = ?", (*values.values(), ev.version, ev.timestamp,
                                     ev.aggregate_id))

    @on("VideoAlertReviewed")
    def reviewed(self, cur: Cursor, ev: CommittedEvent) -> None:
        d = ev.data
        self._set(cur, ev, status=d["verdict"], reviewed_by=d["reviewed_by"],
                  reviewed_at=ev.timestamp, note=d.get("note"))

    @on("VideoAlertDispatched")
    def dispatched(self, cur: Cursor, ev: CommittedEvent) -> None:
        d = ev.data
        self._set(cur, ev, status="dispatched", dispatched_to=d["department"],
                  dispatched_by=d["dispatched_by"], dispatched_at=ev.timestamp)

    @on("VideoAlertHandled")
    def handled(self, cur: Cursor, ev: CommittedEvent) -> None:
        d = ev.data
        self._set(cur, ev, status="handled", handled_by=d["handled_by"],
                  handled_at=ev.timestamp, outcome=d["outcome"])


class CallCampaigns(Projection):
    """Outbound call campaigns (外呼): template version, contacts, outcome
    counts, and each contact's final outcome as the campaign records it (its
    keyed hash, never a number: the chain has none)."""

    name = "call_campaigns"
    tables = ("call_campaigns", "call_records")
    schema = """
    CREATE TABLE IF NOT EXISTS call_campaigns (
        id TEXT PRIMARY KEY, city TEXT NOT NULL, department TEXT NOT NULL,
        campaign TEXT NOT NULL, template_name TEXT NOT NULL,
        template_version INTEGER NOT NULL, template_sm3 TEXT NOT NULL,
        contact_count INTEGER NOT NULL, status TEXT NOT NULL, outcomes TEXT,
        started_by TEXT NOT NULL, started_at TEXT NOT NULL, completed_by TEXT,
        completed_at TEXT, version INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS call_campaigns_newest
        ON call_campaigns (started_at, id);
    CREATE TABLE IF NOT EXISTS call_records (
        campaign_id TEXT NOT NULL, contact TEXT NOT NULL, city TEXT NOT NULL,
        department TEXT NOT NULL, campaign TEXT NOT NULL, outcome TEXT NOT NULL,
        attempts INTEGER NOT NULL, day TEXT NOT NULL, talk_s INTEGER NOT NULL,
        batch INTEGER NOT NULL, recorded_at TEXT NOT NULL,
        PRIMARY KEY (campaign_id, contact));
    CREATE INDEX IF NOT EXISTS call_records_outcome
        ON call_records (campaign_id, outcome);
    CREATE INDEX IF NOT EXISTS call_records_day ON call_records (city, day)
    """

    @on("CallCampaignStarted")
    def started(self, cur: Cursor, ev: CommittedEvent) -> None:
        d = ev.data
        cur.execute("INSERT INTO call_campaigns VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                    "'started', NULL, ?, ?, NULL, NULL, ?)",
                    (ev.aggregate_id, d["city"], d["department"], d["campaign"],
                     d["template_name"], d["template_version"], d["template_sm3"],
                     d["contact_count"], d["started_by"], ev.timestamp, ev.version))

    @on("CallCampaignCallsRecorded")
    def recorded(self, cur: Cursor, ev: CommittedEvent) -> None:
        c = cur.query("SELECT city, department, campaign FROM call_campaigns "
                      "WHERE id = ?", (ev.aggregate_id,))[0]
        cur.executemany(
            "INSERT INTO call_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(ev.aggregate_id, r["contact"], c["city"], c["department"],
              c["campaign"], r["outcome"], r["attempts"], r["day"], r["talk_s"],
              ev.data["batch"], ev.timestamp) for r in ev.data["calls"]])
        cur.execute("UPDATE call_campaigns SET version = ? WHERE id = ?",
                    (ev.version, ev.aggregate_id))

    @on("CallCampaignCompleted")
    def completed(self, cur: Cursor, ev: CommittedEvent) -> None:
        cur.execute("UPDATE call_campaigns SET status = 'completed', outcomes = ?, "
                    "completed_by = ?, completed_at = ?, version = ? WHERE id = ?",
                    (json.dumps(ev.data["outcomes"], sort_keys=True),
                     ev.data["completed_by"], ev.timestamp, ev.version,
                     ev.aggregate_id))


# Supervision of city QR codes (监管), read side only like the risk rules: a
# finding is worth a person's look, it decides nothing on chain.
# - a likely copy: one static serial scanned valid in two different cities
#   within this many seconds (one printed code cannot travel that fast);
COPY_S = 10 * 60
# - a dynamic replay: one dynamic code (its SM3) accepted by two terminals
#   (a dynamic code is accepted once), however far apart in time.


class CodeUsage(Projection):
    """City QR code batches (from CodeBatchIssued), every reported scan, the
    scans per day, scheme, city, kind and result, and the supervision alerts
    (likely copies, dynamic replays) with the scans behind each."""

    name = "code_usage"
    tables = ("code_alert_cities", "code_alerts", "code_usage_daily",
              "code_scans", "code_usage_reports", "code_batches")
    schema = """
    CREATE TABLE IF NOT EXISTS code_batches (
        id TEXT PRIMARY KEY, scheme_id TEXT NOT NULL, city TEXT NOT NULL,
        department TEXT NOT NULL, code_count BIGINT NOT NULL,
        not_before TEXT NOT NULL, not_after TEXT NOT NULL, serial_prefix TEXT,
        merkle_root TEXT NOT NULL, signer_fingerprint TEXT NOT NULL,
        issued_by TEXT NOT NULL, issued_at TEXT NOT NULL, issued_ts BIGINT NOT NULL);
    CREATE INDEX IF NOT EXISTS code_batches_scheme
        ON code_batches (scheme_id, serial_prefix);
    CREATE TABLE IF NOT EXISTS code_usage_reports (
        id TEXT PRIMARY KEY, city TEXT NOT NULL, terminal_id TEXT NOT NULL,
        merkle_root TEXT NOT NULL, scan_count INTEGER NOT NULL,
        valid_count INTEGER NOT NULL, refused_count INTEGER NOT NULL,
        reported_by TEXT NOT NULL, reported_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS code_scans (
        report_id TEXT NOT NULL, idx INTEGER NOT NULL, city TEXT NOT NULL,
        terminal_id TEXT NOT NULL, serial TEXT NOT NULL,
        serial_prefix TEXT NOT NULL, scheme_id TEXT NOT NULL, kind TEXT NOT NULL,
        scanned_at TEXT NOT NULL, ts BIGINT NOT NULL, day TEXT NOT NULL,
        result TEXT NOT NULL, reason TEXT, code_sm3 TEXT NOT NULL,
        reported_at TEXT NOT NULL, PRIMARY KEY (report_id, idx));
    CREATE INDEX IF NOT EXISTS code_scans_serial ON code_scans (serial, ts);
    CREATE INDEX IF NOT EXISTS code_scans_batch
        ON code_scans (scheme_id, serial_prefix, ts);
    CREATE INDEX IF NOT EXISTS code_scans_sm3 ON code_scans (code_sm3);
    CREATE TABLE IF NOT EXISTS code_usage_daily (
        day TEXT NOT NULL, scheme_id TEXT NOT NULL, city TEXT NOT NULL,
        kind TEXT NOT NULL, result TEXT NOT NULL, scans BIGINT NOT NULL,
        PRIMARY KEY (day, scheme_id, city, kind, result));
    CREATE TABLE IF NOT EXISTS code_alerts (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL,
        scheme_id TEXT NOT NULL, day TEXT NOT NULL, detail TEXT NOT NULL,
        records TEXT NOT NULL, detected_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS code_alerts_kind ON code_alerts (kind, day);
    CREATE TABLE IF NOT EXISTS code_alert_cities (
        alert_id TEXT NOT NULL, city TEXT NOT NULL, PRIMARY KEY (alert_id, city))
    """

    @on("CodeBatchIssued")
    def issued(self, cur: Cursor, ev: CommittedEvent) -> None:
        d = ev.data
        cur.execute("INSERT INTO code_batches VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (ev.aggregate_id, d["scheme_id"], d["city"], d["department"],
                     d["count"], d["not_before"], d["not_after"],
                     d.get("serial_prefix"),  # none before prefixes were required
                     d["merkle_root"], d["signer_fingerprint"], d["issued_by"],
                     ev.timestamp, _epoch(ev.timestamp)))

    @on("CodeUsageReported")
    def reported(self, cur: Cursor, ev: CommittedEvent) -> None:
        d, report = ev.data, ev.aggregate_id
        cur.execute("INSERT INTO code_usage_reports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (report, d["city"], d["terminal_id"], d["merkle_root"],
                     d["count"], d["valid"], d["refused"], d["reported_by"],
                     ev.timestamp))
        scans = [(report, i, d["city"], d["terminal_id"], s["serial"],
                  s["serial"][:8], s["scheme_id"], s["kind"], s["at"],
                  _epoch(s["at"]), s["at"][:10], s["result"], s.get("reason"),
                  s["code_sm3"], ev.timestamp) for i, s in enumerate(d["scans"])]
        cur.executemany("INSERT INTO code_scans VALUES "
                        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", scans)
        daily: dict[tuple[str, ...], int] = {}
        for s in scans:
            key = (s[10], s[6], s[2], s[7], s[11])  # day, scheme, city, kind, result
            daily[key] = daily.get(key, 0) + 1
        cur.executemany(
            "INSERT INTO code_usage_daily VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT "
            "(day, scheme_id, city, kind, result) DO UPDATE SET scans = "
            "code_usage_daily.scans + excluded.scans",
            [(*k, n) for k, n in sorted(daily.items())])
        pair = ("SELECT a.idx AS a_idx, a.{subject} AS subject, a.scheme_id, "
                "a.city AS a_city, a.terminal_id AS a_terminal, "
                "a.scanned_at AS a_at, a.day, b.report_id AS b_report, "
                "b.idx AS b_idx, b.city AS b_city, b.terminal_id AS b_terminal, "
                "b.scanned_at AS b_at FROM code_scans a JOIN code_scans b ON "
                "b.{subject} = a.{subject} AND b.scheme_id = a.scheme_id AND "
                "b.kind = a.kind AND b.result = 'valid' AND {near} WHERE "
                "a.report_id = ? AND a.kind = ? AND a.result = 'valid' "
                "ORDER BY a.idx, b.report_id, b.idx")
        self._alerts(cur, ev, "likely_copy", pair.format(
            subject="serial", near="b.city <> a.city AND b.ts BETWEEN a.ts - ? "
            "AND a.ts + ?"), (COPY_S, COPY_S, report, "static"),
            "static code scanned valid in {a_city} at {a_at} and in {b_city} at "
            "{b_at}")
        self._alerts(cur, ev, "dynamic_replay", pair.format(
            subject="code_sm3", near="(b.city <> a.city OR b.terminal_id <> "
            "a.terminal_id)"), (report, "dynamic"),
            "dynamic code accepted by {a_city} terminal {a_terminal} at {a_at} "
            "and by {b_city} terminal {b_terminal} at {b_at}")

    @staticmethod
    def _alerts(cur: Cursor, ev: CommittedEvent, kind: str, sql: str,
                params: tuple[Any, ...], detail: str) -> None:
        """One alert per scan of this report that ``sql`` pairs with others,
        with every scan of the pairs."""
        found: dict[int, list[Row]] = {}
        for row in cur.query(sql, params):
            found.setdefault(row["a_idx"], []).append(row)
        for idx, rows in found.items():
            first = rows[0]
            records = [{"report_id": ev.aggregate_id, "idx": idx,
                        "city": first["a_city"], "terminal_id": first["a_terminal"],
                        "at": first["a_at"]}] + [
                {"report_id": r["b_report"], "idx": r["b_idx"], "city": r["b_city"],
                 "terminal_id": r["b_terminal"], "at": r["b_at"]} for r in rows]
            alert = f"{kind}:{ev.aggregate_id}:{idx}"
            if cur.execute("INSERT INTO code_alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                           "ON CONFLICT (id) DO NOTHING",
                           (alert, kind, first["subject"], first["scheme_id"],
                            first["day"], detail.format(**first),
                            json.dumps(records), ev.timestamp)):
                cur.executemany("INSERT INTO code_alert_cities VALUES (?, ?)",
                                [(alert, c) for c in sorted({r["city"]
                                                             for r in records})])


EVENT_PROJECTIONS: tuple[Projection, ...] = (Identifiers(), CodeSchemes(),
                                             CardTransactions(), Clearing(),
                                             Blacklist(), CardAnalytics(),
                                             VideoAlerts(), CallCampaigns(),
                                             CodeUsage())
BLOCKS = Blocks()
ALL_PROJECTIONS: tuple[Projection, ...] = (*EVENT_PROJECTIONS, BLOCKS)
