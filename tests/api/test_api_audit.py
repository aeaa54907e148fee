"""Auditor endpoints: key history with tx ids, creators and blocks; a block with
its hashes and signatures; verification of a block range saying what failed."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from apikit import CENTER_ADMIN, CENTER_AUDITOR, KS_ADMIN, KS_AUDITOR, Api, problem
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings


def test_key_history(api: Api) -> None:
    scheme = api.scheme()
    decided = api.ok(f"/api/code-schemes/{scheme}/approve", None, KS_ADMIN, 200)
    history = api.get(f"/api/ledger/history/a~{scheme}", KS_AUDITOR).json()
    assert [json.loads(v["value"]) for v in history] == [
        {"type": "CodeScheme", "version": 1}, {"type": "CodeScheme", "version": 2}]
    assert history[1]["tx_id"] == decided["tx_id"]
    assert history[1]["block_number"] == decided["block_number"]
    assert history[0]["creator"] == "KunshanMSP:transport"
    assert history[1]["creator"] == "KunshanMSP:admin"
    assert api.get("/api/ledger/history/no-such-key", KS_AUDITOR).json() == []
    problem(api.get("/api/ledger/history/" + "k" * 1025, KS_AUDITOR), 422, "key")


def test_ledger_block(api: Api) -> None:
    out = api.ok("/api/departments", {"code": "audit1", "name": "Audit",
                                      "duties": ["audit"]}, ("Taicang", "city_admin"))
    n = out["block_number"]
    block = api.get(f"/api/ledger/blocks/{n}", CENTER_AUDITOR).json()
    previous = api.get(f"/api/ledger/blocks/{n - 1}", CENTER_ADMIN).json()
    assert block["previous_hash"] == previous["hash"]
    # SM2 (64 bytes) on the embedded ledger, DER ECDSA (70-72 bytes) on Fabric
    assert len(block["hash"]) == 64 and len(bytes.fromhex(block["signature"])) >= 64
    tx = next(t for t in block["transactions"] if t["tx_id"] == out["tx_id"])
    assert (tx["function"], tx["creator_msp"], tx["creator"], tx["validation"]) == (
        "RegisterDepartment", "TaicangMSP", "admin", "VALID")
    assert tx["events"] == 1 and len(bytes.fromhex(tx["signature"])) >= 64
    genesis = api.get("/api/ledger/blocks/0", KS_AUDITOR).json()
    # no predecessor: zeros on the embedded ledger, empty in a Fabric header
    assert genesis["previous_hash"] in ("0" * 64, "") and genesis[
        "transactions"] == []
    problem(api.get(f"/api/ledger/blocks/{api.height()}", KS_AUDITOR), 404, "number")
    problem(api.get("/api/ledger/blocks/x", KS_AUDITOR), 422, "number")


def test_verify_ranges(api: Api) -> None:
    api.identifier()
    height = api.height()
    whole = api.get("/api/ledger/verify", KS_AUDITOR).json()
    assert whole["ok"] and (whole["from"], whole["to"]) == (0, height - 1)
    assert whole["blocks"] == height and whole["transactions"] >= height - 1
    part = api.get("/api/ledger/verify", KS_AUDITOR, **{"from": 2, "to": 3}).json()
    # Fabric blocks are trusted from the genesis config onward: 0..3 is checked
    checked = 4 if api.runtime.settings.ledger == "fabric" else 2
    assert part["ok"] and part["blocks"] == checked and part["error"] is None
    problem(api.get("/api/ledger/verify", KS_AUDITOR, **{"from": 3, "to": 2}), 400,
            "from")
    body = problem(api.get("/api/ledger/verify", KS_AUDITOR, to=height + 5), 400,
                   "to")
    assert body["accepted"] == f"0..{height - 1}"
    problem(api.get("/api/ledger/verify", KS_AUDITOR, **{"from": -1}), 422, "from")


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[Api, Path]]:
    data_dir = tmp_path / "node"
    with TestClient(create_app(Settings(data_dir=data_dir))) as c:
        a = Api(c)
        for code in ("d1", "d2", "d3"):
            a.department(code=code)
        yield a, data_dir


def test_verify_reports_what_failed(small: tuple[Api, Path]) -> None:
    api, data_dir = small
    with sqlite3.connect(data_dir / "ledger.sqlite") as conn:
        conn.execute("UPDATE events SET payload = replace(payload, 'd2', 'dX') "
                     "WHERE block = 2")
    report = api.get("/api/ledger/verify", CENTER_AUDITOR).json()
    assert report["ok"] is False and report["block_number"] == 2
    assert "events" in report["error"] and len(report["tx_id"]) == 64
    assert api.get("/api/ledger/verify", CENTER_AUDITOR, to=1).json()["ok"]
    assert not api.get("/api/ledger/verify", CENTER_AUDITOR,
                       **{"from": 2}).json()["ok"]
