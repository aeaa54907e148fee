"""``python -m bench.ledger --ledgers fabric`` against the session's network, briefly
and with small numbers: the JSON has every figure, everything submitted committed
VALID, and the counts add up. No timing is asserted (the numbers are noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from network import fabric_config
from network.launcher import Network

pytestmark = pytest.mark.fabric

ROOT = Path(__file__).resolve().parents[2]
KINDS = {"peer", "orderer", "chaincode", "ca", "client"}


def test_fabric_bench_reports_every_figure(fabric_network: Network) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.ledger", "--ledgers", "fabric",
         "--network", str(fabric_network.layout.root), "--seconds", "1",
         "--in-flight", "10", "--latency-in-flight", "5", "--fabric-batch", "50",
         "--fabric-batches", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["ledgers"] == ["fabric"] and "results" not in out
    fabric = out["fabric"]

    assert fabric["nodes"] == {"peer": 4, "orderer": 3, "chaincode": 1, "ca": 4}
    assert fabric["orderer_batch"] == {
        "batch_timeout": fabric_config.BATCH_TIMEOUT,
        "max_message_count": fabric_config.MAX_MESSAGE_COUNT,
        "preferred_max_bytes": fabric_config.PREFERRED_MAX_BYTES,
        "absolute_max_bytes": fabric_config.ABSOLUTE_MAX_BYTES}
    assert fabric["endorsements_per_tx"] == 2  # a majority of the 3 cities
    assert set(fabric["idle_cores"]) == KINDS

    phases = [*fabric["single_command"], fabric["latency"]]
    assert [p["in_flight"] for p in phases] == [10, 5]
    for phase in phases:
        assert phase["failed"] == 0, phase.get("errors")
        assert phase["committed_tx"] == phase["submitted_tx"] > 0
        assert phase["blocks"] >= 1
        assert phase["tx_per_s"] > 0 and 0 < phase["p50_ms"] <= phase["p99_ms"]
        assert set(phase["cpu_s"]) == set(phase["cpu_ms_per_tx"]) == KINDS
        assert phase["cpu_s"]["peer"] > 0 and phase["cpu_s"]["chaincode"] > 0
    assert fabric["chaincode_ms_per_endorsement"] > 0

    batches = fabric["card_batches"]
    assert batches["failed"] == 0, batches.get("errors")
    assert batches["batches"] == batches["submitted"] == batches["acquirers"] == 3
    assert batches["records"] == 3 * batches["records_per_batch"] == 150
    assert batches["records_per_s"] > 0 and batches["endorse_s_mean"] > 0
    assert set(batches["cpu_ms_per_record"]) == KINDS

    assert set(fabric["targets"]) == {"tx_per_s", "p50_ms", "records_per_s",
                                      "chaincode_ms_per_endorsement"}
    for target in fabric["targets"].values():
        assert isinstance(target["met"], bool) and target["measured"] is not None
