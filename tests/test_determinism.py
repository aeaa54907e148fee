"""Every endorser must compute the same transaction: the same proposal simulated
twice (here, and in other processes with other hash seeds) yields identical
write sets and event bytes. And clearing nets out: for random batches and
disputes the positions sum to zero and equal an independent computation."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import CENTER, CITIES, VALID, Clients, World, batch_args, build_world
from helpers import card_record as record
from hypothesis import given, settings
from hypothesis import strategies as st

from chaincode.contract import CardRecord, card_leaf
from chaincode.encoding import canonical_json
from ledger.connect import EmbeddedConnection
from ledger.embedded import EmbeddedNode

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    node = EmbeddedNode(tmp_path_factory.mktemp("determinism") / "ledger")
    try:
        yield build_world(Clients(EmbeddedConnection(node)))
    finally:
        node.close()


def _proposals(w: World) -> list[tuple[str, dict[str, Any], bytes]]:
    """One signed proposal per command, each valid against ``w``."""
    out = []
    for function, (caller, make) in sorted(VALID.items()):
        proposal, signature = w.ids(*caller)._proposal(function, make(w))
        out.append((function, proposal, signature))
    return out


@pytest.mark.parametrize("function", sorted(VALID))
def test_same_proposal_simulated_twice(shared: World, function: str) -> None:
    caller, make = VALID[function]
    proposal, signature = shared.ids(*caller)._proposal(function, make(shared))
    first, response1 = shared.node.simulate(proposal, signature, None)
    second, response2 = shared.node.simulate(proposal, signature, None)
    assert first.writes, f"{function} wrote nothing: the comparison would be empty"
    assert first.event is not None and first.event[0] == "cityunion"
    assert list(first.writes.items()) == list(second.writes.items())
    assert first.event == second.event  # the payload bytes, exactly
    assert first.reads == second.reads
    assert response1 == response2


def test_other_processes_endorse_identically(shared: World, tmp_path: Path) -> None:
    proposals = _proposals(shared)
    here = []
    for _, proposal, signature in proposals:
        stub, response = shared.node.simulate(proposal, signature, None)
        assert stub.event is not None
        here.append({"writes": [list(w) for w in stub.writes.items()],
                     "event": [stub.event[0], stub.event[1].hex()],
                     "response": response.hex()})
    file = tmp_path / "proposals.json"
    file.write_text(json.dumps([{"proposal": p, "signature": s.hex()}
                                for _, p, s in proposals]))
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed,
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
                   "PYTHONPATH", "")])}
        done = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "simulate_child.py"),
             str(shared.node.data_dir), str(file)],
            capture_output=True, text=True, env=env, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        there = json.loads(done.stdout)
        for (function, _, _), mine, theirs in zip(proposals, here, there,
                                                  strict=True):
            assert mine == theirs, f"{function} differs under PYTHONHASHSEED={seed}"


# ------------------------------------------------------------------ clearing
@pytest.fixture(scope="module")
def clearing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clients]:
    node = EmbeddedNode(tmp_path_factory.mktemp("clearing") / "ledger")
    try:
        yield Clients(EmbeddedConnection(node))
    finally:
        node.close()


_examples = itertools.count()
# (issuer offset from the acquirer, amount in fen, disputed?)
records_st = st.lists(st.tuples(st.integers(1, len(CITIES) - 1),
                                st.integers(1, 100_000_000), st.booleans()),
                      min_size=1, max_size=6)
batches_st = st.lists(st.tuples(st.sampled_from(CITIES), records_st), max_size=4)


@settings(max_examples=40, deadline=None)
@given(batches=batches_st)
def test_clearing_positions_net_to_zero(clearing: Clients,
                                        batches: list[tuple[str, list[Any]]]) -> None:
    n = next(_examples)
    day = (date(2030, 1, 1) + timedelta(days=n)).isoformat()  # a fresh day each
    expected = dict.fromkeys(CITIES, 0)
    counted = excluded = gross = 0
    for b, (acquirer, rows) in enumerate(batches):
        records: list[dict[str, Any]] = []
        disputed: dict[str, list[str]] = {}
        for i, (offset, amount, is_disputed) in enumerate(rows):
            issuer = CITIES[(CITIES.index(acquirer) + offset) % len(CITIES)]
            rec = record(f"e{n}-{b}-{i}", issuer, amount)
            records.append(rec)
            if is_disputed:
                disputed.setdefault(issuer, []).append(rec["record_id"])
                excluded += 1
            else:
                expected[acquirer] += amount
                expected[issuer] -= amount
                counted += 1
                gross += amount
        batch = clearing(acquirer, "terminal").submit(
            "ReportTransactionBatch", batch_args(records, day)).result["id"]
        for issuer, record_ids in sorted(disputed.items()):
            clearing(issuer).submit("DisputeTransactions", {
                "batch_id": batch, "record_ids": record_ids, "reason": "disputed"})
    result = clearing(CENTER).submit("RunClearing", {"business_day": day}).result
    assert sum(result["positions"].values()) == 0
    assert result["positions"] == expected
    assert (result["records"], result["excluded_disputed"], result["gross_fen"]) \
        == (counted, excluded, gross)


@settings(max_examples=200, deadline=None)
@given(st.builds(
    dict,
    record_id=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z"),
    issuer_city=st.sampled_from(["Shanghai", "Kunshan", "Taicang"]),
    card_id_hash=st.from_regex(r"\A[0-9a-f]{64}\Z"),
    amount_fen=st.integers(1, 100_000_000),
    time=st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)).map(
        lambda d: d.strftime("%Y-%m-%dT%H:%M:%S")
        + ("" if d.microsecond % 2 else f".{d.microsecond:06d}") + "Z"),
    terminal_id=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")))
def test_the_fast_card_leaf_is_the_canonical_json(record: dict[str, Any]) -> None:
    """The contract writes card records' Merkle leaves out by hand; clients use
    canonical JSON. They must be the same bytes for every valid record."""
    CardRecord.model_validate_json(json.dumps(record))  # it is a valid record
    assert card_leaf(record) == canonical_json(record)
