"""Projections: exactly once across a crash between the ledger commit and the
view update, refusal of a second application, rebuild (in one transaction),
block verification state, an event that cannot be projected stopping the
follower visibly, and the same results on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apikit import KS_ADMIN, KS_AUDITOR, Api, cli, problem
from fastapi.testclient import TestClient
from helpers import (
    CENTER,
    Clients,
    batch_args,
    card_record,
    identifier_args,
    run_scenario,
)

from api.app import create_app
from api.gateway import Gateway
from api.settings import Settings
from ledger.connect import EmbeddedConnection
from ledger.embedded import EmbeddedLedger, EmbeddedNode
from ledger.protocol import CommittedEvent
from projections import queries
from projections.db import Cursor, Database
from projections.follower import (
    Follower,
    PositionConflict,
    ProjectionFailed,
    _advance,
    ensure_schema,
    read_failures,
    read_positions,
    rebuild,
)
from projections.queries import Where
from projections.views import (
    ALL_PROJECTIONS,
    EVENT_PROJECTIONS,
    CardTransactions,
    CodeSchemes,
    Projection,
)

BATCH = 4
KILL_AT = 3  # the follower dies inside its third batch's transaction

CHILD = """
import sys, time
from pathlib import Path
from api.gateway import Gateway
from ledger.embedded import EmbeddedLedger, EmbeddedNode
from projections.db import Database
from projections.follower import Follower

data_dir, target, marker, kill_at, batch = sys.argv[1:6]
node = EmbeddedNode(data_dir, read_only=True)
ledger = EmbeddedLedger(node, node.wallet.identity("Center", "auditor"))
calls = []

def before_commit():
    calls.append(1)
    if len(calls) == int(kill_at):  # views updated, position written, not committed
        Path(marker).write_text("in the transaction")
        time.sleep(120)

Follower(ledger, Database(target), batch_size=int(batch),
         before_commit=before_commit).catch_up()
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A closed ledger whose history touches every event family."""
    data_dir = tmp_path_factory.mktemp("scenario") / "node"
    node = EmbeddedNode(data_dir)
    ids = Clients(EmbeddedConnection(node))
    run_scenario(ids)
    for i in range(6):
        ids("Kunshan", "transport").submit("RegisterIdentifier",
                                           identifier_args("place", f"poi{i}"))
    ids("Taicang").submit("ReportTransactionBatch", batch_args(
        [card_record("x1", "Kunshan", 900)], "2026-11-21"))
    node.close()
    yield data_dir


def reader(node: EmbeddedNode) -> EmbeddedLedger:
    return EmbeddedLedger(node, node.wallet.identity(CENTER, "auditor"))


def dump(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every view row, in a stable order (positions' timestamps left out)."""
    out = {}
    for p in ALL_PROJECTIONS:
        for table in p.tables:
            rows = db.query(f"SELECT * FROM {table}")
            out[table] = sorted(tuple(r.values()) for r in rows)
    out["tracking"] = sorted((n, tuple(p)) for n, p in read_positions(db).items())
    return out


