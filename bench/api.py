"""API benchmark, on the embedded ledger or a Fabric network.

Starts ``cityunion serve`` as its own process on a seeded ledger (``--ledger
fabric --network DIR``: a running network, seeded with this run's own keys), then,
from this
second process, measures:
- reads: p50/p99 latency and achieved requests/s at a fixed open-loop rate (each
  request is timed from the moment it was scheduled, so a stalled server or
  client counts against it), over a mix of list, item and dashboard reads;
- the maximum read throughput of a few keep-alive connections (closed loop);
- end-to-end lag: submit a command (POST), then poll its read model until it is
  visible; p50/p95 from submit and from the commit (the POST's answer);
- the same reads and lag measured together.
The load generator is a minimal HTTP/1.1 keep-alive client on asyncio, so that
on a small machine the client costs the server little CPU. Prints one JSON
object.

    python -m bench.api [--rate 500] [--seconds 10] [--lag-samples 200]
                        [--ledger fabric --network DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.ledger import percentile
from chaincode.encoding import sm3_hex
from chaincode.errors import Conflict
from chaincode.merkle import merkle_root
from ledger.connect import connect
from ledger.protocol import Connection as LedgerConnection

ROOT = Path(__file__).resolve().parents[1]
RUN = f"{random.randrange(1 << 32):08x}"  # keys of this run (a Fabric ledger stays)
_FIRST = date(2100, 1, 1) + timedelta(days=20 * random.randrange(10_000))
DAYS = [(_FIRST + timedelta(days=d)).isoformat() for d in range(20)]


def _ms(values: list[float], *qs: float) -> dict[str, float]:
    return {f"p{round(q * 100)}_ms": round(percentile(values, q) * 1000, 2)
            for q in qs}


def _hash(text: str) -> str:
    return sm3_hex(text.encode())


# ----------------------------------------------------------------- the data
def seed(conn: LedgerConnection, identifiers: int) -> list[str]:
    """A ledger with every read model populated; returns identifier ids."""
    try:
        as_ = conn.client
        ks, kt = as_("Kunshan"), as_("Kunshan", "transport")
        with contextlib.suppress(Conflict):  # a Fabric network seeded before
            ks.submit("RegisterDepartment", {"code": "transport", "name": "Transport",
                                             "duties": ["transport"]})
        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(lambda i: kt.submit("RegisterIdentifier", {
                "kind": ("person", "place", "organisation")[i % 3],
                "category": "identity", "scheme": "cn-id",
                "natural_key_hash": _hash(f"{RUN}id{i}")}).result["id"],
                range(identifiers)))
            schemes = list(pool.map(lambda i: kt.submit("ApplyCodeScheme", {
                "application_name": f"app{RUN}{i}", "code_type": "transport",
                "scope": f"scope{RUN}{i}", "data_sharing_commitment": True}
            ).result["id"], range(20)))
        for s in schemes[:10]:
            as_("Center").submit("ApproveCodeScheme", {"scheme_id": s})
        for n, day in enumerate(DAYS):
            for acquirer, issuer in (("Kunshan", "Shanghai"), ("Shanghai", "Taicang"),
                                     ("Taicang", "Kunshan")):
                records = [{"record_id": f"{RUN}-{day}-{issuer}-{i}",
                            "issuer_city": issuer,
                            "card_id_hash": _hash(f"{day}{i}"),
                            "amount_fen": 100 + i, "time": f"{day}T08:00:00Z",
                            "terminal_id": "T1"} for i in range(20)]
                as_(acquirer).submit("ReportTransactionBatch", {
                    "business_day": day, "records": records,
                    "merkle_root": merkle_root(records)})
            if n < len(DAYS) - 2:
                as_("Center").submit("RunClearing", {"business_day": day})
    finally:
        conn.close()
    return ids


# --------------------------------------------------- a small HTTP/1.1 client
class Connection:
    """One keep-alive HTTP/1.1 connection (Content-Length bodies only)."""

    def __init__(self, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, method: str, path: str, token: str,
                      body: bytes = b"") -> tuple[int, bytes]:
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n")
        if body:
            head += "Content-Type: application/json\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        line = await self.reader.readline()
        if not line:
            raise ConnectionResetError("the server closed the connection")
        status = int(line.split()[1])
        length = 0
        while (line := await self.reader.readline()) != b"\r\n":
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


class Pool:
    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[Connection] = []

    async def request(self, method: str, path: str, token: str,
                      body: bytes = b"") -> tuple[int, bytes]:
        while self.idle:  # an idle one may have been closed by the server
            conn = self.idle.pop()
            try:
                result = await conn.request(method, path, token, body)
            except ConnectionError:
                conn.close()
                continue
            self.idle.append(conn)
            return result
        conn = await Connection.open(self.port)
        result = await conn.request(method, path, token, body)
        self.idle.append(conn)
        return result

    def close(self) -> None:
        for c in self.idle:
            c.close()


# ------------------------------------------------------------------ phases
def read_paths(ids: list[str]) -> list[Callable[[], str]]:
    """The read mix: lists with filters, single items, the dashboard."""
    return [
        lambda: "/api/identifiers?limit=20",
        lambda: f"/api/identifiers/{random.choice(ids)}",
        lambda: "/api/identifiers?city=Kunshan&kind=place&limit=20&offset=40",
        lambda: f"/api/identifiers/{random.choice(ids)}",
        lambda: "/api/code-schemes?status=approved",
        lambda: f"/api/card-volumes?from={DAYS[0]}&to={DAYS[9]}",
        lambda: f"/api/card-batches?business_day={random.choice(DAYS)}",
        lambda: f"/api/clearing-runs/{DAYS[3]}",
        lambda: "/api/blocks?limit=10",
        lambda: "/api/dashboard/summary",
    ]


async def open_loop(pool: Pool, token: str, paths: list[Callable[[], str]],
                    rate: float, seconds: float) -> dict[str, Any]:
    """Requests at a fixed rate, each timed from its scheduled start."""
    latencies: list[float] = []
    service: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        sent = loop.time()
        try:
            status, _ = await pool.request("GET", paths[i % len(paths)](), token)
        except OSError:
            status = 0
        done = loop.time()
        if status != 200:
            errors += 1
        latencies.append(done - scheduled)
        service.append(done - sent)

    tasks = []
    start = loop.time() + 0.05
    total = int(rate * seconds)
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    return {"requests": total, "errors": errors, "rate": rate,
            "achieved_rps": round(total / elapsed, 1),
            **_ms(latencies, 0.5, 0.99), "max_ms": round(max(latencies) * 1000, 2),
            "service_p99_ms": _ms(service, 0.99)["p99_ms"]}


async def closed_loop(port: int, token: str, paths: list[Callable[[], str]],
                      connections: int, seconds: float) -> dict[str, Any]:
    """As many requests as ``connections`` sequential clients get answered."""
    count = 0
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal count
        conn = await Connection.open(port)
        i = random.randrange(len(paths))
        while time.perf_counter() < stop:
            await conn.request("GET", paths[i % len(paths)](), token)
            count += 1
            i += 1
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return {"connections": connections,
            "rps": round(count / (time.perf_counter() - started), 1)}


async def lag(pool: Pool, writer_token: str, reader_token: str, samples: int,
              workers: int = 4) -> dict[str, Any]:
    """Submit RegisterIdentifier, then poll the read model until it shows it."""
    from_submit: list[float] = []
    from_commit: list[float] = []
    failed = 0
    loop = asyncio.get_running_loop()

    async def worker(w: int) -> None:
        nonlocal failed
        for i in range(w, samples, workers):
            body = json.dumps({"kind": "place", "category": "identity",
                               "scheme": "lag", "natural_key_hash": _hash(
                                   f"lag{os.getpid()}-{i}-{time.time()}")}).encode()
            t0 = loop.time()
            status, answer = await pool.request("POST", "/api/identifiers",
                                                writer_token, body)
            t1 = loop.time()
            if status != 201:
                failed += 1
                continue
            path = f"/api/identifiers/{json.loads(answer)['result']['id']}"
            while (await pool.request("GET", path, reader_token))[0] != 200:
                if loop.time() - t0 > 30:
                    raise TimeoutError(f"{path} not visible after 30 s")
                await asyncio.sleep(0.002)
            t2 = loop.time()
            from_submit.append(t2 - t0)
            from_commit.append(t2 - t1)

    started = loop.time()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    return {"samples": len(from_submit), "failed": failed, "writers": workers,
            "writes_per_s": round(len(from_submit) / (loop.time() - started), 1),
            "submit_to_visible": _ms(from_submit, 0.5, 0.95, 0.99),
            "commit_to_visible": _ms(from_commit, 0.5, 0.95, 0.99)}


# ------------------------------------------------------------------ driver
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(data_dir: Path, port: int, ledger: list[str]
                  ) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve",
                             "--data-dir", str(data_dir), "--port", str(port),
                             *ledger], cwd=ROOT, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("cityunion serve exited")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    raise SystemExit("cityunion serve did not start")


async def _caught_up(pool: Pool, token: str) -> None:
    while True:
        _, body = await pool.request("GET", "/api/projections", token)
        status = json.loads(body)
        if status["ledger_height"] and status["behind_blocks"] == 0:
            return
        await asyncio.sleep(0.2)


async def run(args: argparse.Namespace, port: int, tokens: dict[str, str],
              ids: list[str]) -> dict[str, Any]:
    pool = Pool(port)
    await _caught_up(pool, tokens["center"])
    paths = read_paths(ids)
    await open_loop(pool, tokens["center"], paths, args.rate, 1.0)  # warm up
    out: dict[str, Any] = {}
    out["reads"] = await open_loop(pool, tokens["center"], paths, args.rate,
                                   args.seconds)
    out["max_throughput"] = await closed_loop(port, tokens["center"], paths,
                                              args.connections, 3.0)
    out["lag"] = await lag(pool, tokens["transport"], tokens["center"],
                           args.lag_samples)
    reads, mixed_lag = await asyncio.gather(
        open_loop(pool, tokens["center"], paths, args.rate, args.seconds),
        lag(pool, tokens["transport"], tokens["center"], args.lag_samples))
    out["reads_and_lag_together"] = {"reads": reads, "lag": mixed_lag}
    pool.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0,
                        help="read requests per second (default: 500)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="length of each read phase (default: 10)")
    parser.add_argument("--connections", type=int, default=8,
                        help="closed-loop connections for max throughput")
    parser.add_argument("--lag-samples", type=int, default=200)
    parser.add_argument("--identifiers", type=int, default=600,
                        help="identifiers seeded before the run")
    parser.add_argument("--ledger", choices=["embedded", "fabric"],
                        default="embedded")
    parser.add_argument("--network", type=Path,
                        help="with --ledger fabric: a running network's directory")
    args = parser.parse_args()
    if args.ledger == "fabric" and args.network is None:
        parser.error("--ledger fabric needs --network DIR (cityunion network up)")

    from api.tokens import TokenService

    with tempfile.TemporaryDirectory(prefix="cu-bench-api-") as tmp:
        data_dir = Path(tmp) / "node"
        seeded = time.perf_counter()
        ids = seed(connect(args.ledger, data_dir=data_dir, network=args.network),
                   args.identifiers)
        seeded = time.perf_counter() - seeded
        issuer = TokenService(data_dir)
        tokens = {"center": issuer.issue("Center", "center_admin")[1],
                  "transport": issuer.issue("Kunshan", "department",
                                            "transport")[1]}
        port = _free_port()
        server = _start_server(data_dir, port, [
            "--ledger", args.ledger,
            *(["--network", str(args.network)] if args.network else [])])
        try:
            result = asyncio.run(run(args, port, tokens, ids))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    report = {"benchmark": "api", "ledger": args.ledger, "cpus": os.cpu_count(),
              "seed_seconds": round(seeded, 1), "identifiers": args.identifiers,
              **result}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
