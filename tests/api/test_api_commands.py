"""Every command endpoint: its happy path (receipt, then the projected view)
and its bad inputs (problem+json naming the field)."""

from __future__ import annotations

import uuid

import pytest
from apikit import (
    CENTER_ADMIN,
    KS_ADMIN,
    KS_TERMINAL,
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

from chaincode.merkle import merkle_root

MISSING = str(uuid.UUID(int=7))


def person(**over: object) -> dict[str, object]:
    return {"kind": "person", "category": "identity", "scheme": "cn-id",
            "natural_key_hash": unique_hash(), **over}


# ----------------------------------------------------------------- identifiers
def test_register_identifier(api: Api) -> None:
    out = api.ok("/api/identifiers", person(attributes="c2VjcmV0"), KS_TRANSPORT)
    assert out["status"] == "VALID" and out["block_number"] > 0
    assert len(out["tx_id"]) == 64
    [ev] = out["events"]
    assert ev["type"] == "IdentifierRegistered" and ev["version"] == 1
    api.sync()
    got = api.get(f"/api/identifiers/{out['result']['id']}", KS_TRANSPORT).json()
    assert got["city"] == "Kunshan" and got["status"] == "active"
    assert got["has_attributes"] is True and got["links"] == []
    assert got["registered_by"] == "Kunshan:department/transport"


def test_register_identifier_bad_inputs(api: Api) -> None:
    problem(api.post("/api/identifiers", person(kind="car"), KS_TRANSPORT), 422,
            "kind")
    problem(api.post("/api/identifiers", person(natural_key_hash="xyz"),
                     KS_TRANSPORT), 422, "natural_key_hash")
    problem(api.post("/api/identifiers", person(colour="red"), KS_TRANSPORT), 422,
            "colour")
    body = problem(api.post("/api/identifiers", person(attributes="not base64!"),
                            KS_TRANSPORT), 422, "attributes")
    assert body["detail"] == ("attributes: must be base64 ciphertext (SM4, made by "
                              "the client)")
    dup = person()
    api.ok("/api/identifiers", dup, KS_TRANSPORT)
    problem(api.post("/api/identifiers", dup, KS_TRANSPORT), 409,
            "natural_key_hash")
    r = api.client.post("/api/identifiers", content=b"{not json",
                        headers={**api.headers(KS_TRANSPORT),
                                 "content-type": "application/json"})
    problem(r, 422)


def test_link_identifier_activates_object(api: Api) -> None:
    obj, org, place = (api.identifier("object", scheme="asset"),
                       api.identifier("organisation", scheme="uscc"),
                       api.identifier("place", scheme="poi"))
    api.ok(f"/api/identifiers/{obj}/links", {"target_id": place,
                                             "relation": "attached"}, KS_TRANSPORT)
    out = api.ok(f"/api/identifiers/{obj}/links", {
        "target_id": org, "relation": "organisation"}, KS_ADMIN)
    assert [e["type"] for e in out["events"]] == ["IdentifierLinked",
                                                  "IdentifierActivated"]
    api.sync()
    got = api.get(f"/api/identifiers/{obj}", KS_ADMIN).json()
    assert got["status"] == "active" and got["version"] == 4
    assert {(ln["target_id"], ln["relation"]) for ln in got["links"]} == {
        (place, "attached"), (org, "organisation")}
    back = api.get(f"/api/identifiers/{org}", KS_ADMIN).json()["linked_from"]
    assert [(b["identifier_id"], b["relation"]) for b in back] == [
        (obj, "organisation")]


def test_link_identifier_bad_inputs(api: Api) -> None:
    obj = api.identifier("object", scheme="asset")
    path = f"/api/identifiers/{obj}/links"
    problem(api.post(path, {"target_id": obj, "relation": "owns"}, KS_TRANSPORT),
            422, "relation")
    problem(api.post(path, {"target_id": "nope", "relation": "attached"},
                     KS_TRANSPORT), 422, "target_id")
    problem(api.post(path, {"target_id": MISSING, "relation": "attached"},
                     KS_TRANSPORT), 404, "target_id")
    problem(api.post(path, {"target_id": obj, "relation": "attached"},
                     KS_TRANSPORT), 400, "target_id")
    problem(api.post("/api/identifiers/123/links", {
        "target_id": obj, "relation": "attached"}, KS_TRANSPORT), 422,
        "identifier_id")
    problem(api.post(f"/api/identifiers/{obj}/links", {
        "target_id": api.identifier("place", scheme="poi"),
        "relation": "attached"}, SH_ADMIN), 403)  # the chaincode: not Shanghai's


def test_revoke_identifier(api: Api) -> None:
    ident = api.identifier()
    out = api.ok(f"/api/identifiers/{ident}/revoke", {"reason": "duplicate"},
                 KS_TRANSPORT, 200)
    assert out["events"][0]["type"] == "IdentifierRevoked"
    api.sync()
    got = api.get(f"/api/identifiers/{ident}", KS_TRANSPORT).json()
    assert (got["status"], got["revoked_reason"]) == ("revoked", "duplicate")


def test_revoke_identifier_bad_inputs(api: Api) -> None:
    ident = api.identifier()
    path = f"/api/identifiers/{ident}/revoke"
    problem(api.post(path, {}, KS_TRANSPORT), 422, "reason")
    problem(api.post(path, {"reason": ""}, KS_TRANSPORT), 422, "reason")
    problem(api.post(path, {"reason": "x"}, SH_ADMIN), 403)
    problem(api.post(f"/api/identifiers/{MISSING}/revoke", {"reason": "x"},
                     KS_TRANSPORT), 404)
    api.ok(path, {"reason": "x"}, KS_TRANSPORT, 200)
    problem(api.post(path, {"reason": "again"}, KS_TRANSPORT), 409)


# ------------------------------------------------------------ departments
def test_register_department(api: Api) -> None:
    code = name("water")
    out = api.ok("/api/departments", {"code": code, "name": "Water affairs",
                                      "duties": ["water", "water"]}, TC_ADMIN)
    api.sync()
    got = api.get(f"/api/departments/{out['result']['id']}", TC_ADMIN).json()
    assert (got["city"], got["code"], got["duties"]) == ("Taicang", code, ["water"])


def test_register_department_bad_inputs(api: Api) -> None:
    body = {"code": "transport", "name": "Again", "duties": ["transport"]}
    problem(api.post("/api/departments", body, KS_ADMIN), 409, "code")
    problem(api.post("/api/departments", {**body, "duties": []}, KS_ADMIN), 422,
            "duties")
    problem(api.post("/api/departments", {**body, "duties": ["Bad Type"]},
                     KS_ADMIN), 422, "duties.0")
    problem(api.post("/api/departments", {**body, "code": "-x"}, KS_ADMIN), 422,
            "code")


# ------------------------------------------------------------ code schemes
def test_apply_approve_reject_code_schemes(api: Api) -> None:
    applied = api.scheme()
    out = api.ok(f"/api/code-schemes/{applied}/approve", None, CENTER_ADMIN, 200)
    assert out["result"]["checks"] == {"duty": True, "duplicate": True,
                                       "sharing": True}
    other = api.scheme()
    api.ok(f"/api/code-schemes/{other}/reject", {"reason": "scope too wide"},
           KS_ADMIN, 200)
    api.sync()
    got = api.get(f"/api/code-schemes/{applied}", KS_TRANSPORT).json()
    assert got["status"] == "approved" and got["checks"]["duty"] is True
    assert got["decided_by"] == "Center:center_admin"
    got = api.get(f"/api/code-schemes/{other}", KS_TRANSPORT).json()
    assert (got["status"], got["reason"]) == ("rejected", "scope too wide")


def test_code_scheme_bad_inputs(api: Api) -> None:
    body = {"application_name": name("a"), "code_type": "transport",
            "scope": "Kunshan", "data_sharing_commitment": True}
    problem(api.post("/api/code-schemes", {**body, "code_type": "Bus!"},
                     KS_TRANSPORT), 422, "code_type")
    problem(api.post("/api/code-schemes", {k: v for k, v in body.items()
                                           if k != "scope"}, KS_TRANSPORT),
            422, "scope")
    # a department that is not registered in the city: the chaincode refuses
    problem(api.post("/api/code-schemes", body, ("Kunshan", "department",
                                                 name("ghost"))), 403)
    failing = api.scheme(code_type="parking")  # not a duty of transport
    r = api.post(f"/api/code-schemes/{failing}/approve", None, CENTER_ADMIN)
    assert "duty" in problem(r, 409, "scheme_id")["detail"]
    problem(api.post(f"/api/code-schemes/{MISSING}/approve", None, KS_ADMIN), 404)
    problem(api.post(f"/api/code-schemes/{failing}/approve", None, SH_ADMIN), 403)
    problem(api.post(f"/api/code-schemes/{failing}/reject", {}, KS_ADMIN), 422,
            "reason")
    api.ok(f"/api/code-schemes/{failing}/reject", {"reason": "no duty"}, KS_ADMIN,
           200)
    problem(api.post(f"/api/code-schemes/{failing}/reject", {"reason": "again"},
                     KS_ADMIN), 409, "scheme_id")


# ------------------------------------------------ cross-city card transactions
def test_report_confirm_dispute_batch(api: Api) -> None:
    batch, records, day = api.batch(KS_TERMINAL,
                                    ("Shanghai", "Shanghai", "Taicang"))
    api.ok(f"/api/card-batches/{batch}/dispute", {
        "record_ids": [records[0]["record_id"]], "reason": "double charge"},
        SH_ADMIN, 200)
    out = api.ok(f"/api/card-batches/{batch}/confirm", {}, SH_ADMIN, 200)
    assert out["result"]["confirmed"] == 1
    api.ok(f"/api/card-batches/{batch}/confirm", {
        "record_ids": [records[2]["record_id"]]}, TC_ADMIN, 200)
    api.sync()
    got = api.get(f"/api/card-batches/{batch}", KS_ADMIN).json()
    assert (got["record_count"], got["confirmed_count"], got["disputed_count"]) == (
        3, 2, 1)
    assert got["merkle_root"] == merkle_root(records)
    assert {(i["issuer_city"], i["status"], i["record_count"])
            for i in got["issuers"]} == {("Shanghai", "confirmed", 1),
                                         ("Shanghai", "disputed", 1),
                                         ("Taicang", "confirmed", 1)}
    vols = api.get("/api/card-volumes", KS_ADMIN, **{"from": day, "to": day})
    by_issuer = {v["issuer_city"]: v for v in vols.json()["items"]}
    assert by_issuer["Shanghai"]["disputed_fen"] == records[0]["amount_fen"]
    assert by_issuer["Shanghai"]["confirmed_fen"] == records[1]["amount_fen"]


def test_report_batch_bad_inputs(api: Api) -> None:
    day = new_day()
    rec = card_record(name("r"), "Shanghai")
    body = {"business_day": day, "records": [rec]}
    problem(api.post("/api/card-batches", {**body, "merkle_root": "0" * 64},
                     KS_ADMIN), 400, "merkle_root")
    problem(api.post("/api/card-batches", {**body, "records": [
        card_record(name("r"), "Kunshan")]}, KS_ADMIN), 400,
        "records.0.issuer_city")
    problem(api.post("/api/card-batches", {**body, "records": [
        {**rec, "amount_fen": 0}]}, KS_ADMIN), 422, "records.0.amount_fen")
    problem(api.post("/api/card-batches", {**body, "records": []}, KS_ADMIN), 422,
            "records")
    problem(api.post("/api/card-batches", {**body, "business_day": "20-1-1"},
                     KS_ADMIN), 422, "business_day")
    api.ok("/api/card-batches", body, KS_ADMIN)
    problem(api.post("/api/card-batches", {**body, "records": [
        rec, card_record(name("r"), "Taicang")]}, KS_ADMIN), 409,
        "records.0.record_id")


def test_confirm_dispute_bad_inputs(api: Api) -> None:
    batch, records, _ = api.batch()
    rid = records[0]["record_id"]
    path = f"/api/card-batches/{batch}"
    problem(api.post(f"{path}/confirm", {"record_ids": [rid]}, TC_ADMIN), 403,
            "record_ids")
    problem(api.post(f"{path}/confirm", {"record_ids": ["no such"]}, SH_ADMIN),
            422, "record_ids.0")
    problem(api.post(f"/api/card-batches/{MISSING}/confirm", {}, SH_ADMIN), 404)
    problem(api.post(f"{path}/dispute", {"record_ids": [], "reason": "x"},
                     SH_ADMIN), 422, "record_ids")
    problem(api.post(f"{path}/dispute", {"record_ids": [rid]}, SH_ADMIN), 422,
            "reason")
    api.ok(f"{path}/confirm", {}, SH_ADMIN, 200)
    problem(api.post(f"{path}/dispute", {"record_ids": [rid], "reason": "late"},
                     SH_ADMIN), 409, "record_ids")


# ------------------------------------------------------------------- clearing
def test_run_clearing(api: Api) -> None:
    batch, records, day = api.batch(issuers=("Shanghai", "Taicang"), amount=1000)
    api.ok(f"/api/card-batches/{batch}/dispute", {
        "record_ids": [records[1]["record_id"]], "reason": "unknown card"},
        TC_ADMIN, 200)
    out = api.ok("/api/clearing-runs", {"business_day": day}, CENTER_ADMIN)
    assert out["result"]["positions"] == {"Kunshan": 1000, "Shanghai": -1000,
                                          "Taicang": 0}
    api.sync()
    got = api.get(f"/api/clearing-runs/{day}", KS_ADMIN).json()
    assert (got["record_count"], got["excluded_disputed"], got["gross_fen"]) == (
        1, 1, 1000)
    assert {p["city"]: p["net_fen"] for p in got["positions"]} == out["result"][
        "positions"]


def test_run_clearing_bad_inputs(api: Api) -> None:
    problem(api.post("/api/clearing-runs", {"business_day": "tomorrow"},
                     CENTER_ADMIN), 422, "business_day")
    problem(api.post("/api/clearing-runs", {"business_day": "2031-02-30"},
                     CENTER_ADMIN), 422, "business_day")
    day = new_day()
    api.ok("/api/clearing-runs", {"business_day": day}, CENTER_ADMIN)
    problem(api.post("/api/clearing-runs", {"business_day": day}, CENTER_ADMIN),
            409, "business_day")
    rec = card_record(name("r"), "Shanghai")
    problem(api.post("/api/card-batches", {"business_day": day, "records": [rec]},
                     KS_ADMIN), 409, "business_day")


# ------------------------------------------------ text no store can hold
# Each command body with one text field set to TEXT, sent as raw JSON so that
# the escapes reach the API as written: NUL and unpaired surrogates.
UNSTORABLE_BODIES = [
    ("/api/departments", KS_ADMIN, "name",
     '{"code": "d-nul", "name": TEXT, "duties": ["water"]}'),
    ("/api/departments", KS_ADMIN, "code",
     '{"code": TEXT, "name": "Water", "duties": ["water"]}'),
    (f"/api/identifiers/{MISSING}/revoke", KS_TRANSPORT, "reason",
     '{"reason": TEXT}'),
    ("/api/identifiers", KS_TRANSPORT, "attributes",
     '{"kind": "person", "category": "identity", "scheme": "cn-id", '
     f'"natural_key_hash": "{"ab" * 32}", "attributes": TEXT}}'),
    (f"/api/code-schemes/{MISSING}/reject", KS_ADMIN, "reason", '{"reason": TEXT}'),
    (f"/api/card-batches/{MISSING}/dispute", SH_ADMIN, "reason",
     '{"record_ids": ["s1"], "reason": TEXT}'),
    (f"/api/card-batches/{MISSING}/confirm", SH_ADMIN, "record_ids.0",
     '{"record_ids": [TEXT]}'),
    ("/api/code-schemes", KS_TRANSPORT, "application_name",
     '{"application_name": TEXT, "code_type": "transport", "scope": "s", '
     '"data_sharing_commitment": true}'),
]
FREE_TEXT = {"name", "reason", "attributes"}  # names are refused by their pattern


@pytest.mark.parametrize("text", [r'"a\u0000b"', r'"\u0000"', r'"a\ud800b"',
                                  r'"\udfff"', r'"c2Vj\u0000"'])
@pytest.mark.parametrize(("path", "who", "field", "body"), UNSTORABLE_BODIES,
                         ids=[f"{b[0].split('/')[2]}-{b[2]}"
                              for b in UNSTORABLE_BODIES])
def test_text_no_store_can_hold_is_refused(api: Api, path: str, who: Who,
                                           field: str, body: str,
                                           text: str) -> None:
    height = api.height()
    r = api.client.post(path, content=body.replace("TEXT", text), headers={
        **api.headers(who), "content-type": "application/json"})
    found = problem(r, 422, field)
    if field in FREE_TEXT:
        assert "NUL (U+0000) or an unpaired surrogate" in found["detail"]
    assert api.height() == height  # nothing reached the ledger


# ------------------------------------------------- unregistered departments
def test_unregistered_department_may_call_no_command(api: Api) -> None:
    ghost: Who = ("Kunshan", "department", name("ghost"))
    obj, org = api.identifier("object"), api.identifier("organisation")
    height = api.height()
    for path, body in (
            ("/api/identifiers", person()),
            (f"/api/identifiers/{obj}/links", {"target_id": org,
                                               "relation": "organisation"}),
            (f"/api/identifiers/{obj}/revoke", {"reason": "duplicate"}),
            ("/api/code-schemes", {"application_name": name("app"),
                                   "code_type": "transport", "scope": name("s"),
                                   "data_sharing_commitment": True})):
        found = problem(api.post(path, body, ghost), 403)
        assert found["detail"] == f"department {ghost[2]} is not registered in Kunshan"
    assert api.height() == height