def reference(scenario: Path, tmp_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with EmbeddedNode(scenario, read_only=True) as node:
        db = Database(tmp_path / "reference.sqlite")
        Follower(reader(node), db).catch_up()
        try:
            return dump(db)
        finally:
            db.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres",
                                               marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_dsn"))
    return str(tmp_path / "readmodel.sqlite")


def test_restart_after_kill_is_exactly_once(scenario: Path, target: str,
                                            tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(scenario), target, str(marker),
         str(KILL_AT), str(BATCH)], cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "the follower ended before the crash point"
            assert time.monotonic() < deadline, "the follower never got there"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with EmbeddedNode(scenario, read_only=True) as node:
        events: list[CommittedEvent] = list(node.events())
        db = Database(target)
        try:
            # What survived is exactly the batches committed before the crash.
            done = (KILL_AT - 1) * BATCH
            positions = read_positions(db)
            for p in EVENT_PROJECTIONS:
                assert positions[p.name] == events[done - 1].position
            registered = sum(e.type == "IdentifierRegistered" for e in events[:done])
            assert db.query("SELECT COUNT(*) AS n FROM identifiers")[0]["n"] == (
                registered)
            # A new follower resumes there and ends equal to a clean projection.
            applied = Follower(reader(node), db).catch_up()
            assert applied == len(events) - done
            assert dump(db) == reference(scenario, tmp_path)
        finally:
            db.close()


def test_second_application_is_refused(scenario: Path, target: str,
                                       tmp_path: Path) -> None:
    with EmbeddedNode(scenario, read_only=True) as node:
        db = Database(target)
        try:
            first, second = Follower(reader(node), db), Follower(reader(node), db)
            first.catch_up()
            # ``second`` still believes nothing is projected: its transaction is
            # refused, it re-reads the positions and applies nothing twice.
            assert second.apply(list(node.events())) == 0
            assert dump(db) == reference(scenario, tmp_path)
            with pytest.raises(PositionConflict), db.transaction() as cur:
                cur.execute("DELETE FROM identifiers")
                _advance(cur, "identifiers", (-1, -1, -1), (9, 9, 9))  # type: ignore
            assert dump(db) == reference(scenario, tmp_path)  # rolled back
        finally:
            db.close()


def test_rebuild_equals_live_projection(scenario: Path, tmp_path: Path) -> None:
    with EmbeddedNode(scenario, read_only=True) as node:
        db = Database(tmp_path / "rm.sqlite")
        try:
            Follower(reader(node), db).catch_up()
            db.script("UPDATE identifiers SET status = 'tampered'")
            result = rebuild(reader(node), db)
            assert result["events"] == len(list(node.events()))
            assert dump(db) == reference(scenario, tmp_path)
        finally:
            db.close()


def test_blocks_view_records_failed_verification(scenario: Path,
                                                 tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    shutil.copytree(scenario, data_dir)
    with sqlite3.connect(data_dir / "ledger.sqlite") as conn:
        sig = conn.execute("SELECT signature FROM blocks WHERE number = 3").fetchone()
        conn.execute("UPDATE blocks SET signature = ? WHERE number = 3",
                     (sig[0][:-4] + ("0000" if sig[0][-4:] != "0000" else "1111"),))
    gateway = Gateway(EmbeddedConnection(EmbeddedNode(data_dir)))
    db = Database(tmp_path / "rm.sqlite")
    try:
        Follower(gateway.reader, db, verify_block=gateway.verify_block).catch_up()
        rows = {r["number"]: r for r in db.query("SELECT * FROM block_summaries")}
        assert len(rows) == gateway.reader.height()
        assert rows[3]["verified"] == 0 and "signature" in rows[3]["verify_error"]
        assert all(r["verified"] == 1 for n, r in rows.items() if n != 3)
    finally:
        db.close()
        gateway.close()


@pytest.mark.postgres
def test_sqlite_and_postgres_agree(scenario: Path, pg_dsn: str,
                                   tmp_path: Path) -> None:
    with EmbeddedNode(scenario, read_only=True) as node:
        lite, pg = Database(tmp_path / "rm.sqlite"), Database(pg_dsn)
        try:
            for db in (lite, pg):
                rebuild(reader(node), db)
            assert dump(lite) == dump(pg)
            reads = [
                lambda db: queries.dashboard(db, 30, 5),
                lambda db: queries.identifiers(db, Where().eq("kind", "place"), 3, 1),
                lambda db: queries.departments(db, Where().eq("city", "Kunshan"),
                                               50, 0),
                lambda db: queries.code_schemes(db, Where(), 50, 0),
                lambda db: queries.card_batches(db, Where().cond(
                    queries.INVOLVES_CITY, "Kunshan", "Kunshan"), 50, 0),
                lambda db: queries.card_volumes(db, Where().cond(
                    "business_day >= ?", "2026-11-19"), 50, 0),
                lambda db: queries.clearing_runs(db, Where(), 50, 0),
                lambda db: queries.clearing_run(db, "2026-11-19"),
                lambda db: queries.blocks(db, Where().eq("verified", 1), 5, 0),
                lambda db: queries.settlements(db, Where(), 50, 0),
                lambda db: queries.disputes(db, Where(), 50, 0),
                lambda db: queries.blacklist_since(db, -1, 50),
                lambda db: queries.risk_alerts(db, Where(), 50, 0),
                *(lambda db, g=g: queries.volume(db, g, queries.StatsFilter())
                  for g in queries.GROUPS),
                lambda db: queries.volume(db, "pair", queries.StatsFilter(
                    "2026-11-01", "2026-11-30", city="Taicang")),
                lambda db: queries.year_on_year(db, 2026, "Kunshan"),
                lambda db: queries.peak_days(db, queries.StatsFilter(), 5),
                lambda db: queries.ranking(db, "amount_fen",
                                           queries.StatsFilter()),
            ]
            for read in reads:
                assert read(lite) == read(pg)
            batch = lite.query("SELECT id FROM card_batches")[0]["id"]
            assert queries.card_batch(lite, batch) == queries.card_batch(pg, batch)
        finally:
            lite.close()
            pg.close()


def test_schema_is_idempotent(tmp_path: Path) -> None:
    db = Database(tmp_path / "rm.sqlite")
    try:
        ensure_schema(db)
        ensure_schema(db)
        assert set(read_positions(db)) == {p.name for p in ALL_PROJECTIONS}
    finally:
        db.close()


# ---------------------------------------------- an event that cannot be projected
def _failing(projection: type[Projection], event_type: str,
             store: Callable[[Cursor, CommittedEvent], None]) -> tuple[Projection, ...]:
    """The event projections, ``projection`` replaced by one that runs ``store``
    after its own handler for ``event_type`` (a test seam)."""
    real = next(p for p in EVENT_PROJECTIONS if isinstance(p, projection))

    class Failing(Projection):
        name, tables, schema = real.name, real.tables, real.schema

        def apply(self, cur: Cursor, ev: CommittedEvent) -> None:
            real.apply(cur, ev)
            if ev.type == event_type:
                store(cur, ev)

    return tuple(Failing() if p is real else p for p in EVENT_PROJECTIONS)


def _nul_in_disputes(db: Database) -> tuple[Projection, ...]:
    """Card transactions storing a dispute's reason with a NUL, as the ledger
    accepted before the contract refused it: PostgreSQL refuses the value, and
    with SQLite, which would store it, the handler raises as psycopg does."""
    def store(cur: Cursor, ev: CommittedEvent) -> None:
        cur.execute("UPDATE card_batches SET reported_by = ? WHERE id = ?",
                    (ev.data["reason"] + "\x00", ev.aggregate_id))
        if not db.postgres:
            raise ValueError("PostgreSQL text fields cannot contain NUL (0x00) "
                             "bytes")
    return _failing(CardTransactions, "TransactionBatchDisputed", store)


def test_an_event_that_cannot_be_projected_stops_the_follower(
        scenario: Path, target: str, tmp_path: Path) -> None:
    with EmbeddedNode(scenario, read_only=True) as node:
        events: list[CommittedEvent] = list(node.events())
        bad = next(i for i, e in enumerate(events)
                   if e.type == "TransactionBatchDisputed")
        assert 0 < bad < len(events) - 1
        db = Database(target)
        try:
            follower = Follower(reader(node), db, batch_size=BATCH,
                                projections=_nul_in_disputes(db))
            with pytest.raises(ProjectionFailed) as info:
                follower.catch_up()
            failure = info.value.failure
            assert (failure.projection, failure.position, failure.tx_id,
                    failure.event_type) == (
                "card_transactions", events[bad].position, events[bad].tx_id,
                "TransactionBatchDisputed")
            assert "NUL" in failure.error and "\n" not in failure.error
            # Everything before the event is applied, nothing from it on.
            positions = read_positions(db)
            for p in EVENT_PROJECTIONS:
                assert positions[p.name] == events[bad - 1].position
            assert db.query("SELECT COUNT(*) AS n FROM card_records "
                            "WHERE status = 'disputed'")[0]["n"] == 0
            assert db.query("SELECT COUNT(*) AS n FROM clearing_runs")[0]["n"] == 0
            # The failure is recorded for other processes, and says so there.
            assert read_failures(db) == [failure]
            status = Follower(reader(node), db).status()
            assert not status.healthy and status.failure == failure
            assert status.ledger_height == node.height()
            # Retrying the same fails the same, at the same event.
            with pytest.raises(ProjectionFailed) as again:
                Follower(reader(node), db, projections=_nul_in_disputes(db)
                         ).catch_up()
            assert again.value.failure.position == failure.position
            # Once the projection can apply it (fixed), the failure is gone.
            fixed = Follower(reader(node), db)
            assert fixed.catch_up() == len(events) - bad
            assert read_failures(db) == [] and fixed.status().healthy
            assert dump(db) == reference(scenario, tmp_path)
        finally:
            db.close()


def test_a_failed_rebuild_leaves_the_previous_views(scenario: Path, target: str
                                                     ) -> None:
    with EmbeddedNode(scenario, read_only=True) as node:
        db = Database(target)
        try:
            rebuild(reader(node), db)
            before = dump(db)
            with pytest.raises(ProjectionFailed, match="TransactionBatchDisputed"):
                rebuild(reader(node), db, projections=_nul_in_disputes(db))
            assert dump(db) == before
            assert read_failures(db) == []  # the previous views are healthy
        finally:
            db.close()


def test_a_stopped_follower_is_unhealthy_everywhere(tmp_path: Path) -> None:
    """The live follower of a running API stops at a department it cannot
    project: /api/projections, /healthz and `projections status` say where
    and why, and nothing after it is projected."""
    def refuse(cur: Cursor, ev: CommittedEvent) -> None:
        if ev.data["code"] == "d-poison":
            raise ValueError("PostgreSQL text fields cannot contain NUL bytes")

    settings = Settings(data_dir=tmp_path / "node", follow=False)
    with TestClient(create_app(settings)) as client:
        api = Api(client)
        runtime = api.runtime
        runtime.follower = Follower(
            runtime.gateway.reader, runtime.db,
            verify_block=runtime.gateway.verify_block,
            projections=_failing(CodeSchemes, "DepartmentRegistered", refuse))
        runtime.follower.start()
        assert client.get("/healthz").json() == {"status": "ok"}
        api.department(code="d-before")
        api.sync()
        poison = api.ok("/api/departments", {"code": "d-poison", "name": "Poison",
                                             "duties": ["water"]}, KS_ADMIN)
        api.department(code="d-after")
        with pytest.raises(ProjectionFailed):
            api.sync()
        for _ in range(100):  # the applier thread ends
            if not runtime.follower.status().running:
                break
            time.sleep(0.05)

        status = api.get("/api/projections", KS_AUDITOR).json()
        where = {"projection": "code_schemes", "block": poison["block_number"],
                 "tx": 0, "event": 0, "tx_id": poison["tx_id"],
                 "event_type": "DepartmentRegistered"}
        assert (status["healthy"], status["running"]) == (False, False)
        assert {k: status["failed"][k] for k in where} == where
        assert "NUL" in status["failed"]["error"]
        assert "DepartmentRegistered" in status["error"]
        height = api.height()
        assert status["ledger_height"] == height
        assert status["behind_blocks"] == height - poison["block_number"] >= 2
        assert status["positions"]["code_schemes"][0] < poison["block_number"]
        codes = {d["code"] for d in api.get("/api/departments", KS_ADMIN,
                                            limit=500).json()["items"]}
        assert "d-before" in codes and not {"d-poison", "d-after"} & codes

        health = problem(client.get("/healthz"), 503)
        assert health["type"] == "/problems/unhealthy"
        assert health["detail"].startswith("unhealthy: projection code_schemes "
                                           "cannot apply DepartmentRegistered at "
                                           f"block {poison['block_number']}")

        out = cli("projections", "status", "--data-dir", str(settings.data_dir))
        assert out.returncode == 1
        [line] = out.stderr.splitlines()
        assert "DepartmentRegistered" in line and "Traceback" not in out.stderr
        shown = json.loads(out.stdout)
        assert shown["healthy"] is False
        assert {k: shown["failed"][0][k] for k in where} == where
