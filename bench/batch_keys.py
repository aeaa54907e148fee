"""Batch-report benchmark: state calls and write-set bytes of ReportTransactionBatch
as a Fabric 2.5 peer would see them. Prints one JSON object.

    python -m bench.batch_keys [--sizes 100,1000,10000] [--peak-batches 100]
                               [--peak-size 10000]

The real contract (``chaincode.contract.invoke``) runs on an in-memory world state
whose stub counts round trips as the 2.5 shim makes them: one per GetState,
PutState and DelState, one per key of GetMultipleStates (2.5 has no
GET_STATE_MULTIPLE), and one per page of 100 results of a range query (plus
QUERY_STATE_CLOSE for one left early). Measured:
- fresh: one batch of each size on an empty ledger, records on one day;
- two_days: the largest size with its records split over two record days;
- peak_day: the last of ``--peak-batches`` batches of ``--peak-size`` records that
  one acquirer reports for one record day (100 x 10,000 = 1 M ids: the planned
  10x peak day of 4.5 M national records with one city acquiring a fifth of it
  is ~0.9 M); ``first`` is the first batch of that day, for comparison.
``calls`` counts round trips by kind and key prefix (``recs~`` is the record-id
index, ``rec~`` the first design's keys, probed once; ``a~``/``e~`` the batch
aggregate, ``day~`` the business day's list). ``endorse_ms`` is the contract's own
time in this process (no network). The first design made 2 calls per record on
top of the aggregate's: 20,004+ for 10,000 records.
"""

from __future__ import annotations

import argparse
import bisect
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from chaincode import cards, contract
from chaincode.merkle import merkle_root
from chaincode.stub import Creator, KeyModification

PAGE = 100  # results per QUERY_STATE_NEXT page of a Fabric peer (maxResultLimit)
INDEX_PREFIX = "recs~"


class MemoryLedger:
    """Committed world state: a dict and its sorted keys."""

    def __init__(self) -> None:
        self.state: dict[str, bytes] = {}
        self.keys: list[str] = []

    def apply(self, writes: dict[str, bytes | None]) -> None:
        for key, value in writes.items():
            if value is None:
                if self.state.pop(key, None) is not None:
                    self.keys.pop(bisect.bisect_left(self.keys, key))
            else:
                if key not in self.state:
                    bisect.insort(self.keys, key)
                self.state[key] = value


class CountingStub:
    """A ``Stub`` over a MemoryLedger that counts Fabric 2.5 round trips."""

    def __init__(self, ledger: MemoryLedger, creator: Creator, function: str,
                 args: dict[str, Any], tx: int) -> None:
        self.ledger = ledger
        self.creator = creator
        self.args = [function.encode(), json.dumps(args).encode()]
        self.tx = tx
        self.writes: dict[str, bytes | None] = {}
        self.calls: dict[str, int] = {}
        self.read_bytes = 0
        self.event: tuple[str, bytes] | None = None

    def _count(self, kind: str) -> None:
        self.calls[kind] = self.calls.get(kind, 0) + 1

    def get_args(self) -> list[bytes]:
        return list(self.args)

    def get_state(self, key: str) -> bytes | None:
        self._count(f"get {key.split('~', 1)[0]}~")
        value = self.ledger.state.get(key)
        self.read_bytes += len(value or b"")
        return value

    def get_multiple_states(self, keys: list[str]) -> list[bytes | None]:
        return [self.get_state(k) for k in keys]  # what the 2.5 shim does

    def put_state(self, key: str, value: bytes) -> None:
        self._count(f"put {key.split('~', 1)[0]}~")
        self.writes[key] = bytes(value)

    def del_state(self, key: str) -> None:
        self._count(f"del {key.split('~', 1)[0]}~")
        self.writes[key] = None

    def get_state_by_range(self, start: str, end: str) -> Iterator[tuple[str, bytes]]:
        keys = self.ledger.keys
        found = keys[bisect.bisect_left(keys, start):bisect.bisect_left(keys, end)]
        kind = f"range {start.split('~', 1)[0]}~"
        pages = 1
        self._count(kind)
        try:
            for n, key in enumerate(found):
                if n == pages * PAGE:
                    pages += 1
                    self._count(kind)  # QUERY_STATE_NEXT
                value = self.ledger.state[key]
                self.read_bytes += len(value)
                yield key, value
        finally:
            if len(found) > pages * PAGE:
                self._count(kind)  # QUERY_STATE_CLOSE: left with pages on the peer

    def get_history_for_key(self, key: str) -> Iterator[KeyModification]:
        raise NotImplementedError

    def get_creator(self) -> Creator:
        return self.creator

    def get_tx_id(self) -> str:
        return f"{self.tx:064x}"

    def get_tx_timestamp(self) -> datetime:
        return datetime(2026, 11, 20, 12, 0, self.tx % 60, tzinfo=UTC)

    def get_transient(self) -> dict[str, bytes]:
        return {}

    def set_event(self, name: str, payload: bytes) -> None:
        self.event = (name, payload)

    # --- figures
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def write_bytes(self, prefix: str = "") -> int:
        return sum(len(k) + len(v or b"") for k, v in self.writes.items()
                   if k.startswith(prefix))


