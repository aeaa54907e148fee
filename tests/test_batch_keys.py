"""ReportTransactionBatch's state calls and write sets, as a Fabric 2.5 peer sees
them: every GetState/PutState is one round trip there (no GET_STATE_MULTIPLE or
WRITE_BATCH_STATE before 3.1), so a batch must touch few keys, and no key it
rewrites may grow with the day. The reported record ids live in bucketed,
chunked keys (see the comment above ``RECORD_BUCKETS`` in chaincode/cards.py);
these tests count the calls, check the bounds, and check that duplicate
detection, confirm/dispute and determinism are as they were.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from helpers import DAY, batch_args, card_record

from chaincode import cards
from chaincode.errors import Conflict
from ledger.embedded import EmbeddedLedger, EmbeddedNode, EmbeddedStub, endorse

PAGE = 100  # results per QUERY_STATE_NEXT page of a Fabric peer
MAX_ID_BYTES = 64  # the record_id pattern's longest id
ISSUERS = ("Shanghai", "Taicang")  # for the acquirer Kunshan


class CountingStub(EmbeddedStub):
    """The embedded stub, counting round trips as the Fabric 2.5 shim makes them:
    one per GetState/PutState/DelState, one per key of GetMultipleStates, one per
    page of a range query (and a QUERY_STATE_CLOSE for one left early)."""

    made: ClassVar[list[CountingStub]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0
        CountingStub.made.append(self)

    def get_state(self, key: str) -> bytes | None:
        self.calls += 1
        return super().get_state(key)

    def get_multiple_states(self, keys: list[str]) -> list[bytes | None]:
        return [self.get_state(k) for k in keys]  # the 2.5 shim's fallback

    def put_state(self, key: str, value: bytes) -> None:
        self.calls += 1
        super().put_state(key, value)

    def del_state(self, key: str) -> None:
        self.calls += 1
        super().del_state(key)

    def get_state_by_range(self, start: str, end: str) -> Iterator[tuple[str, bytes]]:
        rows = list(super().get_state_by_range(start, end))
        pages = 1
        self.calls += 1
        try:
            for n, row in enumerate(rows):
                if n == pages * PAGE:
                    pages += 1
                    self.calls += 1
                yield row
        finally:
            if len(rows) > pages * PAGE:
                self.calls += 1


class Ids:
    """``ids(org, user)``: that identity's client of one embedded node."""

    def __init__(self, node: EmbeddedNode) -> None:
        self.node = node
        self._cache: dict[tuple[str, str], EmbeddedLedger] = {}

    def __call__(self, org: str, user: str = "admin") -> EmbeddedLedger:
        if (org, user) not in self._cache:
            self._cache[org, user] = EmbeddedLedger(
                self.node, self.node.wallet.identity(org, user))
        return self._cache[org, user]


@pytest.fixture
def ids(tmp_path: Path) -> Iterator[Ids]:
    """Ids of a fresh embedded ledger of this test's own."""
    node = EmbeddedNode(tmp_path / "ledger")
    try:
        yield Ids(node)
    finally:
        node.close()


def snapshot(node: EmbeddedNode) -> tuple[int, list[tuple[str, str, int, int]]]:
    return node.height(), list(node.store.all_state())


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[CountingStub]:
    """Every stub the node endorses with from now on, in order."""
    monkeypatch.setattr(endorse, "EmbeddedStub", CountingStub)
    made: list[CountingStub] = []
    monkeypatch.setattr(CountingStub, "made", made)
    return made


def records(prefix: str, n: int, time: str = "2026-11-20T08:00:00Z"
            ) -> list[dict[str, Any]]:
    return [card_record(f"{prefix}{i:06d}", ISSUERS[i % 2], 100 + i % 7, time=time)
            for i in range(n)]


def index_writes(stub: EmbeddedStub) -> list[tuple[str, str | None]]:
    return [(k, v) for k, v in stub.writes.items() if k.startswith("recs~")]


def report(ids: Ids, recs: list[dict[str, Any]], business_day: str = DAY,
           city: str = "Kunshan") -> str:
    receipt = ids(city).submit("ReportTransactionBatch", batch_args(recs, business_day))
    assert receipt.status == "VALID"
    return str(receipt.result["id"])


def refused(ids: Ids, recs: list[dict[str, Any]], field: str,
            business_day: str = DAY) -> None:
    before = snapshot(ids.node)
    with pytest.raises(Conflict) as info:
        ids("Kunshan").submit("ReportTransactionBatch", batch_args(recs, business_day))
    assert info.value.field == field
    assert "already reported" in info.value.message
    assert snapshot(ids.node) == before


