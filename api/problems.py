"""Errors as ``application/problem+json`` (RFC 9457), each naming the field.

Contract rejections keep their status (InvalidArgument 400, Unauthorized 403,
NotFound 404, Conflict/ChecksFailed 409); request validation errors name the
field and what it accepts; nothing ever shows a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from api.tokens import TokenError
from chaincode.errors import ContractError
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
          422: "Unprocessable Content", 500: "Internal Server Error",
          503: "Service Unavailable"}
RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ProblemBody, "content": {MEDIA_TYPE: {}},
           "description": TITLES[code]} for code in (400, 401, 403, 404, 409, 422)}


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
    async def _http(_: Request, e: HTTPException) -> JSONResponse:
        kind = TITLES.get(e.status_code, "error").lower().replace(" ", "-")
        return problem_response(e.status_code, kind, str(e.detail),
                                headers=getattr(e, "headers", None))
