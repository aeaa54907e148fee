"""Ledger benchmark: committed single-command transactions per second with
p50/p99 submit-to-commit latency, and card-transaction records per second through
batches, on the embedded ledger (per crypto backend and committer placement) and on
a real Fabric 2.5 network. Prints one JSON object; compare figures as ratios
within a run.

    python -m bench.ledger [--seconds 5] [--clients 2] [--window 32]
                           [--backends native,gmssl] [--committers thread,process]
                           [--ledgers embedded,fabric] [--network DIR]
                           [--base-port 27000]

Clients submit asynchronously (``submit_async``), each keeping a window of
transactions in flight, as Fabric Gateway clients do; latency is from the submit
call to the commit. The embedded figures stay at the top level of the JSON (as
before); ``fabric`` holds the Fabric figures: committed tx/s at 200 and 400 in
flight, latency at 50 in flight, 10,000-record batches from one acquirer per city,
CPU seconds per committed transaction of each process kind (from
``/proc/<pid>/stat`` of the network's nodes, and this process for the client), the
chaincode's CPU per endorsement and the orderer batch settings in effect. Without
``--network`` the benchmark starts its own network in a temporary directory on
``--base-port`` and stops it afterwards.
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
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaincode.merkle import merkle_root
from ledger import crypto
from ledger.embedded import EmbeddedLedger, EmbeddedNode

if TYPE_CHECKING:
    from network.launcher import Network

# The Fabric targets on a 2-core machine with the full consortium.
TARGETS = {"tx_per_s": 200.0, "p50_ms": 500.0, "records_per_s": 10_000.0,
           "chaincode_ms_per_endorsement": 0.4}
PROCESS_KINDS = ("peer", "orderer", "chaincode", "ca")


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank; 0.0 for none)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@dataclass
class Driven:
    """What ``_drive`` saw: submissions, committed transactions and their
    submit-to-commit latencies, failures (first few kept), a committed block,
    the elapsed time."""

    submitted: int = 0
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    block: int | None = None
    elapsed: float = 0.0

    @property
    def committed(self) -> int:
        return len(self.latencies)

    def failure(self, e: BaseException) -> None:
        self.failed += 1
        if len(self.errors) < 3:
            self.errors.append(f"{type(e).__name__}: {e}"[:300])


def _drive(seconds: float, clients: int, window: int,
           submit: Callable[[int, int], Future[Any]],
           limit: int | None = None) -> Driven:
    """Each of ``clients`` threads keeps up to ``window`` transactions in flight
    (``submit(client, i)`` returns the commit future) for ``seconds``, or until it
    has submitted ``limit``; a failed submit ends its thread."""
    out = Driven()
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def loop(t: int) -> None:
        in_flight: deque[Future[Any]] = deque()
        i = 0
        while time.perf_counter() < stop and (limit is None or i < limit):
            t0 = time.perf_counter()
            with lock:
                out.submitted += 1
            try:
                future = submit(t, i)
            except Exception as e:
                with lock:
                    out.failure(e)
                break

            def committed(done: Future[Any], t0: float = t0) -> None:
                took, error = time.perf_counter() - t0, done.exception()
                with lock:
                    if error is not None:
                        out.failure(error)
                    else:
                        out.latencies.append(took)
                        out.block = getattr(done.result(), "block_number", None)

            future.add_done_callback(committed)
            in_flight.append(future)
            if len(in_flight) >= window:
                in_flight.popleft().exception()
            i += 1
        for future in in_flight:
            future.exception()

    started = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(t,)) for t in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.elapsed = time.perf_counter() - started
    return out


def _single_figures(d: Driven) -> dict[str, Any]:
    lat = d.latencies
    return {"submitted_tx": d.submitted, "committed_tx": d.committed,
            "failed": d.failed,
            "seconds": round(d.elapsed, 3),
            "tx_per_s": round(d.committed / d.elapsed, 1) if d.elapsed else 0.0,
            "p50_ms": round(percentile(lat, 0.5) * 1000, 2),
            "p99_ms": round(percentile(lat, 0.99) * 1000, 2),
            "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else 0,
            **({"errors": d.errors} if d.errors else {})}


def register_department(admin: Any, code: str) -> None:
    """Register ``code`` in the admin's city unless an earlier run did: a
    department user acts only for a department registered on chain."""
    from chaincode.errors import Conflict

    with suppress(Conflict):
        admin.submit("RegisterDepartment", {"code": code, "name": code.title(),
                                            "duties": [code]})


def register_args(tag: str, t: int, i: int) -> dict[str, Any]:
    """RegisterIdentifier of a fresh person (``tag`` keeps runs apart)."""
    return {"kind": "person", "category": "identity", "scheme": "citizen",
            "natural_key_hash": crypto.sm3_hex(f"{tag}-{t}-{i}".encode())}


def batch_args(tag: str, size: int, issuers: tuple[str, ...],
               day: str = "2026-11-20") -> dict[str, Any]:
    """A ReportTransactionBatch of ``size`` records with unique ids (``tag``),
    issued by ``issuers`` in turn, on ``day``, with its Merkle root."""
    records = [{
        "record_id": f"{tag}-{j}",
        "issuer_city": issuers[j % len(issuers)],
        "card_id_hash": crypto.sm3_hex(f"card{j}".encode()),
        "amount_fen": 100 + j % 900, "time": f"{day}T08:00:00Z",
        "terminal_id": f"T{j % 50}"} for j in range(size)]
    return {"business_day": day, "records": records,
            "merkle_root": merkle_root(records)}


def prepare_batches(cities: tuple[str, ...], tag: str, batch: int,
                    per_acquirer: int, day: str = "2026-11-20"
                    ) -> dict[str, list[dict[str, Any]]]:
    """``per_acquirer`` batches of ``batch`` records for each city as acquirer,
    the records issued by the other cities. An acquirer's systems prepare
    batches (records, Merkle root) before they reach the ledger: that is not
    ledger work, so it is neither timed nor metered; signing and submitting
    are."""
    prepared = {city: [batch_args(f"{tag}-{city}-{i}", batch,
                                  tuple(c for c in cities if c != city), day)
                       for i in range(per_acquirer)] for city in cities}
    gc.freeze()  # the prepared inputs are not the ledger's garbage to scan
    return prepared


def report_batches(acquirers: dict[str, Any],
                   prepared: dict[str, list[dict[str, Any]]], seconds: float,
                   window: int) -> tuple[Driven, list[float]]:
    """ReportTransactionBatch of the ``prepared`` batches by each city's
    acquirer client (``acquirers``: city -> client), each keeping ``window``
    batches in flight, for ``seconds`` or until its batches are all submitted.
    Batches of one acquirer on one record day share index keys, so the contract
    has them reported one at a time (``window`` 1); more conflict. Returns what
    was driven and each submit call's time (endorsement and hand-off to
    ordering)."""
    cities = list(acquirers)
    submitting: list[float] = []

    def report(t: int, i: int) -> Future[Any]:
        t0 = time.perf_counter()
        future: Future[Any] = acquirers[cities[t]].submit_async(
            "ReportTransactionBatch", prepared[cities[t]][i])
        submitting.append(time.perf_counter() - t0)
        return future

    limit = min(len(batches) for batches in prepared.values())
    return _drive(seconds, len(cities), window, report, limit=limit), submitting


def _batch_figures(d: Driven, batch: int) -> dict[str, Any]:
    records = d.committed * batch
    return {"submitted": d.submitted, "batches": d.committed, "failed": d.failed,
            "records_per_batch": batch, "records": records,
            "seconds": round(d.elapsed, 3),
            "records_per_s": round(records / d.elapsed, 1) if d.elapsed else 0.0,
            **({"errors": d.errors} if d.errors else {})}


def bench_backend(name: str, committer: str, seconds: float, clients: int,
                  window: int, batch: int, batch_window: int,
                  dsn: str | None) -> dict[str, Any]:
    from network.consortium import load_consortium

    backend = crypto.get_backend(name)
    with tempfile.TemporaryDirectory() as tmp, \
            EmbeddedNode(Path(tmp), dsn=dsn, backend=backend,
                         committer=committer) as node:
        run = secrets.token_hex(4)
        register_department(
            EmbeddedLedger(node, node.wallet.identity("Kunshan", "admin")), "transport")
        department = EmbeddedLedger(node, node.wallet.identity("Kunshan", "transport"))

        def register(t: int, i: int) -> Future[Any]:
            return department.submit_async("RegisterIdentifier",
                                           register_args(run, t, i))

        height0 = node.height()
        single = _drive(seconds, clients, window, register)
        blocks = node.height() - height0

        cities = load_consortium().city_names
        acquirers = {c: EmbeddedLedger(node, node.wallet.identity(c, "admin"))
                     for c in cities}
        prepared = prepare_batches(
            cities, run, batch, int(seconds * 80_000 / batch / len(cities)) + 8)
        batches, _ = report_batches(acquirers, prepared, seconds, batch_window)
        return {
            "backend": name, "committer": committer,
            "single_command": {**_single_figures(single), "blocks": blocks},
            "card_batches": _batch_figures(batches, batch)}


# ------------------------------------------------------------------- Fabric
def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # it exited (a crash shows as a negative figure)
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds per process kind of a network (``Network.status()`` pids) and
    of this process (the client), between two readings."""

    def __init__(self, network: Network) -> None:
        self.pids = [(n["kind"], int(n["pid"])) for n in network.status()
                     if n["pid"] is not None]

    def read(self) -> dict[str, float]:
        used = dict.fromkeys(PROCESS_KINDS, 0.0)
        for kind, pid in self.pids:
            used[kind] += _process_cpu(pid)
        used["client"] = time.process_time()
        return used

    @contextmanager
    def measure(self) -> Iterator[dict[str, float]]:
        """Yields a dict filled, on exit, with the CPU seconds used per kind."""
        spent: dict[str, float] = {}
        before = self.read()
        yield spent
        after = self.read()
        spent.update({k: round(after[k] - before[k], 3) for k in after})


