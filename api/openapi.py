"""The OpenAPI document as the API behaves, where FastAPI's differs: error
bodies are ``application/problem+json`` (FastAPI files a response model under
``application/json``); an optional parameter is absent, never ``null`` (a
query string or header has no null; FastAPI documents ``X | None`` as one);
and a command's receipt names the ``Idempotent-Replayed`` header it may carry
(set by ``api.deps.Commands``, which no route declares)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.deps import REPLAYED_HEADER
from api.problems import MEDIA_TYPE

_NULL = {"type": "null"}
_REPLAYED = {REPLAYED_HEADER: {
    "description": "`true` when the receipt is that of an earlier request with "
    "this Idempotency-Key (nothing new was committed); absent otherwise",
    "schema": {"type": "string", "enum": ["true"]}}}


def exact(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, corrected as the module says."""
    schema = get_openapi(title=app.title, version=app.version,
                         description=app.description, routes=app.routes)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            parameters = operation.get("parameters", [])
            for parameter in parameters:
                _not_null(parameter["schema"])
            keyed = any(p["name"] == "Idempotency-Key" for p in parameters)
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status[0] in "45" and "application/json" in content:
                    content[MEDIA_TYPE] = content.pop("application/json")
                if status[0] == "2" and keyed:
                    response.setdefault("headers", {}).update(_REPLAYED)
    return schema


def _not_null(schema: dict[str, Any]) -> None:
    options = schema.get("anyOf")
    if options and _NULL in options:
        rest = [o for o in options if o != _NULL]
        del schema["anyOf"]
        if len(rest) == 1:
            schema.update(rest[0])
        else:
            schema["anyOf"] = rest
