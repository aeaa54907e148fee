"""The CLI around the API: ``serve`` (embedded default, PostgreSQL read models,
the Fabric flag), ``projections rebuild|status``."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from apikit import ROOT, cli, free_port, serve, stop
from helpers import Clients, run_scenario

from ledger.connect import EmbeddedConnection
from ledger.embedded import EmbeddedNode


def eventually(check: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} never happened")


def token(data_dir: Path, *args: str) -> str:
    out = cli("token", "issue", "--data-dir", str(data_dir), *args)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_serve_embedded_default(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    proc, url = serve(data_dir)
    try:
        assert httpx.get(f"{url}/docs").status_code == 200
        assert (data_dir / "readmodel.sqlite").exists()
        auth = {"Authorization": "Bearer " + token(data_dir, "--city", "Kunshan",
                                                   "--role", "city_admin")}
        r = httpx.post(f"{url}/api/departments", headers=auth, json={
            "code": "transport", "name": "Transport", "duties": ["transport"]})
        assert r.status_code == 201, r.text
        eventually(lambda: httpx.get(f"{url}/api/departments", headers=auth)
                   .json()["total"] == 1, "the department reaching the read model")
        again = cli("serve", "--data-dir", str(data_dir), "--port",
                    str(free_port()))
        assert again.returncode == 2 and "in use" in again.stderr
    finally:
        stop(proc)


def test_serve_fabric_needs_a_network(tmp_path: Path) -> None:
    out = cli("serve", "--ledger", "fabric", "--data-dir", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "needs --network DIR" in out.stderr
    out = cli("serve", "--ledger", "fabric", "--data-dir", str(tmp_path),
              "--network", str(tmp_path / "none"))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "network.json not found" in out.stderr


@pytest.mark.postgres
def test_serve_with_postgres_read_models(tmp_path: Path, pg_dsn: str) -> None:
    """Ledger and read models in one PostgreSQL database: no table clashes."""
    data_dir = tmp_path / "node"
    proc, url = serve(data_dir, "--database", pg_dsn, "--dsn", pg_dsn)
    try:
        assert not (data_dir / "readmodel.sqlite").exists()
        auth = {"Authorization": "Bearer " + token(data_dir, "--city", "Center",
                                                   "--role", "center_admin",
                                                   "--dsn", pg_dsn)}
        r = httpx.post(f"{url}/api/clearing-runs", headers=auth,
                       json={"business_day": "2030-01-01"})
        assert r.status_code == 201, r.text
        eventually(lambda: httpx.get(f"{url}/api/clearing-runs", headers=auth)
                   .json()["total"] == 1, "the run reaching the read model")

        def blocks_verified() -> bool:
            page = httpx.get(f"{url}/api/blocks", headers=auth).json()
            return page["total"] >= 2 and all(b["verified"] for b in page["items"])
        eventually(blocks_verified, "the blocks being projected and verified")
    finally:
        stop(proc)


def test_projections_rebuild_and_status(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    with EmbeddedNode(data_dir) as node:
        run_scenario(Clients(EmbeddedConnection(node)))
        events, height = len(list(node.events())), node.height()
        busy = cli("projections", "rebuild", "--data-dir", str(data_dir))
        assert busy.returncode == 2 and "in use" in busy.stderr
    out = cli("projections", "rebuild", "--data-dir", str(data_dir))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["events"], result["blocks"]) == (events, height)
    status = json.loads(cli("projections", "status", "--data-dir",
                            str(data_dir)).stdout)
    assert status["ledger_height"] == height
    assert status["positions"]["blocks"][0] == height - 1
    missing = cli("projections", "rebuild", "--data-dir", str(tmp_path / "none"))
    assert missing.returncode == 2 and "no ledger" in missing.stderr


# `cityunion projections rebuild` with the card projection unable to apply a
# dispute (as PostgreSQL could not store a NUL the ledger once accepted): the
# dispute comes halfway through run_scenario's history.
FAILING_REBUILD = """
import sys
from projections import views

def cannot_store(self, cur, ev):
    raise ValueError("PostgreSQL text fields cannot contain NUL (0x00) bytes")

views.CardTransactions.handlers["TransactionBatchDisputed"] = cannot_store
from cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def read_model(data_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the SQLite read models, tables by name (times left out)."""
    with sqlite3.connect(data_dir / "readmodel.sqlite") as conn:
        tables = [t for (t,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(conn.execute(
            f"SELECT * FROM {t}" if t != "projection_tracking" else
            "SELECT name, block, tx, event, tx_id FROM projection_tracking"))
            for t in tables}


def test_failed_rebuild_keeps_the_previous_read_models(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    with EmbeddedNode(data_dir) as node:
        run_scenario(Clients(EmbeddedConnection(node)))
        disputed = next(e for e in node.events()
                        if e.type == "TransactionBatchDisputed")
    assert cli("projections", "rebuild", "--data-dir", str(data_dir)).returncode == 0
    before = read_model(data_dir)
    assert before["card_records"] and before["clearing_runs"]
    out = subprocess.run([sys.executable, "-c", FAILING_REBUILD, "projections",
                          "rebuild", "--data-dir", str(data_dir)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and not out.stdout
    [line] = out.stderr.splitlines()
    assert line.startswith("cityunion: error: rebuild failed, the read models are "
                           "as they were: projection card_transactions cannot "
                           "apply TransactionBatchDisputed at block "
                           f"{disputed.position.block}, tx 0, event 0"), line
    assert "NUL" in line
    assert read_model(data_dir) == before
    status = cli("projections", "status", "--data-dir", str(data_dir))
    assert status.returncode == 0 and json.loads(status.stdout)["healthy"]
