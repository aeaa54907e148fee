"""City QR code usage through the API: terminals report scans (the API computes
the Merkle root), and the supervision reads answer scans per code, per day,
zombie codes per batch, over-issuing schemes, likely copies and dynamic
replays, each scoped to the reader's city; bad parameters are 422 naming the
parameter. The arithmetic is tested on hand-built events in test_code_usage.py;
here the path from command to answer (other tests share the read models, so
each looks for what it made)."""

from __future__ import annotations

import csv
import io
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any

from apikit import (
    CENTER_ADMIN,
    KS_ADMIN,
    KS_TERMINAL,
    KS_TRANSPORT,
    SH_ADMIN,
    TC_ADMIN,
    Api,
    problem,
)
from helpers import code_scan, issuer_keys, unique_hash

SH_TERMINAL = ("Shanghai", "terminal")
MOMENT = "%Y-%m-%dT%H:%M:%SZ"


def _issue(api: Api, count: int = 3) -> tuple[str, str, str]:
    """A batch of ``count`` codes of a new approved Kunshan scheme: (scheme,
    batch id, serial prefix)."""
    scheme = api.approved_scheme()
    url = api.guide_url(scheme)
    api.ok(f"/api/guide-urls/{url}/approve", {}, KS_ADMIN, 200)
    start = datetime.now(UTC).replace(microsecond=0)
    prefix = secrets.token_hex(4)
    out = api.ok(f"/api/code-schemes/{scheme}/code-batches", {
        "guide_url_id": url,
        "signer_fingerprint": issuer_keys(api.clients).institution[1].fingerprint,
        "count": count, "not_before": start.strftime(MOMENT),
        "not_after": (start + timedelta(days=7)).strftime(MOMENT),
        "merkle_root": unique_hash(), "serial_prefix": prefix}, KS_TRANSPORT)
    return scheme, str(out["result"]["id"]), prefix


def _report(api: Api, who: tuple[str, ...], *scans: dict[str, Any]) -> str:
    out = api.ok("/api/code-usage", {"terminal_id": "gate-1",
                                     "scans": list(scans)}, who)
    assert out["status"] == "VALID"
    return str(out["result"]["id"])


def _ago(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).strftime(MOMENT)


def test_report_and_read_back(api: Api) -> None:
    scheme, batch, prefix = _issue(api)
    serial = prefix + secrets.token_hex(8)
    kunshan = code_scan(scheme, serial, at=_ago(6))
    shanghai = code_scan(scheme, serial, at=_ago(3))  # 3 minutes later: a copy?
    _report(api, KS_TERMINAL, kunshan)
    _report(api, SH_TERMINAL, shanghai)
    r = api.post("/api/code-usage", {"terminal_id": "gate-1",
                                     "scans": [kunshan]}, KS_TERMINAL)
    assert problem(r, 409, "merkle_root")["detail"].endswith("already reported")
    api.sync()

    found = api.get(f"/api/code-usage/codes/{serial}", CENTER_ADMIN).json()
    assert [(s["city"], s["scanned_at"]) for s in found["scans"]] == [
        ("Kunshan", kunshan["at"]), ("Shanghai", shanghai["at"])]
    assert [(b["id"], b["serial_prefix"]) for b in found["batches"]] == [
        (batch, prefix)]
    # Kunshan's scheme: Kunshan sees both; Shanghai its own scan; Taicang none
    assert len(api.get(f"/api/code-usage/codes/{serial}", KS_ADMIN).json()[
        "scans"]) == 2
    assert [s["city"] for s in api.get(f"/api/code-usage/codes/{serial}",
                                       SH_ADMIN).json()["scans"]] == ["Shanghai"]
    problem(api.get(f"/api/code-usage/codes/{serial}", TC_ADMIN), 404, "serial")

    rows = api.get("/api/code-usage", CENTER_ADMIN, scheme=scheme).json()["rows"]
    assert {(r["city"], r["kind"], r["result"], r["scans"]) for r in rows} == {
        ("Kunshan", "static", "valid", 1), ("Shanghai", "static", "valid", 1)}
    text = api.get("/api/code-usage", KS_ADMIN, scheme=scheme, format="csv",
                   **{"from": kunshan["at"][:10], "to": shanghai["at"][:10]})
    assert text.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(text.text)))
    assert sorted(r["city"] for r in table) == ["Kunshan", "Shanghai"]

    copies = api.get("/api/code-usage/copies", KS_ADMIN, limit=500).json()["items"]
    (copy,) = [a for a in copies if a["subject"] == serial]
    assert [r["city"] for r in copy["records"]] == ["Shanghai", "Kunshan"]
    assert serial not in {a["subject"] for a in api.get(
        "/api/code-usage/copies", TC_ADMIN, limit=500).json()["items"]}


