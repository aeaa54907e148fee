"""The contract's shared registry: argument types, the command and query
registry every family module adds to, and the dispatcher a ledger runs.

``args[0]`` names the function and ``args[1]`` is a JSON object of its parameters.
Each command states who may call it; arguments are validated strictly (a bad one is
an ``InvalidArgument`` naming the field); the domain aggregates enforce the
invariants; the recorded events are published as the transaction's one chaincode
event ``cityunion`` (a JSON list), which the read side follows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, TypeVar
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from chaincode.errors import InvalidArgument, Unauthorized
from chaincode.identity import Caller, Role, caller_of
from chaincode.merkle import canonical_json
from chaincode.recorder import Session, transaction_time
from chaincode.stub import Stub

EVENT_NAME = "cityunion"

Hash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
CodeType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Text = Annotated[str, Field(min_length=1, max_length=500)]


def _calendar_day(v: str) -> str:
    date.fromisoformat(v)  # a ValueError here becomes InvalidArgument on the field
    return v


# A real calendar day, checked wherever a day is an argument (not only its shape).
Day = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$"),
                AfterValidator(_calendar_day)]


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

class IdArgs(Args):
    id: UUID

@dataclass
class Context:
    stub: Stub
    caller: Caller
    session: Session


A = TypeVar("A", bound=Args)
Handler = Callable[[Context, Any], dict[str, Any]]
COMMANDS: dict[str, tuple[type[Args], frozenset[Role], Handler]] = {}
QUERIES: dict[str, tuple[type[Args], Handler]] = {}


def command(name: str, args: type[A], *roles: Role) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = (args, frozenset(roles), fn)
        return fn
    return register


def query(name: str, args: type[A]) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        QUERIES[name] = (args, fn)
        return fn
    return register


def require_city(caller: Caller, city: str, what: str) -> None:
    if caller.city != city:
        raise Unauthorized(f"only {city} may {what}; the caller is {caller.city}")


def state_of(agg: Any) -> dict[str, Any]:
    """An aggregate's state as a query returns it (a deep copy, JSON types)."""
    out = {k: v for k, v in vars(agg).items() if not k.startswith("_")}
    out["id"] = str(agg.id)
    out["version"] = agg.version
    return dict(json.loads(canonical_json(out)))


def getter(cls: type, what: str) -> Handler:
    """A query handler returning the aggregate of ``cls`` with the given id."""
    def get(ctx: Context, a: IdArgs) -> dict[str, Any]:
        return state_of(ctx.session.get(a.id, cls, what))
    return get


# ------------------------------------------------------------------- dispatcher
def _parse(model: type[A], raw: bytes) -> A:
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "args"
        raise InvalidArgument(f"{field}: {err['msg']}", field) from None


def event_payload(events: list[Any]) -> list[dict[str, Any]]:
    """Domain events as the JSON the read side consumes."""
    out = []
    for ev in events:
        data = {k: v for k, v in vars(ev).items() if k not in (
            "originator_id", "originator_version", "timestamp", "originator_topic")}
        agg, name = type(ev).__qualname__.split(".")[-2:]
        out.append({"type": agg + name, "aggregate_id": str(ev.originator_id),
                    "version": ev.originator_version,
                    "timestamp": ev.timestamp.isoformat(), "data": data})
    return out


def invoke(stub: Stub) -> bytes:
    """Run the function named by the stub's args; returns the JSON result.

    Raises a ``ContractError`` for any rejection; the caller must then discard
    every write of the transaction.
    """
    args = stub.get_args()
    if not args:
        raise InvalidArgument("no function named", "function")
    function = args[0].decode("utf-8", "replace")
    raw = args[1] if len(args) > 1 else b"{}"
    caller = caller_of(stub.get_creator())
    session = Session(stub)
    with transaction_time(stub.get_tx_timestamp()):
        if function in COMMANDS:
            model, roles, handler = COMMANDS[function]
            if caller.role not in roles:
                raise Unauthorized(f"{function} may be called by "
                                   f"{', '.join(sorted(r.value for r in roles))}; "
                                   f"the caller is {caller.role.value}")
            result = handler(Context(stub, caller, session), _parse(model, raw))
            stub.set_event(EVENT_NAME, canonical_json(event_payload(session.pending)))
        elif function in QUERIES:
            qmodel, qhandler = QUERIES[function]
            result = qhandler(Context(stub, caller, session), _parse(qmodel, raw))
        else:
            accepted = ", ".join(sorted([*COMMANDS, *QUERIES]))
            raise InvalidArgument(f"unknown function {function!r} (accepted: "
                                  f"{accepted})", "function")
    return canonical_json(result)

