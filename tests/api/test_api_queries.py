"""Every query endpoint: filters, pagination, one-item reads, city scoping and
bad inputs. Queries read the projections, never the ledger."""

from __future__ import annotations

import uuid

import pytest
from apikit import (
    CENTER_ADMIN,
    CENTER_AUDITOR,
    KS_ADMIN,
    KS_AUDITOR,
    KS_TERMINAL,
    KS_TRANSPORT,
    SH_ADMIN,
    Api,
    name,
    problem,
)
from fastapi.testclient import TestClient

MISSING = str(uuid.UUID(int=9))


class NoLedger:
    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"a query used the ledger ({name})")


def test_reads_do_not_touch_the_ledger(api: Api,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    api.identifier()
    api.sync()
    api.headers(CENTER_ADMIN)  # its token enrols an identity: before the patch
    monkeypatch.setattr(api.runtime, "gateway", NoLedger())
    for path in ("/api/identifiers", "/api/departments", "/api/code-schemes",
                 "/api/card-batches", "/api/card-volumes", "/api/clearing-runs",
                 "/api/blocks", "/api/dashboard/summary", "/api/projections",
                 "/api/settlements", "/api/disputes", "/api/card-blacklist/delta",
                 "/api/me"):
        assert api.get(path, CENTER_ADMIN).status_code == 200, path
    # The audit reads do use it; the failure is a problem+json 500, no traceback.
    quiet = TestClient(api.client.app, raise_server_exceptions=False)
    r = quiet.get("/api/ledger/blocks/1", headers=api.headers(CENTER_ADMIN))
    assert "Traceback" not in problem(r, 500)["detail"]


def test_list_identifiers_filters_and_pages(api: Api) -> None:
    scheme = name("s")
    ids = [api.identifier("place", scheme=scheme) for _ in range(3)]
    api.identifier("person", SH_ADMIN, scheme=scheme)
    api.sync()
    page = api.get("/api/identifiers", KS_ADMIN, scheme=scheme).json()
    assert page["total"] == 3 and {i["id"] for i in page["items"]} == set(ids)
    first = api.get("/api/identifiers", CENTER_ADMIN, scheme=scheme, limit=2).json()
    rest = api.get("/api/identifiers", CENTER_ADMIN, scheme=scheme, limit=2,
                   offset=2).json()
    assert first["total"] == rest["total"] == 4
    assert len(first["items"]) == 2 and len(rest["items"]) == 2
    assert not {i["id"] for i in first["items"]} & {i["id"] for i in rest["items"]}
    shanghai = api.get("/api/identifiers", CENTER_AUDITOR, scheme=scheme,
                       city="Shanghai").json()
    assert [i["city"] for i in shanghai["items"]] == ["Shanghai"]
    kinds = api.get("/api/identifiers", KS_TERMINAL, scheme=scheme, kind="place",
                    status="active").json()
    assert kinds["total"] == 3


def test_identifier_reads_bad_inputs(api: Api) -> None:
    problem(api.get("/api/identifiers", KS_ADMIN, limit=0), 422, "limit")
    problem(api.get("/api/identifiers", KS_ADMIN, limit=501), 422, "limit")
    problem(api.get("/api/identifiers", KS_ADMIN, offset=-1), 422, "offset")
    body = problem(api.get("/api/identifiers", KS_ADMIN, kind="car"), 422, "kind")
    assert "person" in body["accepted"]
    body = problem(api.get("/api/identifiers", KS_ADMIN, city="Shanghai"), 403,
                   "city")
    assert body["accepted"] == "Kunshan"
    problem(api.get(f"/api/identifiers/{MISSING}", KS_ADMIN), 404, "identifier_id")
    problem(api.get("/api/identifiers/nope", KS_ADMIN), 422, "identifier_id")
    other = api.identifier("person", SH_ADMIN)
    api.sync()
    problem(api.get(f"/api/identifiers/{other}", KS_TRANSPORT), 403,
            "identifier_id")
    assert api.get(f"/api/identifiers/{other}", KS_AUDITOR).status_code == 200


def test_departments_reads(api: Api) -> None:
    api.sync()
    page = api.get("/api/departments", KS_TRANSPORT).json()
    assert {d["city"] for d in page["items"]} == {"Kunshan"}
    transport = next(d for d in page["items"] if d["code"] == "transport")
    assert transport["duties"] == ["payment", "transport"]
    every = api.get("/api/departments", CENTER_ADMIN, limit=500).json()
    assert {d["city"] for d in every["items"]} >= {"Kunshan", "Shanghai", "Taicang"}
    got = api.get(f"/api/departments/{transport['id']}", KS_ADMIN).json()
    assert got == transport
    problem(api.get(f"/api/departments/{transport['id']}", SH_ADMIN), 403)
    problem(api.get(f"/api/departments/{MISSING}", KS_ADMIN), 404, "department_id")
    problem(api.get("/api/departments", KS_ADMIN, city="bad city"), 422, "city")


def test_code_scheme_reads(api: Api) -> None:
    approved = api.scheme()
    api.ok(f"/api/code-schemes/{approved}/approve", None, KS_ADMIN, 200)
    applied = api.scheme()
    api.sync()
    page = api.get("/api/code-schemes", KS_ADMIN, status="approved",
                   department="transport", limit=500).json()
    assert approved in {s["id"] for s in page["items"]}
    assert applied not in {s["id"] for s in page["items"]}
    assert all(s["status"] == "approved" for s in page["items"])
    got = api.get(f"/api/code-schemes/{applied}", KS_TRANSPORT).json()
    assert got["checks"] is None and got["decided_at"] is None
    problem(api.get("/api/code-schemes", KS_ADMIN, status="done"), 422, "status")
    problem(api.get(f"/api/code-schemes/{MISSING}", KS_ADMIN), 404, "scheme_id")
    problem(api.get(f"/api/code-schemes/{applied}", SH_ADMIN), 403)


def test_card_batch_reads_scoped_to_involved_cities(api: Api) -> None:
    batch, _, day = api.batch(SH_ADMIN, ("Kunshan", "Taicang"))
    api.sync()
    for who in (KS_ADMIN, SH_ADMIN, CENTER_AUDITOR):
        page = api.get("/api/card-batches", who, business_day=day).json()
        assert [b["id"] for b in page["items"]] == [batch], who
    assert api.get("/api/card-batches", KS_ADMIN, business_day=day,
                   acquirer_city="Kunshan").json()["total"] == 0
    assert api.get(f"/api/card-batches/{batch}", KS_TERMINAL).status_code == 200
    only_sh, _, day2 = api.batch(SH_ADMIN, ("Taicang",))
    api.sync()
    problem(api.get(f"/api/card-batches/{only_sh}", KS_ADMIN), 403, "batch_id")
    assert api.get("/api/card-batches", KS_ADMIN, business_day=day2).json()[
        "total"] == 0
    problem(api.get(f"/api/card-batches/{MISSING}", KS_ADMIN), 404, "batch_id")
    problem(api.get("/api/card-batches", KS_ADMIN, business_day="2031-13-01"),
            422, "business_day")
    problem(api.get("/api/card-batches", KS_ADMIN, city="Taicang"), 403, "city")


def test_card_volumes(api: Api) -> None:
    _, records, day = api.batch(KS_ADMIN, ("Shanghai", "Shanghai", "Taicang"))
    api.sync()
    page = api.get("/api/card-volumes", CENTER_ADMIN, **{"from": day, "to": day})
    rows = {(v["acquirer_city"], v["issuer_city"]): v for v in page.json()["items"]}
    assert set(rows) == {("Kunshan", "Shanghai"), ("Kunshan", "Taicang")}
    assert rows["Kunshan", "Shanghai"]["record_count"] == 2
    assert rows["Kunshan", "Shanghai"]["amount_fen"] == sum(
        r["amount_fen"] for r in records[:2])
    only = api.get("/api/card-volumes", SH_ADMIN, **{"from": day, "to": day}).json()
    assert [v["issuer_city"] for v in only["items"]] == ["Shanghai"]
    assert api.get("/api/card-volumes", CENTER_ADMIN, issuer_city="Taicang",
                   **{"from": day, "to": day}).json()["total"] == 1
    problem(api.get("/api/card-volumes", KS_ADMIN, **{"from": "yesterday"}), 422,
            "from")


def test_clearing_run_reads(api: Api) -> None:
    _, _, day = api.batch(issuers=("Taicang",), amount=700)
    api.ok("/api/clearing-runs", {"business_day": day}, CENTER_ADMIN)
    api.sync()
    page = api.get("/api/clearing-runs", KS_TERMINAL, **{"from": day}).json()
    assert page["items"][-1]["business_day"] == day
    got = api.get(f"/api/clearing-runs/{day}", KS_TERMINAL).json()
    assert sum(p["net_fen"] for p in got["positions"]) == 0
    problem(api.get("/api/clearing-runs", KS_ADMIN, to="31.12.2031"), 422, "to")
    problem(api.get("/api/clearing-runs/2031-99-01", KS_ADMIN), 422, "business_day")
    problem(api.get("/api/clearing-runs/1999-01-01", KS_ADMIN), 404, "business_day")


def test_blocks_read_model(api: Api) -> None:
    api.identifier()
    api.sync()
    height = api.height()
    page = api.get("/api/blocks", KS_TERMINAL, limit=3).json()
    assert page["total"] == height
    assert [b["number"] for b in page["items"]] == [height - 1, height - 2,
                                                    height - 3]
    newest, before = page["items"][0], page["items"][1]
    assert newest["previous_hash"] == before["hash"] and newest["verified"] is True
    got = api.get(f"/api/blocks/{height - 1}", KS_TERMINAL).json()
    assert got == newest
    assert api.get("/api/blocks", KS_ADMIN, verified=False).json()["total"] == 0
    problem(api.get(f"/api/blocks/{height + 100}", KS_ADMIN), 404, "number")
    problem(api.get("/api/blocks/-1", KS_ADMIN), 422, "number")
    problem(api.get("/api/blocks", KS_ADMIN, verified="maybe"), 422, "verified")


def test_dashboard_summary(api: Api) -> None:
    _, records, day = api.batch(issuers=("Shanghai", "Taicang"), amount=500)
    api.ok("/api/clearing-runs", {"business_day": day}, CENTER_ADMIN)
    api.sync()
    s = api.get("/api/dashboard/summary", CENTER_ADMIN, days=366).json()
    assert set(s) >= {"volume_per_day", "city_pair_flows", "net_positions",
                      "code_schemes_by_status", "identifiers_by_kind",
                      "latest_blocks", "projection", "latest_clearing"}
    today = next(v for v in s["volume_per_day"] if v["business_day"] == day)
    assert today == {"business_day": day, "record_count": 2,
                     "amount_fen": sum(r["amount_fen"] for r in records)}
    assert {(f["acquirer_city"], f["issuer_city"]) for f in s["city_pair_flows"]} >= {
        ("Kunshan", "Shanghai"), ("Kunshan", "Taicang")}
    assert sum(p["net_fen"] for p in s["net_positions"]) == 0
    assert s["latest_clearing"]["business_day"] >= day
    assert len(s["latest_blocks"]) == 10 and all(
        b["verified"] for b in s["latest_blocks"])
    assert s["projection"]["behind_blocks"] == 0 and s["projection"]["running"]
    assert s["projection"]["projected_block"] == api.height() - 1
    assert any(k["kind"] == "person" for k in s["identifiers_by_kind"])
    assert api.get("/api/dashboard/summary", KS_ADMIN, blocks=2).json()[
        "latest_blocks"].__len__() == 2
    problem(api.get("/api/dashboard/summary", KS_ADMIN, days=0), 422, "days")
    problem(api.get("/api/dashboard/summary", KS_TRANSPORT), 403, "role")


def test_system_endpoints(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    me = api.get("/api/me", KS_TRANSPORT).json()
    assert (me["city"], me["role"], me["department"]) == ("Kunshan", "department",
                                                          "transport")
    assert me["sees_every_city"] is False
    problem(api.client.get("/api/projections"), 401, "Authorization")
    status = api.get("/api/projections", KS_TERMINAL).json()
    assert set(status["positions"]) == {"identifiers", "code_schemes",
                                        "card_transactions", "clearing",
                                        "card_blacklist", "card_analytics",
                                        "blocks", "video_alerts", "call_campaigns",
                                        "code_usage"}
    problem(api.client.get("/api/nothing-here"), 404)
    problem(api.client.delete("/api/identifiers"), 405)
    docs = api.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "/api/dashboard/summary" in api.client.get("/openapi.json").json()[
        "paths"]