def test_dynamic_replay(api: Api) -> None:
    scheme = api.approved_scheme()
    text = f"dynamic-{secrets.token_hex(8)}"
    _report(api, KS_TERMINAL, code_scan(scheme, kind="dynamic", at=_ago(30),
                                        code=text))
    _report(api, SH_TERMINAL, code_scan(scheme, kind="dynamic", at=_ago(1),
                                        code=text))
    api.sync()
    replays = api.get("/api/code-usage/replays", CENTER_ADMIN, limit=500).json()
    (replay,) = [a for a in replays["items"] if a["scheme_id"] == scheme]
    assert [r["city"] for r in replay["records"]] == ["Shanghai", "Kunshan"]


def test_zombies_and_over_issuing(api: Api) -> None:
    scheme, batch, prefix = _issue(api, count=4)
    _report(api, KS_TERMINAL, code_scan(scheme, prefix + secrets.token_hex(8),
                                        at=_ago(2)))
    api.sync()
    # as of tomorrow over one day: issued today, no scan tomorrow: all 4 zombies
    tomorrow = (date.fromisoformat(_ago(0)[:10]) + timedelta(days=1)).isoformat()
    zombies = api.get("/api/code-usage/zombies", KS_ADMIN, days=1, as_of=tomorrow,
                      limit=500).json()["items"]
    (mine,) = [z for z in zombies if z["id"] == batch]
    assert (mine["code_count"], mine["scanned"], mine["zombie"]) == (4, 0, 4)
    assert batch not in {z["id"] for z in api.get(
        "/api/code-usage/zombies", SH_ADMIN, days=1, as_of=tomorrow,
        limit=500).json()["items"]}
    schemes = api.get("/api/code-usage/over-issuing", CENTER_ADMIN,
                      ratio=4).json()["schemes"]
    (found,) = [s for s in schemes if s["scheme_id"] == scheme]
    assert (found["issued"], found["scanned"], found["ratio"]) == (4, 1, 4.0)
    assert [b["id"] for b in found["batches"]] == [batch]
    assert scheme not in {s["scheme_id"] for s in api.get(
        "/api/code-usage/over-issuing", CENTER_ADMIN, ratio=5).json()["schemes"]}


def test_bad_parameters_are_named(api: Api) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/api/code-usage/zombies", {"days": 0}, "days"),
        ("/api/code-usage/zombies", {"as_of": "2026-02-30"}, "as_of"),
        ("/api/code-usage/over-issuing", {"ratio": 0.5}, "ratio"),
        ("/api/code-usage/over-issuing", {"ratio": "many"}, "ratio"),
        ("/api/code-usage", {"from": "2026-13-01"}, "from"),
        ("/api/code-usage", {"from": "2026-12-02", "to": "2026-12-01"}, "from"),
        ("/api/code-usage", {"scheme": "bus"}, "scheme"),
        ("/api/code-usage", {"format": "xml"}, "format"),
        ("/api/code-usage/copies", {"day": "yesterday"}, "day"),
        ("/api/code-usage/codes/XYZ", {}, "serial")]
    for path, params, field in cases:
        problem(api.get(path, CENTER_ADMIN, **params), 422, field)
    problem(api.get("/api/code-usage", KS_ADMIN, city="Shanghai"), 403, "city")
    problem(api.client.get("/api/code-usage/zombies"), 401)
    r = api.post("/api/code-usage", {"terminal_id": "gate-1", "scans": [
        code_scan(str(date.today()))]}, KS_TERMINAL)
    problem(r, 422, "scans.0.scheme_id")


def test_a_full_report_fits_the_body_limit(api: Api) -> None:
    """10,001 scans (2.6 MB, over the default 1 MiB body limit): refused by
    their count, not by their size."""
    scan = code_scan(api.scheme(), reason="x" * 100, result="refused")
    r = api.post("/api/code-usage", {"terminal_id": "gate-1",
                                     "scans": [scan] * 10_001}, KS_TERMINAL)
    assert problem(r, 422, "scans")["detail"].startswith("scans: ")