def creator(city: str, role: str = "city_admin") -> Creator:
    """An embedded-style certificate: the contract reads only the subject."""
    cert = json.dumps({"subject": {"name": f"{city}-{role}", "role": role}})
    return Creator(f"{city}MSP", cert.encode())


class Reporter:
    """Reports batches for one acquirer on a MemoryLedger, committing each."""

    def __init__(self, ledger: MemoryLedger, acquirer: str = "Kunshan") -> None:
        self.ledger = ledger
        self.acquirer = acquirer
        self.issuers = [c for c in ("Shanghai", "Taicang") if c != acquirer]
        self.tx = 0
        self.seq = 0

    def records(self, n: int, days: tuple[str, ...]) -> list[dict[str, Any]]:
        out = []
        for i in range(n):
            self.seq += 1
            day = days[i * len(days) // n]
            sec = self.seq % 86_400
            out.append({
                "record_id": f"KS{self.seq:012d}-T{self.seq % 5000:04d}",
                "issuer_city": self.issuers[i % len(self.issuers)],
                "card_id_hash": f"{self.seq:064x}", "amount_fen": 100 + i % 900,
                "time": f"{day}T{sec // 3600:02d}:{sec // 60 % 60:02d}:"
                        f"{sec % 60:02d}Z",
                "terminal_id": f"T{self.seq % 5000:04d}"})
        return out

    def report(self, records: list[dict[str, Any]],
               business_day: str = "2026-11-20") -> dict[str, Any]:
        self.tx += 1
        args = {"business_day": business_day, "records": records,
                "merkle_root": merkle_root(records)}
        stub = CountingStub(self.ledger, creator(self.acquirer),
                            "ReportTransactionBatch", args, self.tx)
        t0 = time.perf_counter()
        contract.invoke(stub)
        elapsed = time.perf_counter() - t0
        self.ledger.apply(stub.writes)
        return {"records": len(records), "state_calls": stub.total_calls(),
                "calls": dict(sorted(stub.calls.items())),
                "write_keys": len(stub.writes),
                "write_set_bytes": stub.write_bytes(),
                "index_write_keys": sum(k.startswith(INDEX_PREFIX)
                                        for k in stub.writes),
                "index_write_bytes": stub.write_bytes(INDEX_PREFIX),
                "read_bytes": stub.read_bytes,
                "endorse_ms": round(elapsed * 1000, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--sizes", default="100,1000,10000")
    p.add_argument("--peak-batches", type=int, default=100)
    p.add_argument("--peak-size", type=int, default=10_000)
    a = p.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    out: dict[str, Any] = {
        "design": {"buckets": cards.RECORD_BUCKETS,
                   "chunk_ids": cards.CHUNK_IDS, "page": PAGE}}
    out["fresh"] = {}
    for n in sizes:
        reporter = Reporter(MemoryLedger())
        out["fresh"][str(n)] = reporter.report(reporter.records(n, ("2026-11-20",)))
    reporter = Reporter(MemoryLedger())
    out["two_days"] = reporter.report(reporter.records(
        max(sizes), ("2026-11-19", "2026-11-20")))

    reporter = Reporter(MemoryLedger())
    t0 = time.perf_counter()
    first = last = reporter.report(reporter.records(a.peak_size, ("2026-11-20",)))
    for _ in range(a.peak_batches - 1):
        last = reporter.report(reporter.records(a.peak_size, ("2026-11-20",)))
    index_keys = [k for k in reporter.ledger.keys if k.startswith(INDEX_PREFIX)]
    out["peak_day"] = {
        "batches": a.peak_batches, "batch_size": a.peak_size,
        "ids_that_day": a.peak_batches * a.peak_size,
        "index_keys_that_day": len(index_keys),
        "largest_index_value_bytes": max(len(reporter.ledger.state[k])
                                         for k in index_keys),
        "first": first, "last": last,
        "simulated_in_s": round(time.perf_counter() - t0, 1)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
