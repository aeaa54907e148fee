"""What handlers depend on: the running node and read models, the caller's
identity, role requirements, city scoping, pagination and the way commands are
submitted (``Commands``: as the caller, at most once per ``Idempotency-Key``).

``Runtime`` is built once per app (in its lifespan) and holds the gateway, the
read-model database, the token service and the projection follower.

Handlers are ``async`` and do no blocking work on the event loop: ledger
submissions and read-model queries go to a worker thread, one hop per request
(``submit`` and ``Reads``). FastAPI would otherwise spend a thread hop on every
sync dependency, every sync handler and the response validation of a sync
handler; the dependencies here are pure CPU (the token check included: its
revocation list is kept in memory and refreshed by the token service).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

from fastapi import Depends, Header, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.gateway import Gateway
from api.problems import Problem
from api.schemas import MAX_INT64, CommandResult
from api.settings import Settings
from api.signing import NodeSigner
from api.tokens import Principal, TokenError, TokenService
from chaincode.identity import Role
from projections.db import Database
from projections.follower import Follower
from projections.queries import DashboardCache
from workers.video.service import WatchRegistry

if TYPE_CHECKING:
    from workers.voice.service import CampaignRegistry

T = TypeVar("T")
P = ParamSpec("P")

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What one running API holds; closed when the app stops."""

    settings: Settings
    gateway: Gateway
    db: Database
    tokens: TokenService
    follower: Follower
    signer: NodeSigner
    dashboard: DashboardCache = field(default_factory=DashboardCache)
    watches: WatchRegistry = field(default_factory=WatchRegistry)
    _campaigns: CampaignRegistry | None = None

    @property
    def campaigns(self) -> CampaignRegistry:
        """The call campaigns this server runs (the voice extra is imported
        at the first use: ImportError without it)."""
        if self._campaigns is None:
            from workers.voice.service import CampaignRegistry

            self._campaigns = CampaignRegistry()
        return self._campaigns

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        gateway = Gateway.open(settings)
        try:
            db = Database(settings.read_model_target)
            follower = Follower(gateway.reader, db, verify_block=gateway.verify_block)
            tokens = TokenService(settings.data_dir, db)
            _ = tokens.key  # made now, so `token issue` finds this node
        except BaseException:
            gateway.close()
            raise
        tokens.watch_revocations()
        if settings.follow:
            follower.start()
        return cls(settings, gateway, db, tokens, follower,
                   NodeSigner(settings.data_dir))

    def close(self) -> None:
        self.watches.close()
        if self._campaigns is not None:
            self._campaigns.close()
        self.tokens.stop_watching()
        if not self.follower.stop():
            # closing a gRPC channel under a call in flight can crash the
            # process: leave it to the process's end
            log.warning("the projection applier is still in a ledger call; "
                        "the ledger connection is left open")
            return
        self.gateway.close()
        self.db.close()


async def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


async def _gateway(runtime: RuntimeDep) -> Gateway:
    return runtime.gateway


class Reads:
    """Runs read-model queries in a worker thread: ``await read(fn, *args)``
    calls ``fn(db, *args)``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        return await run_in_threadpool(fn, self.db, *args)

    async def one(self, fn: Callable[..., T | None], key: object, what: str,
                  field: str) -> T:
        """``fn(db, key)``'s row, or a 404 problem naming ``field``."""
        row = await self(fn, key)
        if row is None:
            raise not_found(what, key, field)
        return row


async def _reads(runtime: RuntimeDep) -> Reads:
    return Reads(runtime.db)


LedgerDep = Annotated[Gateway, Depends(_gateway)]
ReadDB = Annotated[Reads, Depends(_reads)]


async def blocking(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking call (the ledger, a verification) in a worker thread."""
    return await run_in_threadpool(fn, *args, **kwargs)


_bearer = HTTPBearer(auto_error=False, description="a token from "
                     "`cityunion token issue`")


async def _current_identity(
        runtime: RuntimeDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None,
                               Depends(_bearer)]) -> Principal:
    if credentials is None:
        raise TokenError("no bearer token", accepted="Authorization: Bearer "
                         "<token from `cityunion token issue`>")
    return runtime.tokens.verify(credentials.credentials)


CurrentIdentity = Annotated[Principal, Depends(_current_identity)]

REPLAYED_HEADER = "Idempotent-Replayed"
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[!-~]+$",
    description="Any string of up to 255 visible ASCII characters, new for each "
    "command (e.g. a UUID). The command commits at most once per key and "
    "identity: a retry with the same key and body gets the receipt of the "
    "first (with `Idempotent-Replayed: true`), even after a lost answer or a "
    "restart of this server; the same key with another body is 422.")]


@dataclass(frozen=True)
class Commands:
    """Submits commands as the caller (role check first), at most once per
    idempotency key when the request names one."""

    gateway: Gateway
    caller: Principal
    key: str | None
    response: Response

    async def submit(self, function: str, args: dict[str, Any]) -> CommandResult:
        """The command's receipt, or the receipt its key already committed."""
        outcome = await blocking(self.gateway.submit, self.caller, function, args,
                                 self.key)
        if outcome.replayed:
            self.response.headers[REPLAYED_HEADER] = "true"
        return CommandResult.of(outcome.receipt)


async def _commands(gateway: LedgerDep, p: CurrentIdentity, response: Response,
                    key: IdempotencyKey = None) -> Commands:
    return Commands(gateway, p, key, response)


CommandsDep = Annotated[Commands, Depends(_commands)]


def require(*roles: Role) -> Callable[..., Any]:
    """A dependency that admits only the given roles (403 otherwise)."""
    accepted = ", ".join(r.value for r in roles)

    async def check(p: CurrentIdentity) -> Principal:
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
                offset: Annotated[int, Query(ge=0, le=MAX_INT64)] = 0) -> PageParams:
    return PageParams(limit, offset)


PageDep = Annotated[PageParams, Depends(_page)]


def not_found(what: str, key: object, field: str = "id") -> Problem:
    return Problem(404, "not-found", f"no {what} {key} in the read model (it may "
                   "not be projected yet)", field)

