"""The statistics read the rollups (per day; day, city and side; day, scene and
type; month and pair; day and pair) rather than the finest table: for any
records and any filter, each answer equals the sum computed from the records
themselves."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections import queries
from projections.db import Database
from projections.follower import ensure_schema
from projections.queries import GROUPS, StatsFilter
from projections.views import add_stats

CITIES = ("Kunshan", "Shanghai", "Taicang")
SCENES = ("metro", "bus", "ferry")
TYPES = ("purchase", "top_up")
START = date(2025, 12, 20)
DAYS = [(START + timedelta(days=d)).isoformat() for d in range(80)]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    database = Database(Path(tmp_path_factory.mktemp("stats")) / "rm.sqlite")
    ensure_schema(database)
    yield database
    database.close()


def _clear(db: Database) -> None:
    with db.transaction() as cur:
        for table in ("card_stats", "stats_day", "stats_city_day",
                      "stats_scene_day", "stats_pair_total"):
            cur.execute(f"DELETE FROM {table}")


records = st.lists(st.tuples(
    st.sampled_from(DAYS), st.sampled_from(CITIES), st.sampled_from(CITIES),
    st.sampled_from(SCENES), st.sampled_from(TYPES), st.integers(1, 9),
    st.integers(1, 10_000)).filter(lambda r: r[1] != r[2]), max_size=40)
maybe_day = st.none() | st.sampled_from(DAYS)


def _expected(rows: list[tuple[Any, ...]], group: str,
              f: StatsFilter) -> list[dict[str, Any]]:
    sums: dict[tuple[Any, ...], list[int]] = {}
    index = {"business_day": 0, "acquirer_city": 1, "issuer_city": 2, "scene": 3,
             "type": 4}
    for r in rows:
        if ((f.day_from and r[0] < f.day_from) or (f.day_to and r[0] > f.day_to)
                or (f.scene and r[3] != f.scene) or (f.type and r[4] != f.type)
                or (f.city and f.city not in (r[1], r[2]))):
            continue
        key = tuple(r[index[c]] for c in GROUPS[group])
        into = sums.setdefault(key, [0, 0])
        into[0] += r[5]
        into[1] += r[6]
    return [{**dict(zip(GROUPS[group], k, strict=True)), "record_count": n,
             "amount_fen": fen} for k, (n, fen) in sorted(sums.items())]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records, st.sampled_from(sorted(GROUPS)), maybe_day, maybe_day,
       st.none() | st.sampled_from(SCENES), st.none() | st.sampled_from(TYPES),
       st.none() | st.sampled_from(CITIES), st.randoms(use_true_random=False))
def test_every_statistic_equals_the_sum_of_its_records(
        db: Database, rows: list[tuple[Any, ...]], group: str, lo: str | None,
        hi: str | None, scene: str | None, kind: str | None, city: str | None,
        order: random.Random) -> None:
    """Batches arrive in any order of days (a late batch of an earlier day)."""
    _clear(db)
    batches = [rows[i:i + 3] for i in range(0, len(rows), 3)]
    order.shuffle(batches)
    for batch in batches:
        with db.transaction() as cur:
            add_stats(cur, batch)
    f = StatsFilter(lo, hi, scene, kind, city)
    got = [{k: (int(v) if k in ("record_count", "amount_fen") else v)
            for k, v in r.items()} for r in queries.volume(db, group, f)]
    assert sorted(got, key=lambda r: tuple(r[c] for c in GROUPS[group])) == \
        _expected(rows, group, f)
    if scene is None and kind is None:
        ranking = {r["city"]: r for r in queries.ranking(db, "amount_fen", f)}
        for c in CITIES:
            mine = _expected(rows, "day", StatsFilter(lo, hi, city=c))
            assert ranking.get(c, {"amount_fen": 0})["amount_fen"] == sum(
                r["amount_fen"] for r in mine)
        peaks = queries.peak_days(db, f, 3)
        by_day = _expected(rows, "day", StatsFilter(lo, hi))
        assert [p["record_count"] for p in peaks] == sorted(
            (r["record_count"] for r in by_day), reverse=True)[:3]


FEW_DAYS = DAYS[8:16]  # across the new year, so that ranges often meet records
pair_records = st.lists(st.tuples(
    st.sampled_from(FEW_DAYS), st.sampled_from(CITIES), st.sampled_from(CITIES),
    st.just("metro"), st.just("purchase"), st.integers(1, 9),
    st.integers(1, 10_000)).filter(lambda r: r[1] != r[2]), max_size=30)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair_records, st.none() | st.sampled_from(FEW_DAYS),
       st.none() | st.sampled_from(FEW_DAYS), st.none() | st.sampled_from(CITIES),
       st.randoms(use_true_random=False))
def test_pairs_over_any_range_from_running_totals(
        db: Database, rows: list[tuple[Any, ...]], lo: str | None, hi: str | None,
        city: str | None, order: random.Random) -> None:
    _clear(db)
    batches = [rows[i:i + 2] for i in range(0, len(rows), 2)]
    order.shuffle(batches)
    for batch in batches:
        with db.transaction() as cur:
            add_stats(cur, batch)
    f = StatsFilter(lo, hi, city=city)
    got = [{k: (int(v) if k in ("record_count", "amount_fen") else v)
            for k, v in r.items()} for r in queries.volume(db, "pair", f)]
    assert got == _expected(rows, "pair", f)
