"""Queries over the read models: filtered, paginated, and never touching the
ledger. Each returns plain rows (dicts); the API maps them to response models.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


def _with_recorded(db: Database, rows: list[Row]) -> list[Row]:
    """Each campaign with its per-call records counted by outcome (live while
    it runs: the records come in batches)."""
    counts: dict[str, dict[str, int]] = {r["id"]: {} for r in rows}
    if rows:
        marks = ", ".join("?" * len(rows))
        for c in db.query("SELECT campaign_id, outcome, COUNT(*) AS n FROM "
                          f"call_records WHERE campaign_id IN ({marks}) "
                          "GROUP BY campaign_id, outcome ORDER BY outcome",
                          list(counts)):
            counts[c["campaign_id"]][c["outcome"]] = int(c["n"])
    for r in rows:
        r["recorded"] = counts[r["id"]]
        r["recorded_total"] = sum(counts[r["id"]].values())
    return rows


def call_campaigns(db: Database, where: Where, limit: int, offset: int) -> Page:
    result = page(db, "call_campaigns", where, "started_at DESC, id DESC", limit,
                  offset)
    return Page(_with_recorded(db, [_campaign(r) for r in result.items]),
                result.total, limit, offset)


def call_campaign(db: Database, campaign_id: str) -> Row | None:
    row = db.query_one("SELECT * FROM call_campaigns WHERE id = ?", (campaign_id,))
    return _with_recorded(db, [_campaign(row)])[0] if row else None


def call_records(db: Database, where: Where, limit: int, offset: int) -> Page:
    """Per-call records, newest day first."""
    return page(db, "call_records", where, "day DESC, campaign_id, contact", limit,
                offset)


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
            "SELECT p.city, p.net_fen, s.gross_fen, s.fees_fen, s.status AS "
            "settlement FROM clearing_positions p LEFT JOIN settlements s ON "
            "s.business_day = p.business_day AND s.city = p.city WHERE "
            "p.business_day = ? ORDER BY p.city", (business_day,))
        row.update(db.query_one(
            "SELECT center_fee_fen, adjustment_records, adjustment_fen, "
            "flagged_records FROM clearing_figures WHERE business_day = ?",
            (business_day,)) or dict.fromkeys(
            ("center_fee_fen", "adjustment_records", "adjustment_fen",
             "flagged_records"), 0))
    return row


# ------------------------------------------------------------------ settlement
def settlements(db: Database, where: Where, limit: int, offset: int) -> Page:
    return page(db, "settlements", where, "business_day DESC, city", limit, offset)


INVOLVES_DISPUTE = "(acquirer_city = ? OR issuer_city = ?)"


def disputes(db: Database, where: Where, limit: int, offset: int) -> Page:
    return page(db, "card_disputes", where, "updated_at DESC, batch_id, record_id",
                limit, offset)


def blacklist_since(db: Database, block: int, limit: int) -> list[Row]:
    """Cards blacklisted in blocks after ``block``, oldest first, at most
    ``limit``."""
    return db.query("SELECT card_id_hash, issuer_city, reason, since, block "
                    "FROM card_blacklist WHERE block > ? "
                    "ORDER BY block, card_id_hash LIMIT ?", (block, limit))


# ------------------------------------------------------------ statistics, risk
# Statistics read the rollups the card analytics projection keeps (projections.
# views.add_stats): per day; per day, city and side; per day, scene and type;
# running totals per pair; and the finest, per day, pair, scene and type. Each
# read picks the coarsest table that answers it; any range of days by pair is
# the difference of two days' running totals. So a year of 80 cities' traffic
# is summed from thousands of rows, not millions.
GROUPS = {"day": ("business_day",), "pair": ("acquirer_city", "issuer_city"),
          "scene": ("scene",), "type": ("type",),
          "acquirer": ("acquirer_city",), "issuer": ("issuer_city",)}
_SUMS = ("CAST(SUM(record_count) AS BIGINT) AS record_count, "
         "CAST(SUM(amount_fen) AS BIGINT) AS amount_fen")
LAST_DAY = "9999-12-31"


@dataclass(frozen=True)
class StatsFilter:
    """Which records a statistic counts: business days ``day_from..day_to``
    (inclusive), one scene, one type, one city on either side."""

    day_from: str | None = None
    day_to: str | None = None
    scene: str | None = None
    type: str | None = None
    city: str | None = None

    def days(self, column: str = "business_day") -> Where:
        return (Where().cond(f"{column} >= ?", self.day_from)
                .cond(f"{column} <= ?", self.day_to))


def _summed(db: Database, keys: str, source: str, where: Where,
            order: str | None = None) -> list[Row]:
    return db.query(f"SELECT {keys}, {_SUMS} FROM {source}{where.sql()} "
                    f"GROUP BY {keys} ORDER BY {order or keys}", where.params)


def _last_day_with_records(db: Database, before: str, inclusive: bool
                           ) -> str | None:
    op = "<=" if inclusive else "<"
    row = db.query(f"SELECT MAX(business_day) AS d FROM stats_day WHERE "
                   f"business_day {op} ?", (before,))
    return row[0]["d"] if row else None


def _by_pair(db: Database, f: StatsFilter) -> list[Row]:
    """Per pair: its running totals at the range's last day with records, less
    those at the last day with records before the range (stats_pair_total)."""
    last = _last_day_with_records(db, f.day_to or LAST_DAY, True)
    if last is None:
        return []
    before = (None if f.day_from is None
              else _last_day_with_records(db, f.day_from, False))
    where = (Where().cond("h.business_day = ?", last)
             .cond("(h.acquirer_city = ? OR h.issuer_city = ?)", f.city, f.city)
             .cond("h.record_count > COALESCE(l.record_count, 0)"))
    return db.query(
        "SELECT h.acquirer_city, h.issuer_city, h.record_count - "
        "COALESCE(l.record_count, 0) AS record_count, h.amount_fen - "
        "COALESCE(l.amount_fen, 0) AS amount_fen FROM stats_pair_total h "
        "LEFT JOIN stats_pair_total l ON l.business_day = ? AND "
        "l.acquirer_city = h.acquirer_city AND l.issuer_city = h.issuer_city"
        f"{where.sql()} ORDER BY h.acquirer_city, h.issuer_city",
        [before, *where.params])


def volume(db: Database, group: str, f: StatsFilter) -> list[Row]:
    """Records and amounts per ``group`` (a key of GROUPS) under ``f``."""
    keys = ", ".join(GROUPS[group])
    either = "(acquirer_city = ? OR issuer_city = ?)"
    if f.scene is None and f.type is None:
        if group == "pair":
            return _by_pair(db, f)
        if group == "day":
            if f.city is None:
                return _summed(db, keys, "stats_day", f.days())
            return _summed(db, keys, "stats_city_day", f.days().eq("city", f.city))
        if group in ("acquirer", "issuer") and f.city is None:
            return [{GROUPS[group][0]: r["city"], "record_count": r["record_count"],
                     "amount_fen": r["amount_fen"]}
                    for r in _summed(db, "city", "stats_city_day",
                                     f.days().eq("side", group))]
    if group in ("scene", "type") and f.city is None:
        return _summed(db, keys, "stats_scene_day",
                       f.days().eq("scene", f.scene).eq("type", f.type))
    return _summed(db, keys, "card_stats", f.days().eq("scene", f.scene)
                   .eq("type", f.type).cond(either, f.city, f.city))


def year_on_year(db: Database, year: int, city: str | None) -> list[Row]:
    """Per month of ``year``: records and amounts, and those of the same month
    a year before (同比); ``city``: its records on either side."""
    where = (Where().cond("business_day >= ?", f"{year - 1}-01-01")
             .cond("business_day <= ?", f"{year}-12-31").eq("city", city))
    month = "substr(business_day, 1, 7)"
    rows = db.query(f"SELECT {month} AS month, {_SUMS} FROM "
                    f"{'stats_day' if city is None else 'stats_city_day'}"
                    f"{where.sql()} GROUP BY {month}", where.params)
    by_month = {r["month"]: r for r in rows}
    out = []
    for m in range(1, 13):
        now = by_month.get(f"{year}-{m:02d}", {})
        then = by_month.get(f"{year - 1}-{m:02d}", {})
        out.append({"month": f"{year}-{m:02d}",
                    "record_count": int(now.get("record_count") or 0),
                    "amount_fen": int(now.get("amount_fen") or 0),
                    "previous_record_count": int(then.get("record_count") or 0),
                    "previous_amount_fen": int(then.get("amount_fen") or 0)})
    return out


def peak_days(db: Database, f: StatsFilter, limit: int) -> list[Row]:
    """The busiest business days by records."""
    where = f.days()
    return db.query(f"SELECT business_day, record_count, amount_fen FROM stats_day"
                    f"{where.sql()} ORDER BY record_count DESC, business_day DESC "
                    "LIMIT ?", [*where.params, limit])


def ranking(db: Database, by: str, f: StatsFilter) -> list[Row]:
    """Cities ranked by ``by`` (``amount_fen`` or ``record_count``) of their
    cross-city business: records they acquired (cards of other cities used
    there, 异地受理) plus records of their cards used elsewhere."""
    rows: dict[str, Row] = {}
    for r in _summed(db, "city, side", "stats_city_day", f.days()):
        into = rows.setdefault(r["city"], {
            "city": r["city"], "acquired_count": 0, "acquired_fen": 0,
            "issued_count": 0, "issued_fen": 0})
        side = "acquired" if r["side"] == "acquirer" else "issued"
        into[f"{side}_count"] += int(r["record_count"])
        into[f"{side}_fen"] += int(r["amount_fen"])
    out = list(rows.values())
    for r in out:
        r["record_count"] = r["acquired_count"] + r["issued_count"]
        r["amount_fen"] = r["acquired_fen"] + r["issued_fen"]
    out.sort(key=lambda r: (-r[by], r["city"]))
    for rank, r in enumerate(out, 1):
        r["rank"] = rank
    return out


def risk_alerts(db: Database, where: Where, limit: int, offset: int) -> Page:
    found = page(db, "risk_alerts", where, "detected_at DESC, id", limit, offset)
    for r in found.items:
        r["records"] = json.loads(r["records"])
    return found


# ------------------------------------------------------------------ code usage
# A city sees the scans made in it and those of its own schemes' codes.
INVOLVES_SCAN_CITY = ("(city = ? OR scheme_id IN (SELECT id FROM code_schemes "
                      "WHERE city = ?))")
INVOLVES_ALERT_CITY = ("(EXISTS (SELECT 1 FROM code_alert_cities c WHERE "
                       "c.alert_id = code_alerts.id AND c.city = ?) OR scheme_id "
                       "IN (SELECT id FROM code_schemes WHERE city = ?))")
_SCAN_COLUMNS = ("report_id, idx, city, terminal_id, serial, scheme_id, kind, "
                 "scanned_at, result, reason, code_sm3, reported_at")


def code_scans(db: Database, serial: str, city: str | None) -> Row:
    """One code's scans, oldest first (those ``city`` may see), and the batches
    whose serial prefix it carries."""
    where = Where().eq("serial", serial).cond(INVOLVES_SCAN_CITY, city, city)
    scans = db.query(f"SELECT {_SCAN_COLUMNS} FROM code_scans{where.sql()} "
                     "ORDER BY ts, report_id, idx", where.params)
    batches = Where().eq("serial_prefix", serial[:8]).eq("city", city)
    return {"serial": serial, "scans": scans, "batches": db.query(
        f"SELECT * FROM code_batches{batches.sql()} ORDER BY issued_at, id",
        batches.params)}


def code_usage(db: Database, scheme: str | None, city: str | None,
               day_from: str | None, day_to: str | None) -> list[Row]:
    """Scans per day, scheme, scanning city, kind and result; ``city``: those
    scanned in it or of its schemes."""
    where = (Where().eq("scheme_id", scheme).cond("day >= ?", day_from)
             .cond("day <= ?", day_to).cond(INVOLVES_SCAN_CITY, city, city))
    return db.query("SELECT day, scheme_id, city, kind, result, scans FROM "
                    f"code_usage_daily{where.sql()} ORDER BY day, scheme_id, "
                    "city, kind, result", where.params)


def _batches_scanned(db: Database, city: str | None, issued_by: int | None,
                     since: int | None, until: int | None) -> list[Row]:
    """Code batches (of ``city``, issued at ``issued_by`` or before) with the
    distinct serials of theirs scanned valid from ``since`` until before
    ``until`` (epoch seconds; None: unbounded)."""
    window = Where().cond("s.ts >= ?", since).cond("s.ts < ?", until)
    where = (Where().eq("b.city", city).cond("b.issued_ts <= ?", issued_by)
             .cond("b.serial_prefix IS NOT NULL"))
    rows = db.query(
        "SELECT b.id, b.scheme_id, b.city, b.department, b.code_count, "
        "b.serial_prefix, b.not_before, b.not_after, b.merkle_root, b.issued_at, "
        "(SELECT COUNT(DISTINCT s.serial) FROM code_scans s WHERE "
        "s.scheme_id = b.scheme_id AND s.serial_prefix = b.serial_prefix AND "
        "s.kind = 'static' AND s.result = 'valid'"
        + "".join(f" AND {c}" for c in window.clauses) + ") AS scanned "
        f"FROM code_batches b{where.sql()} ORDER BY b.scheme_id, b.issued_at, b.id",
        [*window.params, *where.params])
    for r in rows:
        r["code_count"], r["scanned"] = int(r["code_count"]), int(r["scanned"])
    return rows


def zombie_batches(db: Database, until: int, days: int, city: str | None,
                   limit: int, offset: int) -> Page:
    """Batches issued at least ``days`` days before ``until`` (epoch seconds)
    with codes not scanned valid in those days (僵尸码): issued minus the
    distinct serials scanned; most zombies first."""
    since = until - days * 86_400
    rows = [{**r, "zombie": r["code_count"] - r["scanned"]}
            for r in _batches_scanned(db, city, since, since, until)
            if r["code_count"] > r["scanned"]]
    rows.sort(key=lambda r: (-r["zombie"], r["issued_at"], r["id"]))
    return Page(rows[offset:offset + limit], len(rows), limit, offset)


def over_issuing(db: Database, ratio: float, city: str | None) -> list[Row]:
    """Schemes whose codes issued are at least ``ratio`` times the distinct
    codes ever scanned valid (none scanned: any issued), with their batches;
    the highest ratio first."""
    schemes: dict[str, Row] = {}
    for b in _batches_scanned(db, city, None, None, None):
        s = schemes.setdefault(b["scheme_id"], {
            "scheme_id": b["scheme_id"], "city": b["city"],
            "department": b["department"], "issued": 0, "scanned": 0,
            "batches": []})
        s["issued"] += b["code_count"]
        s["scanned"] += b["scanned"]
        s["batches"].append({k: b[k] for k in ("id", "code_count", "serial_prefix",
                                               "issued_at", "scanned")})
    out = [{**s, "ratio": s["issued"] / s["scanned"] if s["scanned"] else None}
           for s in schemes.values() if s["issued"] >= ratio * s["scanned"]]
    out.sort(key=lambda s: (s["ratio"] is not None, -(s["ratio"] or 0),
                            s["scheme_id"]))
    return out


def code_alerts(db: Database, where: Where, limit: int, offset: int) -> Page:
    found = page(db, "code_alerts", where, "detected_at DESC, id", limit, offset)
    for r in found.items:
        r["records"] = json.loads(r["records"])
    return found


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
        "settlements_by_day": db.query(
            "SELECT business_day, "
            + ", ".join(f"SUM(CASE WHEN status = '{s}' THEN 1 ELSE 0 END) AS {s}"
                        for s in ("pending", "confirmed", "completed"))
            + ", SUM(CASE WHEN status = 'pending' AND confirm_by < ? THEN 1 "
            "ELSE 0 END) AS overdue FROM settlements GROUP BY business_day "
            "ORDER BY business_day DESC LIMIT ?",
            (datetime.now(UTC).date().isoformat(), days)),
        "disputes_by_status": db.query(
            "SELECT status, COUNT(*) AS count FROM card_disputes GROUP BY status "
            "ORDER BY status"),
        "blacklisted_cards": db.query(
            "SELECT COUNT(*) AS n FROM card_blacklist")[0]["n"],
        "risk_by_kind": db.query(
            "SELECT kind, COUNT(*) AS count, MAX(business_day) AS last_business_day "
            "FROM risk_alerts GROUP BY kind ORDER BY kind"),
        "ranking": ranking(db, "amount_fen", StatsFilter())[:10],
        "peak_days": peak_days(db, StatsFilter(), 5),
        "video_alerts_by_kind": db.query(
            "SELECT kind, status, COUNT(*) AS count FROM video_alerts "
            "GROUP BY kind, status ORDER BY kind, status"),
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


# ---------------------------------------------------------------- video alerts
def video_alerts(db: Database, where: Where, limit: int, offset: int) -> Page:
    return page(db, "video_alerts", where, "observed_at DESC, id DESC", limit,
                offset)


def video_alert(db: Database, alert_id: str) -> Row | None:
    return db.query_one("SELECT * FROM video_alerts WHERE id = ?", (alert_id,))
