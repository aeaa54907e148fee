"""Clearing benchmark: a peak business day of card records across many member
cities on the embedded ledger, then the center's RunClearing for that day. Prints
one JSON object: how long reporting took (not the target) and how long the
clearing took from submit to commit, with the day's figures.

    python -m bench.clearing [--records 450000] [--cities 80] [--batch 10000]
                             [--blacklisted 10000] [--data-dir DIR]

The consortium has ``--cities`` member cities (a generated consortium file,
``$CITYUNION_CONSORTIUM``). Each batch comes from one acquirer city, its records
issued by all the others in turn, with the scenes and types of real traffic mixed
in; fee rules for every scene and party are in effect; ``--blacklisted`` cards
are on the blacklist, five of which rode that day (their records are flagged).
The issue's target: a day of 450,000 records across 80 cities clears in under
10 s after the batches are in.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ledger import percentile
from chaincode.domain import PARTIES, RECORD_TYPES, SCENES
from chaincode.merkle import merkle_root
from ledger import crypto
from network.consortium import CONSORTIUM_ENV

TARGET_S = 10.0


def consortium_file(directory: Path, cities: int) -> Path:
    """A consortium of the center and ``cities`` cities C001, C002, ..."""
    lines = ['channel = "cityunion"', 'chaincode = "cityunion"', "",
             "[center]", 'name = "Center"', 'msp_id = "CenterMSP"']
    for i in range(1, cities + 1):
        lines += ["", "[[cities]]", f'name = "C{i:03d}"', f'msp_id = "C{i:03d}MSP"',
                  f'code = "{100000 + i}"']
    path = directory / "consortium.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def batch(acquirer: str, issuers: list[str], n: int, offset: int,
          day: str) -> dict[str, Any]:
    """A ReportTransactionBatch of ``n`` records by ``acquirer`` on ``day``."""
    records = []
    for j in range(n):
        k = offset + j
        sec = k % 86_400
        records.append({
            "record_id": f"{acquirer}-{k}", "issuer_city": issuers[k % len(issuers)],
            "card_id_hash": crypto.sm3_hex(f"card{k % 200_000}".encode()),
            "amount_fen": 100 + k % 900,
            "time": f"{day}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}Z",
            "terminal_id": f"T{k % 500}", "scene": SCENES[k % len(SCENES)],
            "type": RECORD_TYPES[0] if k % 10 else RECORD_TYPES[k // 10 % 3]})
    return {"business_day": day, "records": records,
            "merkle_root": merkle_root(records)}


def run(records: int, cities: int, size: int, data_dir: Path,
        blacklisted: int) -> dict[str, Any]:
    from ledger.connect import connect
    from network.consortium import load_consortium

    names = list(load_consortium().city_names)
    day = "2026-11-20"
    conn = connect("embedded", data_dir=data_dir)
    try:
        center = conn.client("Center")
        for i, (scene, party) in enumerate((s, p) for s in SCENES for p in PARTIES):
            center.submit("PublishFeeRule", {
                "scene": scene, "party": party, "rate_bps": 20 + i % 30,
                "min_fee_fen": 1, "max_fee_fen": 500, "effective_day": "2026-01-01"})
        batches, submit_s = 0, []
        t0 = time.perf_counter()
        for offset in range(0, records, size):
            acquirer = names[batches % len(names)]
            args = batch(acquirer, [c for c in names if c != acquirer],
                         min(size, records - offset), offset, day)
            t = time.perf_counter()
            conn.client(acquirer).submit("ReportTransactionBatch", args)
            submit_s.append(time.perf_counter() - t)
            batches += 1
            print(f"\rreported {min(offset + size, records):,}/{records:,} records",
                  end="", file=sys.stderr, flush=True)
        reported_in = time.perf_counter() - t0
        print(file=sys.stderr, flush=True)
        # Lost cards: a few that rode that day (in a few batches), the rest not.
        lost = [crypto.sm3_hex(f"card{k * 7919 % min(records, 200_000)}".encode())
                for k in range(min(blacklisted, 5))]
        lost += [crypto.sm3_hex(f"never-rode-{k}".encode())
                 for k in range(blacklisted - len(lost))]
        for i in range(0, len(lost), 1000):
            conn.client(names[0]).submit("BlacklistCards", {"cards": [
                {"card_id_hash": c, "reason": "lost", "since": f"{day}T00:00:00Z"}
                for c in lost[i:i + 1000]]})
        t = time.perf_counter()
        result = center.submit("RunClearing", {"business_day": day}).result
        clearing_s = time.perf_counter() - t
    finally:
        conn.close()
    return {
        "records": records, "cities": cities, "batches": batches,
        "batch_size": size,
        "reporting": {"seconds": round(reported_in, 1),
                      "records_per_s": round(records / reported_in),
                      "batch_p50_s": round(percentile(submit_s, 0.5), 3)},
        "clearing": {"seconds": round(clearing_s, 3), "target_s": TARGET_S,
                     "within_target": clearing_s < TARGET_S,
                     "records": result["records"], "gross_fen": result["gross_fen"],
                     "center_fee_fen": result["center_fee_fen"],
                     "pairs": len(result["pairs"]), "blacklisted_cards": blacklisted,
                     "flagged_records": len(result["flagged"])}}


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--records", type=int, default=450_000)
    p.add_argument("--cities", type=int, default=80)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--blacklisted", type=int, default=10_000,
                   help="cards on the blacklist when the day is cleared")
    p.add_argument("--data-dir", type=Path, help="ledger directory (default: a "
                   "temporary one, removed afterwards)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="cu-clearing-") as tmp:
        os.environ[CONSORTIUM_ENV] = str(consortium_file(Path(tmp), a.cities))
        out = run(a.records, a.cities, a.batch, a.data_dir or Path(tmp) / "ledger",
                  a.blacklisted)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
