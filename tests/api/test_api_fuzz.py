"""The API under a schema-driven fuzzer (schemathesis): every operation of the
OpenAPI document, as three roles, with inputs the schema allows and inputs it
forbids. No answer may be a server error, and every answer must be one the
document lists for the operation, with the documented media type and schema;
a request the schema forbids must be refused.

It runs on an embedded app of its own (in-process ASGI, fixed seed, a bounded
number of examples), not on the shared ``api`` fixture: what it commits stays
out of the other tests' ledger, and it never runs against Fabric, where a
thousand commands would take minutes. ``CITYUNION_FUZZ_EXAMPLES`` sets the
examples per operation, role and mode (default 25: under a minute on 2 cores).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from apikit import CENTER_ADMIN, KS_ADMIN, KS_TRANSPORT, Api, Who
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import Receive, Scope, Send

from api.app import create_app
from api.settings import Settings

EXAMPLES = int(os.environ.get("CITYUNION_FUZZ_EXAMPLES", "25"))
ROLES: dict[str, Who] = {"center_admin": CENTER_ADMIN, "city_admin": KS_ADMIN,
                         "department": KS_TRANSPORT}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance,
          negative_data_rejection]


def operations(schema: schemathesis.BaseSchema) -> list[tuple[str, str]]:
    """(method, path) of every operation; a broken one fails here."""
    out = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        out.append((result.ok().method.upper(), result.ok().path))
    return out


OPERATIONS = operations(schemathesis.openapi.from_dict(create_app().openapi()))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """An embedded app for the fuzzer alone, with Kunshan's transport
    department registered (so that the department role can act)."""
    data_dir: Path = tmp_path_factory.mktemp("fuzz") / "node"
    with TestClient(create_app(Settings(data_dir=data_dir))) as client:
        api = Api(client)
        api.department(code="transport", duties=("transport",))
        yield api


@pytest.fixture(scope="module")
def schema(fuzzed: Api) -> schemathesis.BaseSchema:
    """The document as the running app serves it, bound to that app (whose
    lifespan the fixture's client runs: schemathesis would start another)."""
    app: FastAPI = fuzzed.client.app  # type: ignore[assignment]

    async def started(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})

    return schemathesis.openapi.from_asgi("/openapi.json", started)


def test_every_operation_is_fuzzed(schema: schemathesis.BaseSchema) -> None:
    assert operations(schema) == OPERATIONS and len(OPERATIONS) >= 20


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path"), OPERATIONS,
                         ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzz(schema: schemathesis.BaseSchema, fuzzed: Api, role: str,
              method: str, path: str) -> None:
    operation = schema[path][method]
    auth = fuzzed.headers(ROLES[role])
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                      operation.as_strategy(GenerationMode.NEGATIVE))

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
              database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=cases)
    def run(case: Any) -> None:
        # The token is always sent: a case whose only fault is a missing or
        # bad one would not have it (tests/api/test_api_tokens.py has those).
        assume(not schema.is_security_param_negated(case))
        case.call_and_validate(headers=auth, checks=CHECKS)

    run()
