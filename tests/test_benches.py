"""The clearing and statistics benchmarks, briefly and with small numbers: each
prints its JSON with every figure, and the figures add up. No timing is
asserted (the numbers are noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import pg_base_dsn

ROOT = Path(__file__).resolve().parents[1]


def _bench(*args: str) -> dict[str, object]:
    run = subprocess.run([sys.executable, "-m", *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out: dict[str, object] = json.loads(run.stdout)
    return out


def test_clearing_bench() -> None:
    out = _bench("bench.clearing", "--records", "3000", "--cities", "6",
                 "--batch", "1000", "--blacklisted", "20")
    assert (out["records"], out["cities"], out["batches"]) == (3000, 6, 3)
    clearing = out["clearing"]
    assert isinstance(clearing, dict)
    assert clearing["records"] == 3000 and clearing["pairs"] == 15  # 3 x 5
    assert clearing["blacklisted_cards"] == 20
    # five of the lost cards rode: their records that day are flagged
    assert 5 <= clearing["flagged_records"] <= 3000 and clearing["center_fee_fen"] > 0


@pytest.mark.postgres
def test_statistics_bench() -> None:
    out = _bench("bench.statistics", "--dsn", pg_base_dsn(), "--records", "20000",
                 "--cities", "8", "--days", "60", "--requests", "3")
    assert out["records"] == 20000 and out["within_target"] in (True, False)
    endpoints = out["endpoints"]
    assert isinstance(endpoints, dict) and len(endpoints) == 16
    assert all(e["p99_ms"] >= e["p50_ms"] > 0 for e in endpoints.values())


def test_qr_bench() -> None:
    out = _bench("bench.qr", "--codes", "20", "--pngs", "2")
    assert out["codes"] == 20
    versions = [out["static_qr_version_m"], out["dynamic_qr_version_m"]]
    assert all(isinstance(v, int) and v <= 10 for v in versions)
    rates = [out[k] for k in ("signed_per_s", "png_per_s", "static_verified_per_s",
                              "dynamic_verified_per_s")]
    assert all(isinstance(r, int | float) and r > 0 for r in rates)


def test_crypto_bench() -> None:
    from ledger import crypto

    names = crypto.available_backends()
    out = _bench("bench.crypto", "--seconds", "0.06", "--rounds", "2")
    backends = out["backends"]
    assert isinstance(backends, dict) and sorted(backends) == sorted(names)
    assert all(r["sign_per_s"] > 0 and r["verify_per_s"] > 0
               for r in backends.values())
    ratios = out["ratios"]
    assert isinstance(ratios, dict) and set(ratios) == set(names)
    assert ratios[out["ratio_to"]] == {"sign_per_s": 1.0, "verify_per_s": 1.0}
