"""The code-usage read model (projections.views.CodeUsage) on SQLite and
PostgreSQL, fed hand-built events whose answers are known: zombie codes per
batch, schemes issuing far more than is used, likely copies of static codes,
replays of dynamic codes, the daily rollups and who sees what."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import sm3_hex

from ledger.protocol import CommittedEvent, Position
from projections import queries
from projections.db import Database
from projections.follower import ensure_schema
from projections.queries import INVOLVES_ALERT_CITY, Where
from projections.views import CodeSchemes, CodeUsage

S1, S2, S3 = (f"{n}" * 8 + "-0000-4000-8000-" + f"{n}" * 12 for n in "123")
_blocks = itertools.count(1)


def _event(type_: str, aggregate: str, timestamp: str, data: dict[str, Any]
           ) -> CommittedEvent:
    return CommittedEvent(Position(next(_blocks), 0, 0), f"tx{aggregate}", type_,
                          aggregate, 1, timestamp, data)


def scheme(scheme_id: str, city: str) -> CommittedEvent:
    return _event("CodeSchemeApplied", scheme_id, "2025-12-01T00:00:00+00:00", {
        "city": city, "department": "transport", "application_name": "bus",
        "code_type": "transport", "scope": scheme_id, "applied_by": "x",
        "data_sharing_commitment": True})


def batch(batch_id: str, scheme_id: str, city: str, count: int, prefix: str,
          issued: str) -> CommittedEvent:
    return _event("CodeBatchIssued", batch_id, f"{issued}T10:00:00+00:00", {
        "scheme_id": scheme_id, "city": city, "department": "transport",
        "guide_url_id": "u", "signer_fingerprint": "ab" * 32, "count": count,
        "not_before": f"{issued}T00:00:00Z", "not_after": "2027-01-01T00:00:00Z",
        "merkle_root": sm3_hex(batch_id), "serial_prefix": prefix,
        "issued_by": f"{city}:transport"})


def scan(serial: str, scheme_id: str, at: str, kind: str = "static",
         result: str = "valid", code: str | None = None) -> dict[str, Any]:
    s = {"serial": serial, "scheme_id": scheme_id, "kind": kind, "at": at,
         "result": result, "code_sm3": sm3_hex(code or serial)}
    if result == "refused":
        s["reason"] = "expired"
    return s


def report(report_id: str, city: str, terminal: str, scans: list[dict[str, Any]]
           ) -> CommittedEvent:
    valid = sum(s["result"] == "valid" for s in scans)
    return _event("CodeUsageReported", report_id, "2026-03-20T00:00:00+00:00", {
        "city": city, "terminal_id": terminal, "merkle_root": sm3_hex(report_id),
        "count": len(scans), "valid": valid, "refused": len(scans) - valid,
        "scans": scans, "reported_by": f"{city}:terminal"})


A, B, C = "a" * 8, "b" * 8, "c" * 8
X1, X2, X3 = (A + f"{n}" * 16 for n in "123")
Y1, Y2 = (C + f"{n}" * 16 for n in "12")
R1, R2 = "report-1", "report-2"
EVENTS = [
    scheme(S1, "Kunshan"), scheme(S2, "Shanghai"), scheme(S3, "Kunshan"),
    batch("batch-a", S1, "Kunshan", 10, A, "2026-01-01"),
    batch("batch-b", S1, "Kunshan", 5, B, "2026-03-20"),
    batch("batch-c", S2, "Shanghai", 4, C, "2026-01-01"),
    batch("batch-d", S3, "Kunshan", 100, "dddddddd", "2026-01-01"),
    report(R1, "Kunshan", "T1", [
        scan(X1, S1, "2026-03-10T08:00:00Z"), scan(X2, S1, "2026-03-10T08:00:00Z"),
        scan(X1, S1, "2026-03-11T08:00:00Z"), scan(X3, S1, "2026-01-15T08:00:00Z"),
        scan(Y1, S2, "2026-03-12T08:00:00Z"),
        scan(Y2, S2, "2026-03-12T08:01:00Z", result="refused"),
        scan("e" * 24, S1, "2026-03-12T09:00:00Z", "dynamic", code="person-1")]),
    report(R2, "Shanghai", "T9", [
        # X1 five minutes after Kunshan scanned it: a likely copy
        scan(X1, S1, "2026-03-10T08:05:00Z"),
        # X2 an hour after: it may have travelled
        scan(X2, S1, "2026-03-10T09:00:00Z"),
        # person-1's dynamic code accepted again: a replay
        scan("e" * 24, S1, "2026-03-12T09:30:00Z", "dynamic", code="person-1"),
        # a refused dynamic code is no replay
        scan("f" * 24, S1, "2026-03-12T09:31:00Z", "dynamic", "refused",
             code="person-1")]),
]
END_OF_MARCH = int(datetime.fromisoformat("2026-04-01T00:00:00+00:00").timestamp())


@pytest.fixture(params=["sqlite", pytest.param("postgres",
                                               marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    target = (request.getfixturevalue("pg_dsn") if request.param == "postgres"
              else tmp_path / "rm.sqlite")
    database = Database(target)
    ensure_schema(database)
    with database.transaction() as cur:
        for ev in EVENTS:
            for projection in (CodeSchemes(), CodeUsage()):
                projection.apply(cur, ev)
    yield database
    database.close()


def test_zombie_codes_per_batch(db: Database) -> None:
    found = queries.zombie_batches(db, END_OF_MARCH, 30, None, 50, 0)
    # batch-b is too young; batch-a's X3 was scanned before the 30 days; a
    # serial scanned twice counts once
    assert [(r["id"], r["code_count"], r["scanned"], r["zombie"])
            for r in found.items] == [("batch-d", 100, 0, 100),
                                      ("batch-a", 10, 2, 8),
                                      ("batch-c", 4, 1, 3)]
    assert found.total == 3
    assert found.items[1]["serial_prefix"] == A
    assert [r["id"] for r in queries.zombie_batches(
        db, END_OF_MARCH, 30, "Shanghai", 50, 0).items] == ["batch-c"]
    # over the 80 days before April X3 (scanned on 15 January) counts too
    eighty = queries.zombie_batches(db, END_OF_MARCH, 80, None, 50, 0).items
    assert [(r["id"], r["zombie"]) for r in eighty] == [("batch-d", 100),
                                                        ("batch-a", 7),
                                                        ("batch-c", 3)]
    paged = queries.zombie_batches(db, END_OF_MARCH, 30, None, 1, 1)
    assert ([r["id"] for r in paged.items], paged.total) == (["batch-a"], 3)


def test_schemes_issuing_far_more_than_used(db: Database) -> None:
    assert [(s["scheme_id"], s["issued"], s["scanned"], s["ratio"])
            for s in queries.over_issuing(db, 10, None)] == [(S3, 100, 0, None)]
    found = queries.over_issuing(db, 4, None)
    assert [(s["scheme_id"], s["issued"], s["scanned"], s["ratio"])
            for s in found] == [(S3, 100, 0, None), (S1, 15, 3, 5.0),
                                (S2, 4, 1, 4.0)]
    assert [(b["id"], b["scanned"]) for b in found[1]["batches"]] == [
        ("batch-a", 3), ("batch-b", 0)]
    assert [s["scheme_id"] for s in queries.over_issuing(db, 4, "Shanghai")] == [S2]


def _alerts(db: Database, kind: str, city: str | None = None) -> list[Any]:
    where = Where().eq("kind", kind).cond(INVOLVES_ALERT_CITY, city, city)
    return queries.code_alerts(db, where, 50, 0).items


def test_likely_copies(db: Database) -> None:
    (alert,) = _alerts(db, "likely_copy")
    assert (alert["subject"], alert["scheme_id"], alert["day"]) == (
        X1, S1, "2026-03-10")
    assert [(r["report_id"], r["idx"], r["city"], r["at"])
            for r in alert["records"]] == [
        (R2, 0, "Shanghai", "2026-03-10T08:05:00Z"),
        (R1, 0, "Kunshan", "2026-03-10T08:00:00Z")]
    assert "in Shanghai at 2026-03-10T08:05:00Z and in Kunshan" in alert["detail"]
    assert _alerts(db, "likely_copy", "Kunshan") == [alert]
    assert _alerts(db, "likely_copy", "Taicang") == []


def test_dynamic_replays(db: Database) -> None:
    (alert,) = _alerts(db, "dynamic_replay")
    assert alert["subject"] == sm3_hex("person-1")
    assert [(r["report_id"], r["idx"], r["terminal_id"])
            for r in alert["records"]] == [(R2, 2, "T9"), (R1, 6, "T1")]


def test_scans_per_day_scheme_city_kind_result(db: Database) -> None:
    rows = queries.code_usage(db, S2, None, None, None)
    assert rows == [
        {"day": "2026-03-12", "scheme_id": S2, "city": "Kunshan", "kind": "static",
         "result": "refused", "scans": 1},
        {"day": "2026-03-12", "scheme_id": S2, "city": "Kunshan", "kind": "static",
         "result": "valid", "scans": 1}]
    march_10 = queries.code_usage(db, None, None, "2026-03-10", "2026-03-10")
    assert [(r["city"], r["scans"]) for r in march_10] == [("Kunshan", 2),
                                                           ("Shanghai", 2)]
    # Shanghai sees its own scans and its scheme's codes scanned elsewhere
    assert {(r["scheme_id"], r["city"]) for r in queries.code_usage(
        db, None, "Shanghai", None, None)} == {(S1, "Shanghai"), (S2, "Kunshan")}
    assert queries.code_usage(db, None, "Taicang", None, None) == []


def test_scans_of_one_code(db: Database) -> None:
    found = queries.code_scans(db, X1, None)
    assert [(s["report_id"], s["city"], s["scanned_at"]) for s in found["scans"]] == [
        (R1, "Kunshan", "2026-03-10T08:00:00Z"),
        (R2, "Shanghai", "2026-03-10T08:05:00Z"),
        (R1, "Kunshan", "2026-03-11T08:00:00Z")]
    assert [b["id"] for b in found["batches"]] == ["batch-a"]
    shanghai = queries.code_scans(db, X1, "Shanghai")
    assert [s["city"] for s in shanghai["scans"]] == ["Shanghai"]
    assert shanghai["batches"] == []
