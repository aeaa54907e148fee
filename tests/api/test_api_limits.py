"""Bounds on what a request may carry, each refused with a problem naming the
field: integers beyond 64 bits, bodies over their operation's limit (413,
before the body is parsed), long or repeated lists, long strings, deep
nesting."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from apikit import (
    CENTER_ADMIN,
    CENTER_AUDITOR,
    KS_ADMIN,
    SH_ADMIN,
    Api,
    new_day,
    problem,
)
from helpers import card_record

from api.limits import DEFAULT_MAX_BODY
from api.routers.card_batches import MAX_BODY
from chaincode.contract import MAX_BATCH_RECORDS
from chaincode.errors import InvalidArgument

HUGE = 2**64  # beyond what SQL stores


def test_integers_beyond_64_bits_are_refused(api: Api) -> None:
    for path, field, who in [("/api/identifiers?offset=", "offset", KS_ADMIN),
                             ("/api/blocks?offset=", "offset", KS_ADMIN),
                             ("/api/blocks/", "number", KS_ADMIN),
                             ("/api/ledger/blocks/", "number", CENTER_AUDITOR),
                             ("/api/ledger/verify?from=", "from", CENTER_AUDITOR),
                             ("/api/ledger/verify?to=", "to", CENTER_AUDITOR)]:
        body = problem(api.client.get(f"{path}{HUGE}", headers=api.headers(who)),
                       422, field)
        assert body["accepted"] == f"<= {2**63 - 1}"
    # the largest one is a number like any other: not there
    problem(api.get(f"/api/blocks/{2**63 - 1}", KS_ADMIN), 404, "number")
    problem(api.get(f"/api/ledger/blocks/{2**63 - 1}", CENTER_AUDITOR), 404,
            "number")
    assert api.get("/api/identifiers", KS_ADMIN,
                   offset=2**63 - 1).json()["items"] == []


def test_a_body_over_the_limit_is_refused_before_it_is_read(api: Api) -> None:
    too_big = b"[" + b" " * DEFAULT_MAX_BODY + b"]"
    r = api.client.post("/api/departments", content=too_big, headers={
        **api.headers(KS_ADMIN), "content-type": "application/json"})
    body = problem(r, 413, "body")
    assert body["accepted"] == f"at most {DEFAULT_MAX_BODY:,} bytes"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it comes
        yield b'{"code": "x", "name": "y", "duties": ["transport"], "pad": "'
        for _ in range(DEFAULT_MAX_BODY // 65536 + 1):
            yield b"x" * 65536
        yield b'"}'

    r = api.client.post("/api/departments", content=chunks(), headers={
        **api.headers(KS_ADMIN), "content-type": "application/json"})
    problem(r, 413, "body")


def test_a_chunked_body_under_the_limit_is_read(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"code": "c'
        yield b'hunked", "name": "Chunked", "duties": ["transport"]}'

    r = api.client.post("/api/departments", content=chunks(), headers={
        **api.headers(SH_ADMIN), "content-type": "application/json"})
    assert r.status_code in (201, 409), r.text  # 409: an earlier session's


def largest_batch(count: int, day: str = "2031-02-30") -> dict[str, Any]:
    """A batch whose every field is as long as the contract allows."""
    records = [card_record(f"{i:0>64}", "Shanghai", 100_000_000,
                           "2031-01-01T00:00:00.123456Z", "t" * 64)
               for i in range(count)]
    for r in records:
        r["issuer_city"] = "c" * 64
    return {"business_day": day, "records": records}


def test_a_full_card_batch_fits_its_limit(api: Api) -> None:
    """10,000 records with the longest ids, indented, are under the card
    batches' limit (and over everyone else's): the body is parsed and
    validated (here refused for its impossible day, before the ledger)."""
    text = json.dumps(largest_batch(MAX_BATCH_RECORDS), indent=4).encode()
    assert DEFAULT_MAX_BODY < len(text) < MAX_BODY
    r = api.client.post("/api/card-batches", content=text, headers={
        **api.headers(KS_ADMIN), "content-type": "application/json"})
    problem(r, 422, "business_day")
    r = api.client.post("/api/departments", content=text, headers={
        **api.headers(KS_ADMIN), "content-type": "application/json"})
    problem(r, 413, "body")
    over = json.dumps(largest_batch(MAX_BATCH_RECORDS + 1, new_day())).encode()
    r = api.client.post("/api/card-batches", content=over, headers={
        **api.headers(KS_ADMIN), "content-type": "application/json"})
    body = problem(r, 422, "records")
    assert body["accepted"] == f"at most {MAX_BATCH_RECORDS} long"


def test_record_ids_are_bounded_and_distinct(api: Api) -> None:
    batch, records, _ = api.batch(issuers=("Shanghai", "Shanghai"))
    rid = records[0]["record_id"]
    path = f"/api/card-batches/{batch}"
    body = problem(api.post(f"{path}/confirm", {
        "record_ids": [rid] * (MAX_BATCH_RECORDS + 1)}, SH_ADMIN), 422, "record_ids")
    assert body["accepted"] == f"at most {MAX_BATCH_RECORDS} long"
    problem(api.post(f"{path}/confirm", {"record_ids": [rid] * 100_000}, SH_ADMIN),
            413, "body")
    body = problem(api.post(f"{path}/dispute", {"record_ids": [rid, rid],
                                                "reason": "twice"}, SH_ADMIN),
                   422, "record_ids")
    assert "listed twice" in body["detail"]
    out = api.ok(f"{path}/confirm", {"record_ids": [rid]}, SH_ADMIN, 200)
    assert out["result"]["confirmed"] == 1


def test_the_contract_bounds_record_ids_too(api: Api) -> None:
    """The length bound holds for a client that reaches the ledger directly
    (the contract counts a repeated id once)."""
    batch, records, _ = api.batch(issuers=("Shanghai",))
    principal = api.runtime.tokens.verify(api.token(SH_ADMIN))
    ledger = api.runtime.gateway.ledger_for(principal)
    rid = records[0]["record_id"]
    with pytest.raises(InvalidArgument) as refused:
        ledger.submit("ConfirmTransactions", {
            "batch_id": batch, "record_ids": [rid] * (MAX_BATCH_RECORDS + 1)})
    assert refused.value.field == "record_ids"


def test_strings_are_bounded(api: Api) -> None:
    problem(api.post("/api/departments", {"code": "x" * 65, "name": "n",
                                          "duties": ["transport"]}, KS_ADMIN),
            422, "code")
    problem(api.post("/api/departments", {"code": "ok", "name": "n" * 501,
                                          "duties": ["transport"]}, KS_ADMIN),
            422, "name")
    problem(api.get("/api/ledger/history/" + "k" * 1025, CENTER_ADMIN), 422, "key")
    problem(api.get("/api/identifiers", KS_ADMIN, scheme="s" * 65), 422, "scheme")


def test_deep_nesting_is_refused(api: Api) -> None:
    for depth in (50, 100_000):
        text = ('{"code": "x", "name": "y", "duties": ' + "[" * depth
                + '"transport"' + "]" * depth + "}")
        r = api.client.post("/api/departments", content=text.encode(), headers={
            **api.headers(KS_ADMIN), "content-type": "application/json"})
        problem(r, 422)
        assert r.json()["field"] in ("body", "duties.0"), r.text


def test_new_days_are_real_days(api: Api) -> None:
    problem(api.post("/api/clearing-runs", {"business_day": "6697-33-77"},
                     CENTER_ADMIN), 422, "business_day")
    problem(api.get("/api/card-volumes", KS_ADMIN, **{"from": "2031-02-30"}), 422,
            "from")
    assert api.get("/api/clearing-runs", KS_ADMIN,
                   **{"from": new_day()}).status_code == 200
