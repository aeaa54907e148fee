"""The OpenAPI document says what the API does: real date formats, the errors
each operation can answer (as problem+json), the Idempotency-Key of every
command, no ``null`` for an absent parameter; and a path answers ``OPTIONS``
and refused methods with every method it serves in ``Allow``."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
from apikit import KS_ADMIN, Api, problem


def document(api: Api) -> dict[str, Any]:
    doc: dict[str, Any] = api.client.get("/openapi.json").json()
    return doc


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in doc["paths"].items()
            for method, op in item.items()]


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    return jsonschema_rs.validator_for({**schema, "components": doc["components"]},
                                       validate_formats=True)


def test_days_are_dates_in_the_schema(api: Api) -> None:
    doc = document(api)
    run = validator(doc, {"$ref": "#/components/schemas/ClearingRunCreate"})
    assert run.is_valid({"business_day": "2026-11-20"})
    assert not run.is_valid({"business_day": "6697-33-77"})
    [day] = [p for p in doc["paths"]["/api/clearing-runs/{business_day}"]["get"]
             ["parameters"] if p["name"] == "business_day"]
    assert day["schema"]["format"] == "date"
    record = doc["components"]["schemas"]["CardRecord"]["properties"]["time"]
    assert record["format"] == "date-time"


def test_every_operation_documents_its_errors(api: Api) -> None:
    doc = document(api)
    for method, path, op in operations(doc):
        codes = set(op["responses"])
        for code, response in op["responses"].items():
            if code[0] in "45":
                assert list(response["content"]) == ["application/problem+json"], (
                    method, path, code)
        if path == "/healthz":  # no token needed
            assert "401" not in codes
            continue
        assert "401" in codes, (method, path)
        if method == "POST":
            assert {"400", "401", "403", "409", "413", "422", "503"} <= codes, path
            assert ("404" in codes) == ("{" in path), path  # on an existing id
            [key] = [p for p in op["parameters"] if p["in"] == "header"]
            assert key["name"] == "Idempotency-Key" and not key["required"]
            [ok] = [r for c, r in op["responses"].items() if c[0] == "2"]
            assert "Idempotent-Replayed" in ok["headers"]
        if "{" in path and not path.startswith("/api/ledger/history/"):
            assert "404" in codes, (method, path)  # (a key's history may be [])
        assert "500" not in codes


def test_absent_parameters_are_not_null(api: Api) -> None:
    for _, _, op in operations(document(api)):
        for parameter in op.get("parameters", []):
            assert {"type": "null"} not in parameter["schema"].get("anyOf", []), \
                parameter


def test_options_lists_every_method_of_a_path(api: Api) -> None:
    r = api.client.options("/api/departments")
    assert r.status_code == 204 and r.headers["allow"] == "GET, OPTIONS, POST"
    r = api.client.options("/api/departments/00000000-0000-0000-0000-000000000001")
    assert r.status_code == 204 and r.headers["allow"] == "GET, OPTIONS"
    r = api.client.options("/api/identifiers/00000000-0000-0000-0000-000000000001"
                           "/revoke")
    assert r.headers["allow"] == "OPTIONS, POST"
    problem(api.client.options("/api/nothing-here"), 404)


def test_a_refused_method_names_every_method_of_the_path(api: Api) -> None:
    r = api.client.delete("/api/departments", headers=api.headers(KS_ADMIN))
    body = problem(r, 405, "method")
    assert r.headers["allow"] == "GET, OPTIONS, POST" == body["accepted"]
    r = api.client.put("/api/code-schemes/00000000-0000-0000-0000-000000000001"
                       "/approve", json={})
    problem(r, 405)
    assert r.headers["allow"] == "OPTIONS, POST"