# ------------------------------------------------------------------ the bounds
# A batch of n records on one record day costs, on Fabric 2.5:
#   <= RECORD_BUCKETS puts of open chunks + ceil(n / CHUNK_IDS) puts of new chunks
#   + one range query over the touched buckets, one call per 100 chunks stored
#     that day ((RECORD_BUCKETS + ids that day / CHUNK_IDS) / 100 pages)
#   + 1 range probe for the first design's keys
#   + 5 for the batch itself (clearing-run head, batch head, event, head, day key).
# For 10,000 records that is at most 128 + 40 + 2 + 1 + 5 = 176 on a fresh day
# (135 measured) and 216 for the 100th such batch of a day, 1 M ids (207 measured,
# bench/batch_keys.py); 600 is reached only past ~11 M ids by one acquirer on one
# day, 2.5 times the planned 10x peak of all cities together (4.5 M).
BOUND_10K = 600


def test_a_10000_record_batch_makes_a_few_hundred_calls(
        ids: Ids, counted: list[CountingStub]) -> None:
    n = 10_000
    for b in range(3):  # the third finds 20,000 ids of the day already stored
        report(ids, records(f"k{b}-", n))
        stub = counted[-1]
        stored_chunks = sum(k.startswith("recs~") for k, _, _, _
                            in ids.node.store.all_state())
        expected = (cards.RECORD_BUCKETS + math.ceil(n / cards.CHUNK_IDS)
                    + 1 + stored_chunks // PAGE + 1 + 5)
        assert stub.calls <= expected, (b, stub.calls, expected)
        assert stub.calls <= BOUND_10K
        assert stub.calls < n / 25  # the first design: 2 calls per record


def test_the_write_set_stays_bounded_as_the_day_fills(
        ids: Ids, counted: list[CountingStub],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Small buckets and chunks, so that chunks fill and new ones open within a
    # few batches: a batch rewrites at most one open chunk per touched bucket,
    # full chunks are never written again, and no value exceeds CHUNK_IDS ids.
    monkeypatch.setattr(cards, "RECORD_BUCKETS", 4)
    monkeypatch.setattr(cards, "CHUNK_IDS", 16)
    written: dict[str, list[int]] = {}  # chunk key -> batches that wrote it
    for b in range(12):
        recs = records(f"w{b}-", 40)
        report(ids, recs)
        writes = index_writes(counted[-1])
        new_ids = sum(len(r["record_id"]) + 1 for r in recs)
        rewrite = cards.RECORD_BUCKETS * cards.CHUNK_IDS * (MAX_ID_BYTES + 1)
        assert sum(len(k) + len(v or "") for k, v in writes) <= (
            new_ids + rewrite + len(writes) * 64)
        for key, value in writes:
            assert value is not None
            assert len(value.split(",")) <= cards.CHUNK_IDS
            written.setdefault(key, []).append(b)
    state = {k: v for k, v, _, _ in ids.node.store.all_state()
             if k.startswith("recs~")}
    assert sum(len(v.split(",")) for v in state.values()) == 12 * 40
    for key, batches in written.items():
        # a chunk is written by consecutive batches only: once a later chunk of
        # its bucket is open, it is full and stays as it is
        assert batches == list(range(batches[0], batches[0] + len(batches))), key
    chains: dict[str, list[str]] = {}
    for key in sorted(state):
        chains.setdefault(key.rsplit("~", 1)[0], []).append(key)
    assert any(len(chain) > 2 for chain in chains.values())
    for chain in chains.values():
        assert all(len(state[k].split(",")) == cards.CHUNK_IDS
                   for k in chain[:-1])
    # every id is still found, in whichever chunk it ended up
    refused(ids, [*records("x-", 3), records("w0-", 40)[17]], "records.3.record_id")
    refused(ids, records("w11-", 40)[39:], "records.0.record_id")


# ------------------------------------------------------- duplicate detection
def test_duplicates_across_batches_are_refused_at_the_first_one(
        ids: Ids) -> None:
    first = records("d-", 2_000)
    report(ids, first)
    again = [*records("n-", 5), first[1_500], records("m-", 1)[0], first[7]]
    refused(ids, again, "records.5.record_id")
    refused(ids, [*records("n-", 1), first[7], first[1_500]], "records.1.record_id")
    # under another business day, by another role: still the same record
    before = snapshot(ids.node)
    with pytest.raises(Conflict) as info:
        ids("Kunshan", "terminal").submit("ReportTransactionBatch", batch_args(
            [first[3]], "2026-11-21"))
    assert (info.value.field, info.value.message) == (
        "records.0.record_id", f"record {first[3]['record_id']!r} was already "
        "reported")
    assert snapshot(ids.node) == before
    # the refused batches left their new ids free
    report(ids, records("n-", 5))


def test_record_ids_are_unique_per_acquirer_and_record_day(
        ids: Ids, counted: list[CountingStub]) -> None:
    late = card_record("r1", "Shanghai", time="2026-11-20T23:59:59Z")
    early = card_record("r2", "Shanghai", time="2026-11-21T00:00:00Z")
    report(ids, [late, early])
    days = sorted({k.split("~")[2] for k, _ in index_writes(counted[-1])})
    assert days == ["2026-11-20", "2026-11-21"]
    refused(ids, [card_record("r2", "Taicang", time="2026-11-21T13:00:00Z")],
            "records.0.record_id")
    # the record day is the record's own: its id may recur on another day, and
    # other acquirers keep ids of their own
    report(ids, [card_record("r1", "Shanghai", time="2026-11-22T10:00:00Z")],
           "2026-11-22")
    report(ids, [card_record("r1", "Kunshan", time="2026-11-20T23:59:59Z")],
           city="Taicang")


class DictStub:
    """Just enough of a Stub for the index helper: committed state in a dict."""

    def __init__(self, state: dict[str, bytes]) -> None:
        self.state = state

    def get_state_by_range(self, start: str, end: str) -> Iterator[tuple[str, bytes]]:
        for key in sorted(self.state):
            if start <= key < end:
                yield key, self.state[key]

    def get_multiple_states(self, keys: list[str]) -> list[bytes | None]:
        return [self.state.get(k) for k in keys]


def test_ids_recorded_by_the_first_design_are_still_refused() -> None:
    recs = records("o-", 3)
    stub: Any = DictStub({f"rec~Kunshan~{recs[2]['record_id']}": b"batch",
                          f"rec~Kunshan~{recs[1]['record_id']}": b"batch",
                          "rec~Taicang~o-000000": b"batch"})
    with pytest.raises(Conflict) as info:
        cards._index_record_ids(stub, "Kunshan", recs)
    assert info.value.field == "records.1.record_id"
    assert cards._index_record_ids(stub, "Taicang", recs[1:])


# ----------------------------------------------------- confirm and dispute
def test_confirm_and_dispute_per_record_in_a_large_batch(ids: Ids) -> None:
    recs = records("c-", 1_000)
    batch = report(ids, recs)
    shanghai = [r["record_id"] for r in recs if r["issuer_city"] == "Shanghai"]
    disputed = ids("Shanghai").submit("DisputeTransactions", {
        "batch_id": batch, "record_ids": shanghai[3:5], "reason": "double charge"})
    assert disputed.result == {"id": batch, "disputed": 2}
    confirmed = ids("Shanghai").submit("ConfirmTransactions", {"batch_id": batch})
    assert confirmed.result == {"id": batch, "confirmed": len(shanghai) - 2}
    taicang = [r["record_id"] for r in recs if r["issuer_city"] == "Taicang"]
    assert ids("Taicang").submit("ConfirmTransactions", {
        "batch_id": batch, "record_ids": taicang[:10]}).result["confirmed"] == 10
    status = ids("Kunshan", "auditor").evaluate("GetBatch", {"id": batch})["status"]
    assert [status[r] for r in shanghai[2:6]] == [
        "confirmed", "disputed", "disputed", "confirmed"]
    assert status[taicang[9]] == "confirmed" and status[taicang[10]] == "reported"
    with pytest.raises(Conflict):
        ids("Shanghai").submit("ConfirmTransactions", {
            "batch_id": batch, "record_ids": shanghai[3:4]})
    cleared = ids("Center").submit("RunClearing", {"business_day": DAY}).result
    assert (cleared["records"], cleared["excluded_disputed"]) == (998, 2)


# ------------------------------------------------------------- determinism
def test_the_index_writes_do_not_depend_on_the_records_order(ids: Ids) -> None:
    report(ids, records("p-", 3_000))  # so that open chunks get rewritten
    recs = records("q-", 2_000)
    out = []
    for ordered in (recs, recs[::-1], sorted(recs, key=lambda r: r["card_id_hash"])):
        proposal, signature = ids("Kunshan")._proposal("ReportTransactionBatch",
                                                       batch_args(ordered))
        stub, _ = ids.node.simulate(proposal, signature, None)
        out.append(stub)
    first = index_writes(out[0])
    assert first and any(k.endswith("~0000") for k, _ in first)
    for stub in out[1:]:
        assert index_writes(stub) == first  # keys, values and their order
        # the rest differs only by the batch id (it derives from the Merkle root,
        # which depends on the order) and the event's record order
        assert len(stub.writes) == len(out[0].writes)


def test_the_same_proposal_endorses_identically(ids: Ids,
                                                tmp_path: Path) -> None:
    report(ids, records("s-", 1_000))
    proposal, signature = ids("Kunshan")._proposal(
        "ReportTransactionBatch", batch_args(records("t-", 1_000)))
    other = EmbeddedNode(ids.node.data_dir, read_only=True)
    try:
        mine, _ = ids.node.simulate(proposal, signature, None)
        theirs, _ = other.simulate(proposal, signature, None)
    finally:
        other.close()
    assert list(mine.writes.items()) == list(theirs.writes.items())
    assert mine.reads == theirs.reads and mine.ranges == theirs.ranges
