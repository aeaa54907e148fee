"""SM2 benchmark, one thread (one core): signatures and verifications per second
for each crypto backend in one run, as ratios to the default backend's. Each
figure is the best of a few rounds, the backends taking turns, so that other
load on a shared machine lowers them all alike and no more than it must. Prints
one JSON object.

    python -m bench.crypto [--seconds 1] [--rounds 3] [--bytes 300]
                           [--backends native,gmsm]

Offline QR verification at terminals needs 5,000 static codes/s per core (one
verify each) and 3,000 dynamic codes/s (two each): 6,000 verifies/s at least,
before any other work a code takes.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from collections.abc import Callable

from ledger import crypto

VERIFIES_NEEDED = {"static_codes": 5000, "dynamic_codes": 2 * 3000}


def rate(op: Callable[[], object], seconds: float) -> float:
    """Calls of ``op`` per second, over about ``seconds`` (at least 5 calls)."""
    op()  # warm up: caches, and gmsm's library load
    calls, batch, start = 0, 5, time.perf_counter()
    while True:
        for _ in range(batch):
            op()
        calls += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed
        batch = max(batch, int(calls / elapsed * 0.1))  # look at the clock ~10/s


def operations(name: str, size: int) -> dict[str, Callable[[], object]]:
    """Sign and verify with a fresh key of backend ``name``, a ``size``-byte message."""
    backend = crypto.get_backend(name)
    private, public = backend.sm2_generate()
    message = secrets.token_bytes(size)
    signature = backend.sm2_sign(private, message)
    assert backend.sm2_verify(public, message, signature)
    return {"sign_per_s": lambda: backend.sm2_sign(private, message),
            "verify_per_s": lambda: backend.sm2_verify(public, message, signature)}


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--seconds", type=float, default=1.0,
                   help="per backend and operation, all rounds (default 1)")
    p.add_argument("--rounds", type=int, default=3, help="(default 3)")
    p.add_argument("--bytes", type=int, default=300,
                   help="message size (default 300, about a QR code's payload)")
    p.add_argument("--backends", default=",".join(crypto.available_backends()),
                   help="comma-separated (default: every available one)")
    a = p.parse_args()
    names = [n.strip() for n in a.backends.split(",") if n.strip()]
    ops = {n: operations(n, a.bytes) for n in names}
    best = {n: dict.fromkeys(ops[n], 0.0) for n in names}
    for _ in range(a.rounds):
        for n in names:
            for op, call in ops[n].items():
                best[n][op] = max(best[n][op], rate(call, a.seconds / a.rounds))
    results = {n: {op: round(r) for op, r in best[n].items()} for n in names}
    base = crypto.get_backend().name
    ratios = {n: {op: round(r[op] / results[base][op], 2) for op in r}
              for n, r in results.items()} if base in results else {}
    print(json.dumps({
        "seconds": a.seconds, "rounds": a.rounds, "message_bytes": a.bytes,
        "backends": results,
        "ratio_to": base if ratios else None, "ratios": ratios,
        "verifies_needed_per_s": VERIFIES_NEEDED,
        "fastest_verifier": crypto.fastest_verifier().name,
        "verify_budget_met": {n: r["verify_per_s"] >= max(VERIFIES_NEEDED.values())
                              for n, r in results.items()}}, indent=2))


if __name__ == "__main__":
    main()
