"""Errors as ``application/problem+json`` (RFC 9457), each naming the field.

Contract rejections keep their status (InvalidArgument 400, Unauthorized 403,
NotFound 404, Conflict/ChecksFailed 409); request validation errors name the
field and what it accepts; nothing ever shows a traceback.

Each operation documents the errors it can answer (``responses``), and a
method a path does not serve is a 405 whose ``Allow`` lists every method the
path does serve; ``OPTIONS`` answers that list.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match

from api.tokens import TokenError
from chaincode.errors import ContractError
from ledger.idempotency import AttemptsExhausted, KeyReused
from ledger.protocol import CommitError, LedgerError

MEDIA_TYPE = "application/problem+json"
log = logging.getLogger(__name__)


class FieldError(BaseModel):
    field: str
    detail: str
    accepted: str | None = None


class ProblemBody(BaseModel):
    """The body of every error response."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    accepted: str | None = None
    errors: list[FieldError] | None = None


class Problem(Exception):
    """An error the API answers with directly."""

    def __init__(self, status: int, kind: str, detail: str,
                 field: str | None = None, accepted: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.field = field
        self.accepted = accepted
        self.headers = headers


TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
          404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
          413: "Content Too Large", 422: "Unprocessable Content",
          500: "Internal Server Error", 503: "Service Unavailable"}
WHEN = {
    400: "the contract refused an argument (`field` names it)",
    401: "no bearer token, or one that is expired, revoked or not this node's",
    403: "the token's role, city or department may not do this",
    404: "nothing with this id or number (in the read model: perhaps not "
         "projected yet)",
    409: "the command contradicts the recorded state, or a concurrent command "
         "committed first (submit again)",
    413: "the request body is larger than this operation accepts",
    422: "a parameter, header or the body does not match this schema, or the "
         "Idempotency-Key was used for another request (`field` names it)",
    503: "the ledger cannot be reached or refused the transaction",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The problem+json error responses an operation documents."""
    return {code: {"model": ProblemBody, "description": f"{TITLES[code]}: "
                   f"{WHEN[code]}"} for code in codes}


AUTHENTICATED = responses(401, 422)  # any token; its parameters are checked
READ = responses(401, 403, 422)  # a read limited by role or city
READ_ONE = responses(401, 403, 404, 422)
# a read answered by the contract (a query), limited by city
QUERY = responses(400, 401, 403, 404, 422, 503)


def files(*media_types: str) -> dict[int | str, dict[str, Any]]:
    """A 200 answer that may also be a file of ``media_types`` (``format=``)."""
    return {200: {"content": {"application/json": {}, **{
        t: {"schema": {"type": "string", "format": "binary"}}
        for t in media_types}}}}


COMMAND = responses(400, 401, 403, 409, 413, 422, 503)
COMMAND_ON = responses(400, 401, 403, 404, 409, 413, 422, 503)  # on an existing id


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this request's path, and OPTIONS:
    each is tried against the routes as the router would (a route answers
    only for its own methods; included routers are matched as a whole)."""
    allowed = {"OPTIONS"}
    for method in _METHODS:
        scope = {"type": "http", "method": method, "path": request.scope["path"],
                 "root_path": request.scope.get("root_path", ""), "headers": [],
                 "query_string": b""}
        if any(route.matches(scope)[0] == Match.FULL
               for route in request.app.routes):
            allowed.add(method)
    return sorted(allowed)


def problem_response(status: int, kind: str, detail: str, field: str | None = None,
                     accepted: str | None = None,
                     errors: list[FieldError] | None = None,
                     headers: dict[str, str] | None = None) -> JSONResponse:
    body = ProblemBody(type=f"/problems/{kind}", title=TITLES.get(status, "Error"),
                       status=status, detail=detail, field=field, accepted=accepted,
                       errors=errors or None)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status,
                        media_type=MEDIA_TYPE, headers=headers)


def _accepted(ctx: dict[str, Any] | None) -> str | None:
    if not ctx:
        return None
    words = {"expected": "{}", "pattern": "text matching {}", "gt": "> {}",
             "ge": ">= {}", "lt": "< {}", "le": "<= {}",
             "min_length": "at least {} long", "max_length": "at most {} long"}
    parts = [fmt.format(ctx[k]) for k, fmt in words.items() if k in ctx]
    return ", ".join(parts) or None


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    """Register the problem+json handlers on the app."""

    @app.exception_handler(Problem)
    async def _problem(_: Request, e: Problem) -> JSONResponse:
        return problem_response(e.status, e.kind, e.detail, e.field, e.accepted,
                                headers=e.headers)

    @app.exception_handler(TokenError)
    async def _token(_: Request, e: TokenError) -> JSONResponse:
        return problem_response(401, "unauthenticated", e.message, e.field,
                                e.accepted, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        errors = [FieldError(field=_field(err["loc"]), detail=err["msg"],
                             accepted=_accepted(err.get("ctx")))
                  for err in e.errors()]
        first = errors[0] if errors else FieldError(field="body", detail="invalid")
        return problem_response(422, "invalid-request",
                                f"{first.field}: {first.detail}", first.field,
                                first.accepted, errors)

    @app.exception_handler(ContractError)
    async def _contract(_: Request, e: ContractError) -> JSONResponse:
        kind = "".join("-" + c.lower() if c.isupper() else c for c in e.code)
        return problem_response(e.status, kind.lstrip("-"), e.message, e.field)

    @app.exception_handler(KeyReused)
    async def _key_reused(_: Request, e: KeyReused) -> JSONResponse:
        return problem_response(422, "idempotency-key-reused", str(e),
                                "Idempotency-Key", "a new key for a new request")

    @app.exception_handler(AttemptsExhausted)
    async def _exhausted(_: Request, e: AttemptsExhausted) -> JSONResponse:
        return problem_response(409, "idempotency-key-spent", str(e),
                                "Idempotency-Key", "a new key")

    @app.exception_handler(LedgerError)
    async def _ledger(_: Request, e: LedgerError) -> JSONResponse:
        if isinstance(e, CommitError):
            return problem_response(409, "commit-conflict",
                                    f"{e} (a concurrent change; submit again)")
        log.warning("ledger error: %s", e)
        return problem_response(503, "ledger-unavailable", str(e))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=e)
        return problem_response(500, "internal-error", "the server failed; the "
                                "error is in its log")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, e: HTTPException) -> Response:
        kind = TITLES.get(e.status_code, "error").lower().replace(" ", "-")
        headers = dict(getattr(e, "headers", None) or {})
        if e.status_code == 405:  # a route refused; the path may have others
            headers["Allow"] = ", ".join(allowed_methods(request))
            if request.method == "OPTIONS":
                return Response(status_code=204, headers=headers)
            return problem_response(405, kind, f"{request.method} is not served "
                                    f"at {request.url.path}", "method",
                                    headers["Allow"], headers=headers)
        if e.status_code == 400 and isinstance(e.__cause__, RecursionError):
            return problem_response(422, "invalid-request", "body: the JSON is "
                                    "nested too deeply to parse", "body",
                                    "a JSON object as this operation's schema "
                                    "describes")
        if e.status_code == 400 and e.__cause__ is not None:  # body unreadable
            return problem_response(422, "invalid-request", f"body: {e.detail}",
                                    "body", "a JSON object as this operation's "
                                    "schema describes")
        return problem_response(e.status_code, kind, str(e.detail),
                                headers=headers or None)
