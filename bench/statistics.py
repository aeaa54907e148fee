"""Statistics benchmark: the ``/api/statistics`` endpoints over the read models
of 10 million card records in PostgreSQL. Prints one JSON object.

    python -m bench.statistics --dsn postgresql://... [--records 10000000]
                               [--cities 80] [--days 365] [--requests 200]

It makes a database of its own on the server (dropped afterwards), writes the
statistics table exactly as the card projection would for ``--records`` records
(one year, ``--cities`` member cities, traffic concentrated on neighbouring
pairs as in real networks, the eight scenes and three types), starts ``cityunion
serve`` on it, and times each endpoint from a client over HTTP with varied
parameters, one request at a time: p50 and p99 per endpoint. The issue's target:
p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from bench.api import _free_port, _start_server
from bench.clearing import consortium_file
from bench.ledger import percentile
from chaincode.domain import RECORD_TYPES, SCENES
from network.consortium import CONSORTIUM_ENV

TARGET_P99_MS = 50.0
FIRST_DAY = date(2025, 1, 1)

# One row per (day, acquirer, issuer, scene, type) the records fall in, summed
# in the database from generated records (never sent through Python). A record's
# acquirer is skewed to the large cities; its issuer is another city, one of the
# acquirer's two neighbours four times in five.
FILL = """
INSERT INTO card_stats
SELECT day, acquirer, issuer, scene, kind, COUNT(*), SUM(amount)
FROM (
  SELECT to_char(%(first)s::date + (random() * (%(days)s - 1))::int, 'YYYY-MM-DD')
           AS day,
         'C' || lpad(a::text, 3, '0') AS acquirer,
         'C' || lpad(((a - 1 + CASE WHEN random() < 0.8
                                 THEN 1 + floor(random() * 2)::int
                                 ELSE 1 + floor(random() * (%(cities)s - 1))::int
                                 END) %% %(cities)s + 1)::text, 3, '0') AS issuer,
         (%(scenes)s::text[])[1 + floor(random() ^ 2 * 8)::int] AS scene,
         (%(kinds)s::text[])[CASE WHEN random() < 0.9 THEN 1
                          ELSE 2 + (random() * 0.99)::int END] AS kind,
         100 + (random() * 900)::int AS amount
  FROM (SELECT 1 + (random() ^ 2 * (%(cities)s - 1))::int AS a
        FROM generate_series(1, %(records)s)) g
) r
GROUP BY day, acquirer, issuer, scene, kind
"""


# The rollups, from the finest table, as projections.views.add_stats keeps them.
_SUMS = "SUM(record_count), SUM(amount_fen)"
ROLLUPS = [
    f"INSERT INTO stats_day SELECT business_day, {_SUMS} FROM card_stats "
    "GROUP BY business_day",
    f"INSERT INTO stats_city_day SELECT business_day, acquirer_city, 'acquirer', "
    f"{_SUMS} FROM card_stats GROUP BY business_day, acquirer_city",
    f"INSERT INTO stats_city_day SELECT business_day, issuer_city, 'issuer', "
    f"{_SUMS} FROM card_stats GROUP BY business_day, issuer_city",
    f"INSERT INTO stats_scene_day SELECT business_day, scene, type, {_SUMS} "
    "FROM card_stats GROUP BY business_day, scene, type",
    # running totals per pair on every day with records, from its first day
    "INSERT INTO stats_pair_total SELECT d.business_day, p.acquirer_city, "
    "p.issuer_city, SUM(COALESCE(s.n, 0)) OVER w, SUM(COALESCE(s.fen, 0)) OVER w "
    "FROM stats_day d JOIN (SELECT acquirer_city, issuer_city, MIN(business_day) "
    "AS first FROM card_stats GROUP BY acquirer_city, issuer_city) p ON "
    "d.business_day >= p.first LEFT JOIN (SELECT business_day, acquirer_city, "
    "issuer_city, SUM(record_count) AS n, SUM(amount_fen) AS fen FROM card_stats "
    "GROUP BY business_day, acquirer_city, issuer_city) s ON s.business_day = "
    "d.business_day AND s.acquirer_city = p.acquirer_city AND s.issuer_city = "
    "p.issuer_city WINDOW w AS (PARTITION BY p.acquirer_city, p.issuer_city "
    "ORDER BY d.business_day) "
    # day by day, as the projection writes them (a day's rows together)
    "ORDER BY d.business_day, p.acquirer_city, p.issuer_city",
]


def _database(dsn: str, name: str, create: bool) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')
        else:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fill(dsn: str, records: int, cities: int, days: int) -> dict[str, Any]:
    """Create the read models and fill the statistics of ``records`` records."""
    import psycopg

    from projections.db import Database
    from projections.follower import ensure_schema

    db = Database(dsn)
    try:
        ensure_schema(db)
    finally:
        db.close()
    t0 = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT setseed(0.42)")
        conn.execute(FILL, {  # type: ignore[arg-type]
            "first": FIRST_DAY.isoformat(), "days": days, "cities": cities,
            "records": records, "scenes": list(SCENES), "kinds": list(RECORD_TYPES)})
        for sql in ROLLUPS:
            conn.execute(sql)
        conn.execute("ANALYZE")
        row = conn.execute("SELECT COUNT(*), SUM(record_count) FROM card_stats"
                           ).fetchone()
    assert row is not None
    return {"stats_rows": row[0], "records": int(row[1]),
            "fill_seconds": round(time.perf_counter() - t0, 1)}


def requests(days: int, cities: int) -> dict[str, Callable[[int], dict[str, Any]]]:
    """Per endpoint, the query parameters of its ``i``-th request."""
    def day(i: int) -> str:
        return (FIRST_DAY + timedelta(days=i * 37 % days)).isoformat()

    def month(i: int) -> dict[str, Any]:
        start = FIRST_DAY + timedelta(days=i * 11 % max(days - 31, 1))
        return {"from": start.isoformat(),
                "to": (start + timedelta(days=30)).isoformat()}

    def calendar_month(i: int) -> dict[str, Any]:
        first = date(2025, 1 + i % 12, 1)
        last = date(2025 + first.month // 12, first.month % 12 + 1, 1)
        return {"from": first.isoformat(),
                "to": (last - timedelta(days=1)).isoformat()}

    def grouped(group: str, span: Callable[[int], dict[str, Any]]
                ) -> Callable[[int], dict[str, Any]]:
        return lambda i: {"group": group, **span(i)}

    out = {f"volume (a calendar month, by {g})": grouped(g, calendar_month)
           for g in ("day", "pair", "scene", "type", "acquirer", "issuer")}
    out |= {f"volume (any 31 days, by {g})": grouped(g, month)
            for g in ("day", "pair", "scene")}
    return out | {
        "volume (a year, by day)": lambda i: {"group": "day"},
        "volume (a year, by pair)": lambda i: {"group": "pair"},
        "volume (one city, a month, by pair)": lambda i: {
            "group": "pair", "city": f"C{1 + i % cities:03d}", **month(i)},
        "volume (one scene, one day)": lambda i: {
            "group": "pair", "scene": SCENES[i % len(SCENES)], "from": day(i),
            "to": day(i)},
        "year-on-year": lambda i: {"year": 2025, **(
            {"city": f"C{1 + i % cities:03d}"} if i % 2 else {})},
        "peak-days": lambda i: {"limit": 10, **(month(i) if i % 2 else {})},
        "ranking": lambda i: {"by": ("amount_fen", "record_count")[i % 2],
                              **(month(i) if i % 2 else {})},
    }


def measure(port: int, token: str, days: int, cities: int,
            count: int) -> dict[str, Any]:
    paths = {"volume": "/api/statistics/volume",
             "year-on-year": "/api/statistics/year-on-year",
             "peak-days": "/api/statistics/peak-days",
             "ranking": "/api/statistics/ranking"}
    out: dict[str, Any] = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers={
            "Authorization": f"Bearer {token}"}) as client:
        for name, params in requests(days, cities).items():
            path = paths[name.split(" ")[0]]
            client.get(path, params=params(0)).raise_for_status()  # warm
            times = []
            for i in range(count):
                t0 = time.perf_counter()
                r = client.get(path, params=params(i))
                times.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
            out[name] = {"p50_ms": round(percentile(times, 0.5), 2),
                         "p99_ms": round(percentile(times, 0.99), 2),
                         "rows_last": len(r.json()["rows"])}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--dsn", default=os.environ.get("CITYUNION_TEST_PG_DSN"),
                   help="a PostgreSQL server, postgresql://... (default: "
                   "$CITYUNION_TEST_PG_DSN)")
    p.add_argument("--records", type=int, default=10_000_000)
    p.add_argument("--cities", type=int, default=80)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--requests", type=int, default=200)
    a = p.parse_args()
    if not a.dsn or not a.dsn.startswith(("postgresql://", "postgres://")):
        # a key=value DSN would be taken for a SQLite file name downstream
        p.error("--dsn (or $CITYUNION_TEST_PG_DSN): a postgresql:// URL naming "
                "a PostgreSQL server")
    from api.tokens import TokenService

    name = f"cu_bench_stats_{secrets.token_hex(4)}"
    dsn = urlunsplit(urlsplit(a.dsn)._replace(path=f"/{name}"))
    _database(a.dsn, name, create=True)
    try:
        print(f"filling the statistics of {a.records:,} records…", file=sys.stderr)
        filled = fill(dsn, a.records, a.cities, a.days)
        with tempfile.TemporaryDirectory(prefix="cu-bench-stats-") as tmp:
            os.environ[CONSORTIUM_ENV] = str(consortium_file(Path(tmp), a.cities))
            data_dir = Path(tmp) / "node"
            token = TokenService(data_dir).issue("Center", "center_admin")[1]
            port = _free_port()
            server = _start_server(data_dir, port, ["--database", dsn])
            try:
                timed = measure(port, token, a.days, a.cities, a.requests)
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=30)
    finally:
        _database(a.dsn, name, create=False)
    worst = max(v["p99_ms"] for v in timed.values())
    print(json.dumps({"benchmark": "statistics", "cities": a.cities,
                      "days": a.days, **filled, "requests_each": a.requests,
                      "endpoints": timed, "worst_p99_ms": worst,
                      "target_p99_ms": TARGET_P99_MS,
                      "within_target": worst < TARGET_P99_MS}, indent=2))


if __name__ == "__main__":
    main()
