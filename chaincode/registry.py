"""The contract's shared registry: argument types, the command and query
registry every family module adds to, and the dispatcher a ledger runs.

``args[0]`` names the function and ``args[1]`` is a JSON object of its parameters.
Each command states who may call it (a department identity only once its
department is registered on chain); arguments are validated strictly (a bad one
is an ``InvalidArgument`` naming the field; no text may hold what a store cannot:
NUL or an unpaired surrogate); the domain aggregates enforce the invariants;
the recorded events are published as the transaction's one chaincode event
``cityunion`` (a JSON list), which the read side follows.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from chaincode.domain import Department
from chaincode.encoding import canonical_json
from chaincode.errors import InvalidArgument, Unauthorized
from chaincode.identity import Caller, Role, caller_of
from chaincode.recorder import Session, transaction_time
from chaincode.stub import Stub

EVENT_NAME = "cityunion"

UNSTORABLE = ("text must not contain NUL (U+0000) or an unpaired surrogate "
              "(U+D800 to U+DFFF)")


def unstorable(text: str) -> bool:
    """Whether ``text`` holds what no store can: NUL (PostgreSQL's text type
    refuses it) or an unpaired surrogate (it has no UTF-8 encoding)."""
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # only a surrogate cannot be encoded
        return True
    return False


def _storable(value: Any) -> Any:
    # Before the str check: pydantic's own refusal of a surrogate names no rule.
    if isinstance(value, str) and unstorable(value):
        raise PydanticCustomError("unstorable_text", UNSTORABLE)
    return value


# The argument types of every command (the API's request models use them too).
# Hashes, names, code types and days are ASCII by their patterns, so only free
# text and ciphertext need the storable check.
Hash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
CodeType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Text = Annotated[str, BeforeValidator(_storable), Field(min_length=1, max_length=500)]


def _base64(v: str) -> str:
    try:
        base64.b64decode(v, validate=True)
    except ValueError:
        raise PydanticCustomError("base64", "must be base64 ciphertext (SM4, made "
                                  "by the client)") from None
    return v


# Personal data, encrypted by the client (SM4) before it reaches the ledger.
Ciphertext = Annotated[str, BeforeValidator(_storable), Field(max_length=65536),
                       AfterValidator(_base64)]


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


def require_registered_department(ctx: Context) -> None:
    """A department identity acts only for a department its city registered on
    chain: the certificate names the department, RegisterDepartment makes it
    one. Checked by the dispatcher for every command a department calls."""
    city, code = ctx.caller.city, str(ctx.caller.department)
    if not ctx.session.exists(Department.create_id(city, code)):
        raise Unauthorized(f"department {code} is not registered in {city}")


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
        if err["type"] == "json_invalid" and (bad := _unstorable_at(raw)):
            raise InvalidArgument(f"{bad}: {UNSTORABLE}", bad) from None
        raise InvalidArgument(f"{field}: {err['msg']}", field) from None


def _unstorable_at(raw: bytes) -> str | None:
    """The path of the first unstorable text in JSON the strict parser refused:
    it refuses an escaped unpaired surrogate before any field is seen, so the
    lenient parser looks again to name the field."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None

    def walk(v: Any, path: tuple[str, ...]) -> tuple[str, ...] | None:
        if isinstance(v, str):
            return path if unstorable(v) else None
        items = (v.items() if isinstance(v, dict)
                 else enumerate(v) if isinstance(v, list) else ())
        for k, item in items:
            if isinstance(k, str) and unstorable(k):  # named escaped, not as is
                return (*path, k.encode("utf-8", "backslashreplace").decode())
            if (found := walk(item, (*path, str(k)))) is not None:
                return found
        return None

    found = walk(value, ())
    return None if found is None else ".".join(found) or "args"


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
            ctx = Context(stub, caller, session)
            if caller.role is Role.DEPARTMENT:
                require_registered_department(ctx)
            result = handler(ctx, _parse(model, raw))
            stub.set_event(EVENT_NAME, canonical_json(event_payload(session.pending)))
        elif function in QUERIES:
            qmodel, qhandler = QUERIES[function]
            result = qhandler(Context(stub, caller, session), _parse(qmodel, raw))
        else:
            accepted = ", ".join(sorted([*COMMANDS, *QUERIES]))
            raise InvalidArgument(f"unknown function {function!r} (accepted: "
                                  f"{accepted})", "function")
    return canonical_json(result)

