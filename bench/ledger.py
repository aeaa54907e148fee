"""Embedded-ledger benchmark: committed single-command transactions per second with
p50/p99 submit latency, and card-transaction records per second through batches, for
each crypto backend. Prints one JSON object; compare figures as ratios within a run.

    python -m bench.ledger [--seconds 5] [--clients 2] [--window 32]
                           [--backends native,gmssl] [--committers thread,process]

Clients submit asynchronously (``submit_async``), each keeping a window of
transactions in flight, as Fabric Gateway clients do; latency is from the submit
call to the commit.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import secrets
import statistics
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from chaincode.merkle import merkle_root
from ledger import crypto
from ledger.embedded import EmbeddedLedger, EmbeddedNode


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _drive(seconds: float, clients: int, window: int,
           submit: Callable[[int, int], Future[Any]]) -> tuple[int, list[float], float]:
    """Each of ``clients`` threads keeps up to ``window`` transactions in flight
    (``submit(client, i)`` returns the commit future) for ``seconds``; returns
    (committed, latencies from submit to commit in s, elapsed s)."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    def loop(t: int) -> None:
        in_flight: deque[Future[Any]] = deque()
        i = 0
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            future = submit(t, i)

            def committed(_: Future[Any], t0: float = t0) -> None:
                latencies.append(time.perf_counter() - t0)

            future.add_done_callback(committed)
            in_flight.append(future)
            if len(in_flight) >= window:
                in_flight.popleft().result()
            i += 1
        for future in in_flight:
            future.result()

    started = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(t,)) for t in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(latencies), latencies, time.perf_counter() - started


def bench_backend(name: str, committer: str, seconds: float, clients: int,
                  window: int, batch: int, batch_window: int,
                  dsn: str | None) -> dict[str, Any]:
    backend = crypto.get_backend(name)
    with tempfile.TemporaryDirectory() as tmp, \
            EmbeddedNode(Path(tmp), dsn=dsn, backend=backend,
                         committer=committer) as node:
        run = secrets.token_hex(4)
        department = EmbeddedLedger(node, node.wallet.identity("Kunshan", "transport"))
        acquirer = EmbeddedLedger(node, node.wallet.identity("Kunshan", "admin"))

        def register(t: int, i: int) -> Future[Any]:
            return department.submit_async("RegisterIdentifier", {
                "kind": "person", "category": "identity", "scheme": "citizen",
                "natural_key_hash": crypto.sm3_hex(f"{run}-{t}-{i}".encode())})

        height0 = node.height()
        n, lat, elapsed = _drive(seconds, clients, window, register)
        blocks = node.height() - height0

        def batch_args(i: int) -> dict[str, Any]:
            records = [{
                "record_id": f"{run}-{i}-{j}",
                "issuer_city": ("Shanghai", "Taicang")[j % 2],
                "card_id_hash": crypto.sm3_hex(f"card{j}".encode()),
                "amount_fen": 100 + j % 900, "time": "2026-11-20T08:00:00Z",
                "terminal_id": f"T{j % 50}"} for j in range(batch)]
            return {"business_day": "2026-11-20", "records": records,
                    "merkle_root": merkle_root(records)}

        # The acquirer's systems prepare batches (records, Merkle root) before
        # they reach the ledger: that is not ledger work, so it is not timed;
        # signing and submitting are.
        prepared = [batch_args(i) for i in range(int(seconds * 80_000 / batch) + 8)]
        taken = iter(prepared)
        gc.freeze()  # the prepared inputs are not the ledger's garbage to scan

        def report(t: int, i: int) -> Future[Any]:
            return acquirer.submit_async("ReportTransactionBatch", next(taken))

        batches, _, batch_elapsed = _drive(seconds, clients, batch_window, report)
        return {
            "backend": name, "committer": committer,
            "single_command": {
                "committed_tx": n, "seconds": round(elapsed, 3),
                "tx_per_s": round(n / elapsed, 1),
                "p50_ms": round(_percentile(lat, 0.5) * 1000, 2),
                "p99_ms": round(_percentile(lat, 0.99) * 1000, 2),
                "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else 0,
                "blocks": blocks},
            "card_batches": {
                "batches": batches, "records_per_batch": batch,
                "records": batches * batch, "seconds": round(batch_elapsed, 3),
                "records_per_s": round(batches * batch / batch_elapsed, 1)}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=2,
                   help="client threads (default 2, one per core)")
    p.add_argument("--window", type=int, default=32,
                   help="transactions each client keeps in flight (default 32)")
    p.add_argument("--batch", type=int, default=2000, help="records per batch")
    p.add_argument("--batch-window", type=int, default=4,
                   help="batches each client keeps in flight (default 4)")
    p.add_argument("--backends", default=",".join(crypto.available_backends()))
    p.add_argument("--committers", default="thread,process",
                   help="committer placements to measure (default both)")
    p.add_argument("--dsn", default=None,
                   help="an empty PostgreSQL database (default: SQLite)")
    p.add_argument("--ledger", choices=["embedded", "fabric"], default="embedded")
    args = p.parse_args()
    if args.ledger == "fabric":
        raise SystemExit("bench: the Fabric ledger is not available in this build")
    results = [bench_backend(b, c, args.seconds, args.clients, args.window,
                             args.batch, args.batch_window, args.dsn)
               for b in args.backends.split(",") for c in args.committers.split(",")]
    out: dict[str, Any] = {"benchmark": "ledger", "ledger": "embedded",
                           "store": "postgresql" if args.dsn else "sqlite",
                           "cores": os.cpu_count(), "clients": args.clients,
                           "window": args.window,
                           "results": results}
    for committer in args.committers.split(","):
        by = {r["backend"]: r for r in results if r["committer"] == committer}
        if "native" in by and "gmssl" in by:
            for metric, field in (("tx_per_s", "single_command"),
                                  ("records_per_s", "card_batches")):
                out[f"gmssl_over_native_{metric}_{committer}"] = round(
                    by["gmssl"][field][metric] / by["native"][field][metric], 4)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
