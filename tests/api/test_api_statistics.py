"""Statistics and risk monitoring through the API on every ledger: volume by
day, pair, scene and type; year on year; peak days; the ranking of cities; CSV
export; risk alerts with the records behind them. Each test reports on days of
its own and filters by them (other tests share the read models)."""

from __future__ import annotations

import csv
import io
from typing import Any

from apikit import (
    CENTER_ADMIN,
    KS_ADMIN,
    KS_AUDITOR,
    KS_TRANSPORT,
    SH_ADMIN,
    TC_ADMIN,
    Api,
    Who,
    name,
    new_day,
    problem,
)
from helpers import card_record, unique_hash


def _record(issuer: str, amount: int, time: str, **extra: Any) -> dict[str, Any]:
    return {**card_record(name("r"), issuer, amount), "time": time, **extra}


def _report(api: Api, who: Who, day: str, *records: dict[str, Any]) -> str:
    out = api.ok("/api/card-batches", {"business_day": day,
                                       "records": list(records)}, who)
    return str(out["result"]["id"])


def _rows(api: Api, path: str, **params: Any) -> list[dict[str, Any]]:
    r = api.get(f"/api/statistics/{path}", CENTER_ADMIN, **params)
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()["rows"]
    return rows


def test_volume_by_pair_scene_type_and_day(api: Api) -> None:
    d1, d2 = new_day(), new_day()
    _report(api, KS_ADMIN, d1,
            _record("Shanghai", 300, f"{d1}T08:00:00Z", scene="metro"),
            _record("Shanghai", 500, f"{d1}T09:00:00Z", scene="bus"),
            _record("Taicang", 700, f"{d1}T10:00:00Z", scene="metro",
                    type="top_up"))
    _report(api, SH_ADMIN, d2, _record("Kunshan", 1000, f"{d2}T08:00:00Z"))
    api.sync()
    span = {"from": d1, "to": d2}
    assert _rows(api, "volume", group="pair", **span) == [
        {"acquirer_city": "Kunshan", "issuer_city": "Shanghai", "record_count": 2,
         "amount_fen": 800},
        {"acquirer_city": "Kunshan", "issuer_city": "Taicang", "record_count": 1,
         "amount_fen": 700},
        {"acquirer_city": "Shanghai", "issuer_city": "Kunshan", "record_count": 1,
         "amount_fen": 1000}]
    assert _rows(api, "volume", group="scene", **span) == [
        {"scene": "bus", "record_count": 1, "amount_fen": 500},
        {"scene": "metro", "record_count": 2, "amount_fen": 1000},
        {"scene": "other", "record_count": 1, "amount_fen": 1000}]
    assert _rows(api, "volume", group="type", scene="metro", **span) == [
        {"type": "purchase", "record_count": 1, "amount_fen": 300},
        {"type": "top_up", "record_count": 1, "amount_fen": 700}]
    assert _rows(api, "volume", group="day", city="Taicang", **span) == [
        {"business_day": d1, "record_count": 1, "amount_fen": 700}]
    assert _rows(api, "peak-days", limit=1, **span) == [
        {"business_day": d1, "record_count": 3, "amount_fen": 1500}]
    ranking = _rows(api, "ranking", by="amount_fen", **span)
    assert [(r["rank"], r["city"], r["amount_fen"]) for r in ranking] == [
        (1, "Kunshan", 2500), (2, "Shanghai", 1800), (3, "Taicang", 700)]
    assert ranking[0]["acquired_fen"] == 1500 and ranking[0]["issued_fen"] == 1000
    r = api.get("/api/statistics/volume", CENTER_ADMIN, group="pair",
                format="csv", **span)
    assert r.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(r.text)))
    assert lines[0] == ["acquirer_city", "issuer_city", "record_count",
                        "amount_fen"]
    assert lines[1] == ["Kunshan", "Shanghai", "2", "800"]