def _per(cpu: dict[str, float], n: int) -> dict[str, float]:
    """CPU milliseconds per unit (transaction, record) of each kind."""
    return {k: round(v * 1000 / n, 3) for k, v in cpu.items()} if n else {}


def _batch_settings(network: Network) -> dict[str, Any]:
    """The orderer batch settings of the network's channel, as
    ``network/fabric_config.py`` wrote them into its configtx.yaml."""
    import yaml

    configtx = yaml.safe_load((network.layout.config / "configtx.yaml").read_text())
    orderer = configtx["Profiles"]["CityUnion"]["Orderer"]
    size = orderer["BatchSize"]
    return {"batch_timeout": orderer["BatchTimeout"],
            "max_message_count": size["MaxMessageCount"],
            "preferred_max_bytes": size["PreferredMaxBytes"],
            "absolute_max_bytes": size["AbsoluteMaxBytes"]}


def bench_fabric(network: Network, seconds: float, window: int,
                 in_flight: tuple[int, ...], latency_in_flight: int, batch: int,
                 batches: int) -> dict[str, Any]:
    """The embedded workload on a running Fabric network: RegisterIdentifier
    from a department of each city (client thread t is city t mod 3, through
    its own peer's Gateway) at each of ``in_flight`` transactions in flight and
    at ``latency_in_flight`` (``window`` per client thread: ``submit_async``
    returns once endorsed, so in-flight endorsements need threads); then
    ``batches`` ReportTransactionBatch of ``batch`` records by each city's admin,
    one batch at a time per acquirer (batches of one acquirer on one day share
    index keys, see the contract)."""
    from ledger.fabric.connection import FabricConnection
    from network.consortium import load_consortium

    cities = load_consortium().city_names
    # One connection per city, as each city's systems have their own: commands
    # through one connection wait for its other peers to catch up with its
    # commits (read-your-writes), which independent submitters do not need.
    conns = {c: FabricConnection(network.layout.root)
             for c in (*cities, load_consortium().center.name)}
    try:
        auditor = conns[load_consortium().center.name].client(
            load_consortium().center.name, "auditor")
        for c in cities:
            register_department(conns[c].client(c, "admin"), "transport")
        departments = [conns[c].client(c, "transport") for c in cities]
        meter = CpuMeter(network)
        run = secrets.token_hex(4)

        def single(phase: str, in_flight: int, phase_seconds: float
                   ) -> tuple[Driven, dict[str, Any]]:
            def register(t: int, i: int) -> Future[Any]:
                return departments[t % len(departments)].submit_async(
                    "RegisterIdentifier", register_args(f"{run}-{phase}", t, i))

            height = auditor.height()
            clients = max(1, in_flight // window)
            with meter.measure() as cpu:
                d = _drive(phase_seconds, clients, min(window, in_flight), register)
            n = d.committed
            return d, {"in_flight": clients * min(window, in_flight),
                       "client_threads": clients,
                       **_single_figures(d),
                       "blocks": auditor.height() - height,
                       "cpu_s": cpu, "cpu_ms_per_tx": _per(cpu, n),
                       "cores_busy": round(sum(cpu.values()) / d.elapsed, 2)
                       if d.elapsed else 0.0}

        idle_s = min(2.0, seconds)
        with meter.measure() as idle:  # background work: gossip, Raft ticks
            time.sleep(idle_s)
        single("warm", latency_in_flight, min(1.0, seconds))  # every path
        saturation = [single(f"sat{w}", w, seconds) for w in in_flight]
        _, latency = single("latency", latency_in_flight, seconds)
        endorsements = _endorsements(auditor, saturation[-1][0].block)
        best = max((figures for _, figures in saturation),
                   key=lambda f: f["tx_per_s"])
        chaincode_ms = (round(best["cpu_s"]["chaincode"] * 1000
                              / (best["committed_tx"] * endorsements), 3)
                        if best["committed_tx"] and endorsements else None)

        # A random far record day keeps runs on one network apart (fresh index
        # keys, and no day another test may have cleared).
        day = (date(2030, 1, 1) + timedelta(days=secrets.randbelow(3650))).isoformat()
        prepared = prepare_batches(cities, run, batch, batches, day)
        with meter.measure() as batch_cpu:
            b, endorse = report_batches(
                {c: conns[c].client(c, "admin") for c in cities}, prepared,
                float("inf"), 1)
        records = b.committed * batch
        return {
            "nodes": {k: sum(1 for kind, _ in meter.pids if kind == k)
                      for k in PROCESS_KINDS},
            "orderer_batch": _batch_settings(network),
            "window_per_thread": window, "endorsements_per_tx": endorsements,
            "idle_cores": {k: round(v / idle_s, 3) for k, v in idle.items()},
            "single_command": [figures for _, figures in saturation],
            "latency": latency,
            "chaincode_ms_per_endorsement": chaincode_ms,
            "card_batches": {
                "acquirers": len(cities), **_batch_figures(b, batch),
                "endorse_s_mean": round(statistics.fmean(endorse), 3)
                if endorse else None,
                "cpu_s": batch_cpu, "cpu_ms_per_record": _per(batch_cpu, records)},
            "targets": _targets(best["tx_per_s"], latency["p50_ms"],
                                records / b.elapsed if b.elapsed else 0.0,
                                chaincode_ms)}
    finally:
        for conn in conns.values():
            conn.close()


def _endorsements(auditor: Any, block: int | None) -> int:
    """Endorsements of a committed RegisterIdentifier in ``block``."""
    if block is None:
        return 0
    for tx in auditor.block(block)["raw"]["transactions"]:
        if tx.get("function") == "RegisterIdentifier":
            return len(tx["endorsers"])
    return 0


def _targets(tx_per_s: float, p50_ms: float, records_per_s: float,
             chaincode_ms: float | None) -> dict[str, dict[str, Any]]:
    measured = {"tx_per_s": tx_per_s, "p50_ms": p50_ms,
                "records_per_s": round(records_per_s, 1),
                "chaincode_ms_per_endorsement": chaincode_ms}
    out = {}
    for name, target in TARGETS.items():
        value = measured[name]
        lower_is_better = name in ("p50_ms", "chaincode_ms_per_endorsement")
        met = value is not None and (value < target if lower_is_better
                                     else value >= target)
        out[name] = {"target": target, "measured": value, "met": met}
    return out


@contextmanager
def fabric_network(directory: Path | None, base_port: int) -> Iterator[Network]:
    """The network in ``directory``, or a fresh one in a temporary directory on
    ``base_port``, brought down (and deleted) afterwards."""
    from network.launcher import Network

    if directory is not None:
        yield Network(directory)
        return
    with tempfile.TemporaryDirectory(prefix="cu-bench-") as tmp:
        net = Network(Path(tmp) / "network", base_port=base_port)
        try:
            net.up()
            yield net
        finally:
            net.down()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=2,
                   help="client threads (default 2, one per core)")
    p.add_argument("--window", type=int, default=32,
                   help="transactions each client keeps in flight (default 32)")
    p.add_argument("--batch", type=int, default=2000, help="records per batch")
    p.add_argument("--batch-window", type=int, default=1,
                   help="batches each acquirer city keeps in flight (default 1: "
                        "more conflict on the record-id index)")
    p.add_argument("--backends", default=",".join(crypto.available_backends()))
    p.add_argument("--committers", default="thread,process",
                   help="committer placements to measure (default both)")
    p.add_argument("--dsn", default=None,
                   help="an empty PostgreSQL database (default: SQLite)")
    p.add_argument("--ledgers", "--ledger", default="embedded",
                   help="ledgers to measure: embedded, fabric or both "
                        "(default embedded)")
    p.add_argument("--network", type=Path, default=None,
                   help="Fabric: a running network's directory (default: start "
                        "one in a temporary directory)")
    p.add_argument("--base-port", type=int, default=27000,
                   help="Fabric: base port of the network started (default 27000)")
    p.add_argument("--fabric-window", type=int, default=5,
                   help="Fabric: transactions each client thread keeps in "
                        "flight (threads: in-flight / this; default 5)")
    p.add_argument("--in-flight", default="200,400",
                   help="Fabric: transactions in flight at saturation")
    p.add_argument("--latency-in-flight", type=int, default=50,
                   help="Fabric: transactions in flight for the latency figures")
    p.add_argument("--fabric-batch", type=int, default=10_000,
                   help="Fabric: records per batch (default 10,000)")
    p.add_argument("--fabric-batches", type=int, default=2,
                   help="Fabric: batches per acquirer city (default 2)")
    args = p.parse_args()
    ledgers = args.ledgers.split(",")
    unknown = sorted(set(ledgers) - {"embedded", "fabric"})
    if unknown:
        p.error(f"unknown ledger(s) {', '.join(unknown)} (accepted: embedded, "
                "fabric)")
    out: dict[str, Any] = {"benchmark": "ledger", "ledgers": ledgers,
                           "cores": os.cpu_count()}
    if "embedded" in ledgers:
        out.update(embedded_report(args))
    if "fabric" in ledgers:
        with fabric_network(args.network, args.base_port) as net:
            out["fabric"] = bench_fabric(
                net, args.seconds, args.fabric_window,
                tuple(int(n) for n in args.in_flight.split(",")),
                args.latency_in_flight, args.fabric_batch, args.fabric_batches)
    print(json.dumps(out, indent=2))


def embedded_report(args: argparse.Namespace) -> dict[str, Any]:
    """The embedded figures, under the JSON keys they have always had."""
    results = [bench_backend(b, c, args.seconds, args.clients, args.window,
                             args.batch, args.batch_window, args.dsn)
               for b in args.backends.split(",") for c in args.committers.split(",")]
    out: dict[str, Any] = {"ledger": "embedded",
                           "store": "postgresql" if args.dsn else "sqlite",
                           "clients": args.clients, "window": args.window,
                           "results": results}
    for committer in args.committers.split(","):
        by = {r["backend"]: r for r in results if r["committer"] == committer}
        if "native" in by and "gmssl" in by:
            for metric, field_ in (("tx_per_s", "single_command"),
                                   ("records_per_s", "card_batches")):
                out[f"gmssl_over_native_{metric}_{committer}"] = round(
                    by["gmssl"][field_][metric] / by["native"][field_][metric], 4)
    return out


if __name__ == "__main__":
    main()
