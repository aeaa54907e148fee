"""The cityunion contract: commands and queries, dispatched from the stub's args.

``args[0]`` names the function and ``args[1]`` is a JSON object of its parameters.
Each command states who may call it; arguments are validated strictly (a bad one is
an ``InvalidArgument`` naming the field); the domain aggregates enforce the
invariants; the recorded events are published as the transaction's one chaincode
event ``cityunion`` (a JSON list), which the read side follows.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from chaincode.domain import (
    ClearingRun,
    CodeScheme,
    Department,
    Identifier,
    TransactionBatch,
    net_positions,
    scheme_checks,
)
from chaincode.errors import Conflict, InvalidArgument, Unauthorized
from chaincode.identity import Caller, Role, caller_of
from chaincode.merkle import canonical_json, merkle_root_of
from chaincode.recorder import Session, derive_id, transaction_time
from chaincode.stub import Stub, prefix_range
from network.consortium import load_consortium

EVENT_NAME = "cityunion"
MAX_BATCH_RECORDS = 10_000

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


class RegisterIdentifierArgs(Args):
    kind: Literal["person", "organisation", "object", "place"]
    category: Literal["identity", "spatiotemporal"]
    scheme: Name
    natural_key_hash: Hash
    attributes: Annotated[str, Field(max_length=65536)] | None = None

    @field_validator("attributes")
    @classmethod
    def _base64(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                base64.b64decode(v, validate=True)
            except ValueError as e:
                raise ValueError("must be base64 ciphertext (SM4, made by the "
                                 "client)") from e
        return v


class LinkIdentifierArgs(Args):
    identifier_id: UUID
    target_id: UUID
    relation: Literal["attached", "belongs", "contains", "organisation", "person"]


class RevokeIdentifierArgs(Args):
    identifier_id: UUID
    reason: Text


class RegisterDepartmentArgs(Args):
    code: Name
    name: Text
    duties: Annotated[list[CodeType], Field(min_length=1, max_length=64)]


class ApplyCodeSchemeArgs(Args):
    application_name: Name
    code_type: CodeType
    scope: Name
    data_sharing_commitment: bool


class ApproveCodeSchemeArgs(Args):
    scheme_id: UUID


class RejectCodeSchemeArgs(Args):
    scheme_id: UUID
    reason: Text


class CardRecord(Args):
    record_id: Name
    issuer_city: Name
    card_id_hash: Hash
    amount_fen: Annotated[int, Field(gt=0, le=100_000_000)]
    time: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"
                                       r"(\.\d{1,6})?Z$")]
    terminal_id: Name

    @field_validator("time")
    @classmethod
    def _valid_time(cls, v: str) -> str:
        datetime.fromisoformat(v)
        return v


def card_leaf(r: dict[str, Any]) -> bytes:
    """``canonical_json(r)`` of a validated CardRecord, written out: its fields'
    patterns admit no character JSON would escape, and a batch has thousands."""
    return (f'{{"amount_fen":{r["amount_fen"]},"card_id_hash":"{r["card_id_hash"]}",'
            f'"issuer_city":"{r["issuer_city"]}","record_id":"{r["record_id"]}",'
            f'"terminal_id":"{r["terminal_id"]}","time":"{r["time"]}"}}').encode()


class ReportBatchArgs(Args):
    business_day: Day
    records: Annotated[list[CardRecord], Field(min_length=1,
                                               max_length=MAX_BATCH_RECORDS)]
    merkle_root: Hash


class ConfirmArgs(Args):
    batch_id: UUID
    record_ids: list[Name] = []


class DisputeArgs(Args):
    batch_id: UUID
    record_ids: Annotated[list[Name], Field(min_length=1)]
    reason: Text


class ClearingArgs(Args):
    business_day: Day


class IdArgs(Args):
    id: UUID


class DepartmentQueryArgs(Args):
    city: Name
    code: Name


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


def _require_city(caller: Caller, city: str, what: str) -> None:
    if caller.city != city:
        raise Unauthorized(f"only {city} may {what}; the caller is {caller.city}")


# ------------------------------------------------------------------ identifiers
@command("RegisterIdentifier", RegisterIdentifierArgs, Role.DEPARTMENT,
         Role.CITY_ADMIN)
def register_identifier(ctx: Context, a: RegisterIdentifierArgs) -> dict[str, Any]:
    if ctx.session.exists(Identifier.create_id(a.scheme, a.natural_key_hash)):
        raise Conflict(f"scheme {a.scheme} already has an identifier with this "
                       "natural-key hash", field="natural_key_hash")
    ident = Identifier(kind=a.kind, category=a.category, scheme=a.scheme,
                       natural_key_hash=a.natural_key_hash,
                       attributes=a.attributes, city=ctx.caller.city,
                       registered_by=str(ctx.caller))
    ctx.session.save(ident)
    return {"id": str(ident.id), "status": ident.status}


@command("LinkIdentifier", LinkIdentifierArgs, Role.DEPARTMENT, Role.CITY_ADMIN)
def link_identifier(ctx: Context, a: LinkIdentifierArgs) -> dict[str, Any]:
    ident = ctx.session.get(a.identifier_id, Identifier, "identifier",
                            "identifier_id")
    _require_city(ctx.caller, ident.city, "link this identifier")
    target = ctx.session.get(a.target_id, Identifier, "identifier", "target_id")
    ident.link_to(target, a.relation, str(ctx.caller))
    ctx.session.save(ident)
    return {"id": str(ident.id), "status": ident.status}


@command("RevokeIdentifier", RevokeIdentifierArgs, Role.DEPARTMENT, Role.CITY_ADMIN)
def revoke_identifier(ctx: Context, a: RevokeIdentifierArgs) -> dict[str, Any]:
    ident = ctx.session.get(a.identifier_id, Identifier, "identifier",
                            "identifier_id")
    _require_city(ctx.caller, ident.city, "revoke this identifier")
    ident.revoke(a.reason, str(ctx.caller))
    ctx.session.save(ident)
    return {"id": str(ident.id), "status": ident.status}


# ----------------------------------------------------------------- code schemes
def _cover_key(code_type: str, scope: str) -> str:
    return f"cover~{code_type}~{scope}"


@command("RegisterDepartment", RegisterDepartmentArgs, Role.CITY_ADMIN)
def register_department(ctx: Context, a: RegisterDepartmentArgs) -> dict[str, Any]:
    if ctx.session.exists(Department.create_id(ctx.caller.city, a.code)):
        raise Conflict(f"department {a.code} of {ctx.caller.city} is already "
                       "registered", field="code")
    dept = Department(city=ctx.caller.city, code=a.code, name=a.name,
                      duties=sorted(set(a.duties)))
    ctx.session.save(dept)
    return {"id": str(dept.id)}


@command("ApplyCodeScheme", ApplyCodeSchemeArgs, Role.DEPARTMENT)
def apply_code_scheme(ctx: Context, a: ApplyCodeSchemeArgs) -> dict[str, Any]:
    city, dept = ctx.caller.city, str(ctx.caller.department)
    if not ctx.session.exists(Department.create_id(city, dept)):
        raise Unauthorized(f"department {dept} is not registered in {city}")
    if ctx.session.exists(CodeScheme.create_id(city, dept, a.application_name)):
        raise Conflict(f"{dept} already applied for {a.application_name}",
                       field="application_name")
    scheme = CodeScheme(city=city, department=dept,
                        application_name=a.application_name, code_type=a.code_type,
                        scope=a.scope,
                        data_sharing_commitment=a.data_sharing_commitment,
                        applied_by=str(ctx.caller))
    ctx.session.save(scheme)
    return {"id": str(scheme.id), "status": scheme.status}


def _decide(ctx: Context, scheme_id: UUID) -> tuple[CodeScheme, dict[str, bool]]:
    scheme: CodeScheme = ctx.session.get(scheme_id, CodeScheme, "code scheme",
                                         "scheme_id")
    if not (ctx.caller.is_center or (ctx.caller.role is Role.CITY_ADMIN
                                     and ctx.caller.city == scheme.city)):
        raise Unauthorized(f"only {scheme.city}'s city admin or the center may "
                           "decide this code scheme")
    dept_id = Department.create_id(scheme.city, scheme.department)
    dept = (ctx.session.get(dept_id, Department, "department")
            if ctx.session.exists(dept_id) else None)
    cover = ctx.stub.get_state(_cover_key(scheme.code_type, scheme.scope))
    checks = scheme_checks(dept, scheme.code_type,
                           cover.decode() if cover else None,
                           scheme.data_sharing_commitment)
    return scheme, checks


@command("ApproveCodeScheme", ApproveCodeSchemeArgs, Role.CITY_ADMIN,
         Role.CENTER_ADMIN)
def approve_code_scheme(ctx: Context, a: ApproveCodeSchemeArgs) -> dict[str, Any]:
    scheme, checks = _decide(ctx, a.scheme_id)
    scheme.approve(checks, str(ctx.caller))
    ctx.stub.put_state(_cover_key(scheme.code_type, scheme.scope),
                       str(scheme.id).encode())
    ctx.session.save(scheme)
    return {"id": str(scheme.id), "status": scheme.status, "checks": checks}


@command("RejectCodeScheme", RejectCodeSchemeArgs, Role.CITY_ADMIN,
         Role.CENTER_ADMIN)
def reject_code_scheme(ctx: Context, a: RejectCodeSchemeArgs) -> dict[str, Any]:
    scheme, checks = _decide(ctx, a.scheme_id)
    scheme.reject(checks, a.reason, str(ctx.caller))
    ctx.session.save(scheme)
    return {"id": str(scheme.id), "status": scheme.status, "checks": checks}


# -------------------------------------------------- cross-city card transactions
def _ensure_day_open(ctx: Context, day: str) -> None:
    if ctx.session.exists(ClearingRun.create_id(day)):
        raise Conflict(f"business day {day} is already cleared",
                       field="business_day")


@command("ReportTransactionBatch", ReportBatchArgs, Role.CITY_ADMIN, Role.TERMINAL)
def report_batch(ctx: Context, a: ReportBatchArgs) -> dict[str, Any]:
    acquirer, cities = ctx.caller.city, load_consortium().city_names
    if acquirer not in cities:
        raise Unauthorized("only a member city acquires card transactions")
    _ensure_day_open(ctx, a.business_day)
    records = [r.model_dump() for r in a.records]
    seen: set[str] = set()
    for i, r in enumerate(records):
        field = f"records.{i}"
        if r["issuer_city"] not in cities:
            raise InvalidArgument(f"issuer city {r['issuer_city']!r} is not a "
                                  f"member ({', '.join(cities)})",
                                  f"{field}.issuer_city")
        if r["issuer_city"] == acquirer:
            raise InvalidArgument("a cross-city record's issuer must differ from "
                                  "the acquirer", f"{field}.issuer_city")
        if r["record_id"] in seen:
            raise InvalidArgument(f"record {r['record_id']!r} appears twice",
                                  f"{field}.record_id")
        seen.add(r["record_id"])
    root = merkle_root_of(map(card_leaf, records))
    if root != a.merkle_root:
        raise InvalidArgument(f"Merkle root does not match the records (computed "
                              f"{root})", "merkle_root")
    batch_id = TransactionBatch.create_id(acquirer, root)
    record_keys = [f"rec~{acquirer}~{r['record_id']}" for r in records]
    for i, found in enumerate(ctx.stub.get_multiple_states(record_keys)):
        if found is not None:
            raise Conflict(f"record {records[i]['record_id']!r} was already "
                           "reported", field=f"records.{i}.record_id")
    batch = TransactionBatch(acquirer_city=acquirer, business_day=a.business_day,
                             merkle_root=root, count=len(records),
                             amount_fen=sum(r["amount_fen"] for r in records),
                             records=records, reported_by=str(ctx.caller))
    value = str(batch_id).encode()
    for key in record_keys:
        ctx.stub.put_state(key, value)
    ctx.stub.put_state(f"day~{a.business_day}~{batch_id}", value)
    ctx.session.save(batch)
    return {"id": str(batch_id), "count": batch.count, "amount_fen": batch.amount_fen}


def _issuer_batch(ctx: Context, batch_id: UUID) -> TransactionBatch:
    batch: TransactionBatch = ctx.session.get(batch_id, TransactionBatch, "batch",
                                              "batch_id")
    _ensure_day_open(ctx, batch.business_day)
    if ctx.caller.city not in load_consortium().city_names:
        raise Unauthorized("only an issuer city confirms or disputes records")
    return batch


@command("ConfirmTransactions", ConfirmArgs, Role.CITY_ADMIN)
def confirm_transactions(ctx: Context, a: ConfirmArgs) -> dict[str, Any]:
    batch = _issuer_batch(ctx, a.batch_id)
    chosen = batch.confirm(ctx.caller.city, list(a.record_ids), str(ctx.caller))
    ctx.session.save(batch)
    return {"id": str(batch.id), "confirmed": len(chosen)}


@command("DisputeTransactions", DisputeArgs, Role.CITY_ADMIN)
def dispute_transactions(ctx: Context, a: DisputeArgs) -> dict[str, Any]:
    batch = _issuer_batch(ctx, a.batch_id)
    chosen = batch.dispute(ctx.caller.city, list(a.record_ids), a.reason,
                           str(ctx.caller))
    ctx.session.save(batch)
    return {"id": str(batch.id), "disputed": len(chosen)}


@command("RunClearing", ClearingArgs, Role.CENTER_ADMIN)
def run_clearing(ctx: Context, a: ClearingArgs) -> dict[str, Any]:
    _ensure_day_open(ctx, a.business_day)
    start, end = prefix_range(f"day~{a.business_day}~")
    batch_ids = [UUID(v.decode()) for _, v in ctx.stub.get_state_by_range(start, end)]
    batches = [ctx.session.get(b, TransactionBatch, "batch") for b in batch_ids]
    positions, records, excluded, gross = net_positions(
        batches, load_consortium().city_names)
    run = ClearingRun(business_day=a.business_day,
                      batches=[str(b) for b in batch_ids], records=records,
                      excluded_disputed=excluded, gross_fen=gross,
                      positions=positions, run_by=str(ctx.caller))
    ctx.session.save(run)
    return {"id": str(run.id), "positions": positions, "records": records,
            "excluded_disputed": excluded, "gross_fen": gross}


# ---------------------------------------------------------------------- queries
def _state(agg: Any) -> dict[str, Any]:
    out = {k: v for k, v in vars(agg).items() if not k.startswith("_")}
    out["id"] = str(agg.id)
    out["version"] = agg.version
    return dict(json.loads(canonical_json(out)))  # a deep copy, JSON types only


def _getter(cls: type, what: str) -> Handler:
    def get(ctx: Context, a: IdArgs) -> dict[str, Any]:
        return _state(ctx.session.get(a.id, cls, what))
    return get


QUERIES.update({
    "GetIdentifier": (IdArgs, _getter(Identifier, "identifier")),
    "GetCodeScheme": (IdArgs, _getter(CodeScheme, "code scheme")),
    "GetBatch": (IdArgs, _getter(TransactionBatch, "batch")),
})


@query("GetDepartment", DepartmentQueryArgs)
def get_department(ctx: Context, a: DepartmentQueryArgs) -> dict[str, Any]:
    return _state(ctx.session.get(Department.create_id(a.city, a.code), Department,
                                  "department"))


@query("GetClearingRun", ClearingArgs)
def get_clearing_run(ctx: Context, a: ClearingArgs) -> dict[str, Any]:
    return _state(ctx.session.get(ClearingRun.create_id(a.business_day),
                                  ClearingRun, "clearing run"))


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


def derive_identifier_id(scheme: str, natural_key_hash: str) -> str:
    """Clients use this to know an identifier's id before registering it."""
    return str(derive_id("identifier", scheme, natural_key_hash))


from chaincode import audit  # noqa: E402, F401  (registers the audit queries)