def test_year_on_year(api: Api) -> None:
    this, last = "2090-03-15", "2089-03-20"
    _report(api, TC_ADMIN, this, _record("Kunshan", 900, f"{this}T08:00:00Z"),
            _record("Kunshan", 100, f"{this}T09:00:00Z"))
    _report(api, TC_ADMIN, last, _record("Kunshan", 400, f"{last}T08:00:00Z"))
    api.sync()
    rows = _rows(api, "year-on-year", year=2090, city="Taicang")
    assert len(rows) == 12 and rows[2] == {
        "month": "2090-03", "record_count": 2, "amount_fen": 1000,
        "previous_record_count": 1, "previous_amount_fen": 400}
    assert rows[3]["record_count"] == rows[3]["previous_record_count"] == 0


def test_statistics_are_for_leaders(api: Api) -> None:
    for who in (KS_ADMIN, KS_AUDITOR, CENTER_ADMIN):
        assert api.get("/api/statistics/peak-days", who).status_code == 200
    problem(api.get("/api/statistics/peak-days", KS_TRANSPORT), 403, "role")
    problem(api.get("/api/statistics/volume", CENTER_ADMIN, group="city"), 422,
            "group")


def _alerts(api: Api, who: Who = CENTER_ADMIN, **params: Any
            ) -> list[dict[str, Any]]:
    r = api.get("/api/risk-alerts", who, limit=500, **params)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_impossible_travel_is_flagged_with_both_records(api: Api) -> None:
    day, card = new_day(), unique_hash()
    first = _record("Taicang", 300, f"{day}T08:00:00Z", card_id_hash=card)
    _report(api, KS_ADMIN, day, first)
    second = _record("Taicang", 400, f"{day}T08:12:00Z", card_id_hash=card)
    batch = _report(api, SH_ADMIN, day, second)
    far = _record("Taicang", 500, f"{day}T12:00:00Z", card_id_hash=card)
    _report(api, KS_ADMIN, day, far)  # four hours later: plausible
    api.sync()
    found = [a for a in _alerts(api, kind="impossible_travel", business_day=day)
             if a["subject"] == card]
    assert len(found) == 1
    alert = found[0]
    assert alert["acquirer_city"] == "Shanghai" and batch in alert["id"]
    assert [(r["record_id"], r["city"]) for r in alert["records"]] == [
        (second["record_id"], "Shanghai"), (first["record_id"], "Kunshan")]
    # the issuer city sees it; an uninvolved city's admin may not ask for it
    assert any(a["id"] == alert["id"]
               for a in _alerts(api, TC_ADMIN, business_day=day))
    problem(api.get("/api/risk-alerts", KS_ADMIN, city="Taicang"), 403, "city")


def test_terminal_repeat_is_flagged(api: Api) -> None:
    day, card = new_day(), unique_hash()
    base = {"card_id_hash": card, "terminal_id": "KS-GATE-9"}
    a = _record("Shanghai", 250, f"{day}T07:30:00Z", **base)
    b = _record("Shanghai", 250, f"{day}T07:30:04Z", **base)
    c = _record("Shanghai", 260, f"{day}T07:30:06Z", **base)  # another amount
    _report(api, KS_ADMIN, day, a, b, c)
    api.sync()
    found = [x for x in _alerts(api, kind="terminal_repeat", business_day=day)
             if x["subject"] == "KS-GATE-9"]
    assert len(found) == 1
    assert {r["record_id"] for r in found[0]["records"]} == {a["record_id"],
                                                             b["record_id"]}


def test_unusual_amount_for_its_scene_is_flagged(api: Api) -> None:
    day = new_day()
    usual = [_record("Shanghai", 400 + i % 50, f"{day}T06:{i % 60:02d}:00Z",
                     scene="ferry") for i in range(120)]
    _report(api, KS_ADMIN, day, *usual)
    odd = _record("Shanghai", 90_000, f"{day}T09:00:00Z", scene="ferry")
    fine = _record("Shanghai", 430, f"{day}T09:01:00Z", scene="ferry")
    _report(api, KS_ADMIN, day, odd, fine)
    api.sync()
    found = _alerts(api, kind="unusual_amount", business_day=day)
    assert [a["records"][0]["record_id"] for a in found] == [odd["record_id"]]
    assert "ferry" in found[0]["detail"]
