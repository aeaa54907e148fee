"""What handlers depend on: the running node and read models, the caller's
identity, role requirements, city scoping and pagination.

``Runtime`` is built once per app (in its lifespan) and holds the gateway, the
read-model database, the token service and the projection follower.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.gateway import Gateway
from api.problems import Problem
from api.settings import Settings
from api.tokens import Principal, TokenError, TokenService
from chaincode.identity import Role
from projections.db import Database
from projections.follower import Follower


@dataclass
class Runtime:
    settings: Settings
    gateway: Gateway
    db: Database
    tokens: TokenService
    follower: Follower

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        gateway = Gateway.open(settings)
        try:
            db = Database(settings.read_model_target)
            follower = Follower(gateway.reader, db, verify_block=gateway.verify_block)
            tokens = TokenService(settings.data_dir, db)
        except BaseException:
            gateway.close()
            raise
        if settings.follow:
            follower.start()
        return cls(settings, gateway, db, tokens, follower)

    def close(self) -> None:
        self.follower.stop()
        self.gateway.close()
        self.db.close()


async def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


async def _gateway(runtime: RuntimeDep) -> Gateway:
    return runtime.gateway


async def _db(runtime: RuntimeDep) -> Database:
    return runtime.db


LedgerDep = Annotated[Gateway, Depends(_gateway)]
ReadDB = Annotated[Database, Depends(_db)]
_bearer = HTTPBearer(auto_error=False, description="a token from "
                     "`cityunion token issue`")


def _current_identity(
        runtime: RuntimeDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None,
                               Depends(_bearer)]) -> Principal:
    if credentials is None:
        raise TokenError("no bearer token", accepted="Authorization: Bearer "
                         "<token from `cityunion token issue`>")
    return runtime.tokens.verify(credentials.credentials)


CurrentIdentity = Annotated[Principal, Depends(_current_identity)]


def require(*roles: Role) -> Callable[..., Any]:
    """A dependency that admits only the given roles (403 otherwise)."""
    accepted = ", ".join(r.value for r in roles)

    def check(p: CurrentIdentity) -> Principal:
        if p.role not in roles:
            raise Problem(403, "forbidden-role", f"this needs one of the roles "
                          f"{accepted}; this token's role is {p.role.value}",
                          "role", accepted)
        return p
    return check


Auditor = Annotated[Principal, Depends(require(Role.AUDITOR, Role.CENTER_ADMIN))]
Leader = Annotated[Principal, Depends(require(Role.AUDITOR, Role.CENTER_ADMIN,
                                              Role.CITY_ADMIN))]


def scope_city(p: Principal, requested: str | None, field: str = "city") -> str | None:
    """The city a read is limited to: center admins and auditors see every city
    (and may filter by one); everyone else sees only their own city."""
    if p.sees_every_city:
        return requested
    if requested is not None and requested != p.city:
        raise Problem(403, "forbidden-city", f"a {p.role.value} token of {p.city} "
                      f"reads only {p.city}'s data", field, p.city)
    return p.city


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


async def _page(limit: Annotated[int, Query(ge=1, le=500)] = 50,
                offset: Annotated[int, Query(ge=0)] = 0) -> PageParams:
    return PageParams(limit, offset)


PageDep = Annotated[PageParams, Depends(_page)]


def not_found(what: str, key: object, field: str = "id") -> Problem:
    return Problem(404, "not-found", f"no {what} {key} in the read model (it may "
                   "not be projected yet)", field)

