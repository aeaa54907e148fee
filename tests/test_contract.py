"""The contract through the embedded ledger: every command's happy path and
events, who may call it, malformed arguments, and the domain invariants.

Every rejection must be a typed ``ContractError`` with a clear message that
writes nothing: the rejection tests compare height and world state before and
after. They share one module-scoped world (a rejection changes nothing); the
happy paths each build their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import (
    CENTER,
    CITIES,
    DAY,
    OPTIONAL,
    VALID,
    Clients,
    World,
    batch_args,
    build_world,
    card_record,
    event_types,
    identifier_args,
    snapshot,
    unique_hash,
)

from chaincode.contract import COMMANDS, derive_identifier_id
from chaincode.errors import (
    ChecksFailed,
    Conflict,
    ContractError,
    InvalidArgument,
    NotFound,
    Unauthorized,
)
from chaincode.identity import Role
from chaincode.merkle import merkle_root
from ledger.embedded import EmbeddedNode
from ledger.protocol import Receipt

Args = dict[str, Any]
Caller = tuple[str, str]

# Who may call each command: the specification, written out independently of
# chaincode.contract.COMMANDS (a test below checks that the two agree).
ALLOWED: dict[str, frozenset[Role]] = {
    "RegisterIdentifier": frozenset({Role.DEPARTMENT, Role.CITY_ADMIN}),
    "LinkIdentifier": frozenset({Role.DEPARTMENT, Role.CITY_ADMIN}),
    "RevokeIdentifier": frozenset({Role.DEPARTMENT, Role.CITY_ADMIN}),
    "RegisterDepartment": frozenset({Role.CITY_ADMIN}),
    "ApplyCodeScheme": frozenset({Role.DEPARTMENT}),
    "ApproveCodeScheme": frozenset({Role.CITY_ADMIN, Role.CENTER_ADMIN}),
    "RejectCodeScheme": frozenset({Role.CITY_ADMIN, Role.CENTER_ADMIN}),
    "ReportTransactionBatch": frozenset({Role.CITY_ADMIN, Role.TERMINAL}),
    "ConfirmTransactions": frozenset({Role.CITY_ADMIN}),
    "DisputeTransactions": frozenset({Role.CITY_ADMIN}),
    "RunClearing": frozenset({Role.CENTER_ADMIN}),
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One world for the rejection tests (none of them may change it)."""
    node = EmbeddedNode(tmp_path_factory.mktemp("world") / "ledger")
    try:
        yield build_world(Clients(node))
    finally:
        node.close()


@pytest.fixture
def world(ids: Clients) -> World:
    """A world of its own, for tests that change it."""
    return build_world(ids)


def rejected(w: World, caller: Caller, function: str, args: Any,
             error: type[ContractError], field: str | None = None,
             fragment: str | None = None) -> ContractError:
    """Submit, expect exactly ``error`` (naming ``field``), and no change at all."""
    before = snapshot(w.node)
    with pytest.raises(ContractError) as info:
        w.ids(*caller).submit(function, args)
    err = info.value
    assert type(err) is error, f"{function}: expected {error.__name__}, got {err!r}"
    assert err.message.strip(), "a rejection needs a message"
    if field is not None:
        assert err.field == field, f"{function}: field {err.field!r}, {err.message}"
    if fragment is not None:
        assert fragment in err.message
    assert snapshot(w.node) == before, f"rejected {function} changed the ledger"
    return err


def submit(w: World, caller: Caller, function: str, args: Args) -> Receipt:
    receipt = w.ids(*caller).submit(function, args)
    assert receipt.status == "VALID"
    return receipt


def get(w: World, query: str, args: Args) -> dict[str, Any]:
    return w.ids("Kunshan", "auditor").evaluate(query, args)


# ------------------------------------------------------------- the tables
def test_tables_cover_every_command() -> None:
    assert set(COMMANDS) == set(ALLOWED) == set(VALID)
    assert {name: roles for name, (_, roles, _) in COMMANDS.items()} == ALLOWED


@pytest.mark.parametrize("function", sorted(VALID))
def test_valid_call_succeeds(world: World, function: str) -> None:
    caller, make = VALID[function]
    height = world.node.height()
    receipt = submit(world, caller, function, make(world))
    assert receipt.block_number == height
    assert receipt.events, f"{function} recorded no event"
    assert world.node.height() == height + 1


# ------------------------------------------------------------ unauthorized
def _identities_of(role: Role, home: str) -> list[Caller]:
    return {
        Role.CENTER_ADMIN: [(CENTER, "admin")],
        Role.AUDITOR: [(CENTER, "auditor"), (CENTER, "node"), (home, "auditor")],
        Role.CITY_ADMIN: [(home, "admin")],
        Role.DEPARTMENT: [(home, "transport"), (home, "health")],
        Role.TERMINAL: [(home, "terminal")],
    }[role]


def _unauthorized_cases() -> list[Any]:
    cases = []
    for function, (caller, _) in sorted(VALID.items()):
        home = caller[0] if caller[0] in CITIES else "Kunshan"
        for role in sorted(set(Role) - ALLOWED[function]):
            for org, user in _identities_of(role, home):
                cases.append(pytest.param(function, org, user,
                                          id=f"{function}-{org}-{user}"))
    return cases


@pytest.mark.parametrize(("function", "org", "user"), _unauthorized_cases())
def test_role_not_allowed(shared: World, function: str, org: str, user: str) -> None:
    err = rejected(shared, (org, user), function, VALID[function][1](shared),
                   Unauthorized)
    assert function in err.message
    role = shared.node.wallet.identity(org, user).subject["role"]
    assert f"the caller is {role}" in err.message


# ---------------------------------------------- rejections by domain rules
def _with(function: str, **changes: Any) -> Callable[[World], Args]:
    def make(w: World) -> Args:
        args = VALID[function][1](w)
        args.update({k: v(w) if callable(v) else v for k, v in changes.items()})
        return args
    return make


MISSING = str(uuid.UUID(int=7))
R = card_record
REJECTIONS: list[tuple[str, str, Caller, Callable[[World], Args],
                       type[ContractError], str | None, str]] = [
    # -- who may act on what (beyond roles)
    ("link-by-other-city-admin", "LinkIdentifier", ("Shanghai", "admin"),
     _with("LinkIdentifier"), Unauthorized, None, "only Kunshan"),
    ("link-by-other-city-department", "LinkIdentifier", ("Taicang", "transport"),
     _with("LinkIdentifier"), Unauthorized, None, "only Kunshan"),
    ("revoke-by-other-city", "RevokeIdentifier", ("Shanghai", "transport"),
     _with("RevokeIdentifier"), Unauthorized, None, "only Kunshan"),
    ("apply-unregistered-department", "ApplyCodeScheme", ("Taicang", "transport"),
     _with("ApplyCodeScheme"), Unauthorized, None, "not registered"),
    ("apply-unregistered-department-2", "ApplyCodeScheme", ("Shanghai", "health"),
     _with("ApplyCodeScheme"), Unauthorized, None, "health"),
    ("approve-by-other-city-admin", "ApproveCodeScheme", ("Shanghai", "admin"),
     _with("ApproveCodeScheme"), Unauthorized, None, "Kunshan"),
    ("reject-by-other-city-admin", "RejectCodeScheme", ("Taicang", "admin"),
     _with("RejectCodeScheme"), Unauthorized, None, "Kunshan"),
    # -- identifiers
    ("register-duplicate-natural-key", "RegisterIdentifier", ("Kunshan", "health"),
     lambda w: identifier_args("person", "cn-id", w.person_hash), Conflict,
     "natural_key_hash", "natural-key hash"),
    ("link-missing-identifier", "LinkIdentifier", ("Kunshan", "transport"),
     _with("LinkIdentifier", identifier_id=MISSING), NotFound, "identifier_id",
     MISSING),
    ("link-missing-target", "LinkIdentifier", ("Kunshan", "transport"),
     _with("LinkIdentifier", target_id=MISSING), NotFound, "target_id", MISSING),
    ("link-target-not-an-identifier", "LinkIdentifier", ("Kunshan", "transport"),
     _with("LinkIdentifier", target_id=lambda w: w.scheme), NotFound, "target_id",
     "is not an"),
    ("link-to-itself", "LinkIdentifier", ("Kunshan", "transport"),
     _with("LinkIdentifier", target_id=lambda w: w.obj), InvalidArgument,
     "target_id", "itself"),
    ("link-business-to-wrong-kind", "LinkIdentifier", ("Kunshan", "transport"),
     _with("LinkIdentifier", relation="person"), InvalidArgument, "target_id",
     "needs a person target"),
    ("revoke-missing", "RevokeIdentifier", ("Kunshan", "transport"),
     _with("RevokeIdentifier", identifier_id=MISSING), NotFound, "identifier_id",
     MISSING),
    # -- departments and code schemes
    ("department-registered-twice", "RegisterDepartment", ("Kunshan", "admin"),
     _with("RegisterDepartment", code="transport"), Conflict, "code",
     "already registered"),
    ("apply-twice", "ApplyCodeScheme", ("Kunshan", "transport"),
     _with("ApplyCodeScheme", application_name="metro-qr"), Conflict,
     "application_name", "metro-qr"),
    ("approve-missing-scheme", "ApproveCodeScheme", (CENTER, "admin"),
     _with("ApproveCodeScheme", scheme_id=MISSING), NotFound, "scheme_id", MISSING),
    ("approve-an-identifier", "ApproveCodeScheme", (CENTER, "admin"),
     _with("ApproveCodeScheme", scheme_id=lambda w: w.person), NotFound,
     "scheme_id", "not a code scheme"),
    ("reject-missing-scheme", "RejectCodeScheme", (CENTER, "admin"),
     _with("RejectCodeScheme", scheme_id=MISSING), NotFound, "scheme_id", MISSING),
    # -- card transaction batches
    ("report-issuer-is-acquirer", "ReportTransactionBatch", ("Kunshan", "admin"),
     lambda w: batch_args([R("n1", "Shanghai"), R("n2", "Kunshan")]),
     InvalidArgument, "records.1.issuer_city", "must differ from the acquirer"),
    ("report-issuer-not-a-member", "ReportTransactionBatch", ("Kunshan", "admin"),
     lambda w: batch_args([R("n1", "Beijing")]), InvalidArgument,
     "records.0.issuer_city", "Beijing"),
    ("report-issuer-is-the-center", "ReportTransactionBatch", ("Kunshan", "admin"),
     lambda w: batch_args([R("n1", CENTER)]), InvalidArgument,
     "records.0.issuer_city", "not a member"),
    ("report-record-twice-in-batch", "ReportTransactionBatch", ("Kunshan", "admin"),
     lambda w: batch_args([R("n1", "Shanghai"), R("n2", "Taicang"),
                           R("n1", "Taicang", 7)]),
     InvalidArgument, "records.2.record_id", "appears twice"),
    ("report-record-of-earlier-batch", "ReportTransactionBatch", ("Kunshan", "admin"),
     lambda w: batch_args([R("n1", "Shanghai"), R("t1", "Taicang", 999)]),
     Conflict, "records.1.record_id", "already reported"),
    ("report-same-batch-again", "ReportTransactionBatch", ("Kunshan", "terminal"),
     lambda w: batch_args(w.records), Conflict, "records.0.record_id",
     "already reported"),
    ("report-wrong-merkle-root", "ReportTransactionBatch", ("Kunshan", "admin"),
     lambda w: {**batch_args([R("n1", "Shanghai")]),
                "merkle_root": merkle_root([R("n1", "Shanghai", 201)])},
     InvalidArgument, "merkle_root", "does not match"),
    ("report-root-of-other-order", "ReportTransactionBatch", ("Kunshan", "admin"),
     lambda w: {**batch_args([R("n1", "Shanghai"), R("n2", "Taicang")]),
                "merkle_root": merkle_root([R("n2", "Taicang"), R("n1", "Shanghai")])},
     InvalidArgument, "merkle_root", "does not match"),
    ("confirm-records-of-other-issuer", "ConfirmTransactions", ("Taicang", "admin"),
     _with("ConfirmTransactions"), Unauthorized, "record_ids",
     "issued by Shanghai"),
    ("confirm-by-the-acquirer", "ConfirmTransactions", ("Kunshan", "admin"),
     lambda w: {"batch_id": w.batch}, Conflict, "record_ids", "no reported records"),
    ("confirm-unknown-record", "ConfirmTransactions", ("Shanghai", "admin"),
     _with("ConfirmTransactions", record_ids=["s1", "x9"]), InvalidArgument,
     "record_ids", "'x9'"),
    ("confirm-missing-batch", "ConfirmTransactions", ("Shanghai", "admin"),
     _with("ConfirmTransactions", batch_id=MISSING), NotFound, "batch_id", MISSING),
    ("dispute-records-of-other-issuer", "DisputeTransactions", ("Shanghai", "admin"),
     _with("DisputeTransactions", record_ids=["s2", "t1"]), Unauthorized,
     "record_ids", "issued by Taicang"),
    ("dispute-by-the-acquirer", "DisputeTransactions", ("Kunshan", "admin"),
     _with("DisputeTransactions"), Unauthorized, "record_ids", "not Kunshan"),
    ("dispute-missing-batch", "DisputeTransactions", ("Shanghai", "admin"),
     _with("DisputeTransactions", batch_id=lambda w: w.scheme), NotFound,
     "batch_id", "not a batch"),
]


@pytest.mark.parametrize(
    ("function", "caller", "make", "error", "field", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in REJECTIONS])
def test_rejected_by_rule(shared: World, function: str, caller: Caller,
                          make: Callable[[World], Args], error: type[ContractError],
                          field: str | None, fragment: str) -> None:
    rejected(shared, caller, function, make(shared), error, field, fragment)


# ------------------------------------------------------- malformed arguments
def _wrong_type(value: Any) -> Any:
    if isinstance(value, bool):
        return "true"
    if isinstance(value, list):
        return "not-a-list"
    return 12345


def _generic_malformed() -> list[Any]:
    """Missing, wrongly typed and extra fields, for every command."""
    dummy = World(None, None, person="1" * 32, obj="2" * 32, org="3" * 32,  # type: ignore[arg-type]
                  scheme="4" * 32, batch="5" * 32)
    cases = []
    for function, (_, make) in sorted(VALID.items()):
        for key, value in make(dummy).items():
            if (function, key) not in OPTIONAL:
                cases.append(pytest.param(function, {key: None}, key,
                                          id=f"{function}-missing-{key}"))
            cases.append(pytest.param(function, {key: _wrong_type(value)}, key,
                                      id=f"{function}-wrong-type-{key}"))
        cases.append(pytest.param(function, {"owner": "me"}, "owner",
                                  id=f"{function}-extra-field"))
    return cases


def _record_change(**changes: Any) -> dict[str, Any]:
    """Replace the first record of the valid batch with a changed one."""
    rec = {**card_record("n1", "Shanghai"), **changes}
    return {"records": [{k: v for k, v in rec.items() if v is not None}]}


HASH = "ab" * 32
SPECIFIC: list[tuple[str, str, Args, str]] = [
    # RegisterIdentifier
    ("kind-not-accepted", "RegisterIdentifier", {"kind": "animal"}, "kind"),
    ("category-not-accepted", "RegisterIdentifier", {"category": "other"},
     "category"),
    ("scheme-with-space", "RegisterIdentifier", {"scheme": "cn id"}, "scheme"),
    ("scheme-empty", "RegisterIdentifier", {"scheme": ""}, "scheme"),
    ("scheme-too-long", "RegisterIdentifier", {"scheme": "s" * 65}, "scheme"),
    ("hash-uppercase", "RegisterIdentifier", {"natural_key_hash": HASH.upper()},
     "natural_key_hash"),
    ("hash-short", "RegisterIdentifier", {"natural_key_hash": HASH[:-1]},
     "natural_key_hash"),
    ("hash-clear-text", "RegisterIdentifier",
     {"natural_key_hash": "110101199003070000"}, "natural_key_hash"),
    ("attributes-not-base64", "RegisterIdentifier",
     {"attributes": "name=Zhang San"}, "attributes"),
    # LinkIdentifier / RevokeIdentifier
    ("identifier-id-not-uuid", "LinkIdentifier", {"identifier_id": "obj-1"},
     "identifier_id"),
    ("target-id-not-uuid", "LinkIdentifier", {"target_id": "12"}, "target_id"),
    ("relation-not-accepted", "LinkIdentifier", {"relation": "friend"},
     "relation"),
    ("revoke-reason-empty", "RevokeIdentifier", {"reason": ""}, "reason"),
    ("revoke-reason-too-long", "RevokeIdentifier", {"reason": "x" * 501},
     "reason"),
    # RegisterDepartment / ApplyCodeScheme
    ("department-code-pattern", "RegisterDepartment", {"code": "water dept"},
     "code"),
    ("department-name-empty", "RegisterDepartment", {"name": ""}, "name"),
    ("department-no-duties", "RegisterDepartment", {"duties": []}, "duties"),
    ("department-duty-pattern", "RegisterDepartment", {"duties": ["Water"]},
     "duties.0"),
    ("department-duty-not-string", "RegisterDepartment", {"duties": ["water", 3]},
     "duties.1"),
    ("code-type-pattern", "ApplyCodeScheme", {"code_type": "Transport"},
     "code_type"),
    ("scope-empty", "ApplyCodeScheme", {"scope": ""}, "scope"),
    ("commitment-as-int", "ApplyCodeScheme", {"data_sharing_commitment": 1},
     "data_sharing_commitment"),
    # ApproveCodeScheme / RejectCodeScheme
    ("scheme-id-not-uuid", "ApproveCodeScheme", {"scheme_id": "metro-qr"},
     "scheme_id"),
    ("reject-reason-empty", "RejectCodeScheme", {"reason": ""}, "reason"),
    # ReportTransactionBatch
    ("no-records", "ReportTransactionBatch", {"records": []}, "records"),
    ("record-not-object", "ReportTransactionBatch", {"records": ["n1"]},
     "records.0"),
    ("amount-zero", "ReportTransactionBatch", _record_change(amount_fen=0),
     "records.0.amount_fen"),
    ("amount-negative", "ReportTransactionBatch", _record_change(amount_fen=-200),
     "records.0.amount_fen"),
    ("amount-float", "ReportTransactionBatch", _record_change(amount_fen=2.5),
     "records.0.amount_fen"),
    ("amount-whole-float", "ReportTransactionBatch",
     _record_change(amount_fen=200.0), "records.0.amount_fen"),
    ("amount-string", "ReportTransactionBatch", _record_change(amount_fen="200"),
     "records.0.amount_fen"),
    ("amount-bool", "ReportTransactionBatch", _record_change(amount_fen=True),
     "records.0.amount_fen"),
    ("amount-too-large", "ReportTransactionBatch",
     _record_change(amount_fen=100_000_001), "records.0.amount_fen"),
    ("record-missing-amount", "ReportTransactionBatch",
     _record_change(amount_fen=None), "records.0.amount_fen"),
    ("record-extra-field", "ReportTransactionBatch",
     _record_change(card_number="6217000000000000"), "records.0.card_number"),
    ("record-id-pattern", "ReportTransactionBatch",
     _record_change(record_id="n 1"), "records.0.record_id"),
    ("issuer-empty", "ReportTransactionBatch", _record_change(issuer_city=""),
     "records.0.issuer_city"),
    ("card-hash-short", "ReportTransactionBatch",
     _record_change(card_id_hash="abc"), "records.0.card_id_hash"),
    ("time-without-zone", "ReportTransactionBatch",
     _record_change(time="2026-11-20T08:00:00"), "records.0.time"),
    ("time-other-zone", "ReportTransactionBatch",
     _record_change(time="2026-11-20T08:00:00+08:00"), "records.0.time"),
    ("time-bad-month", "ReportTransactionBatch",
     _record_change(time="2026-13-20T08:00:00Z"), "records.0.time"),
    ("merkle-root-not-hex", "ReportTransactionBatch", {"merkle_root": "z" * 64},
     "merkle_root"),
    ("merkle-root-short", "ReportTransactionBatch", {"merkle_root": HASH[:62]},
     "merkle_root"),
    ("business-day-not-a-date", "ReportTransactionBatch",
     {"business_day": "2026-02-30"}, "business_day"),
    ("business-day-slashes", "ReportTransactionBatch",
     {"business_day": "2026/11/20"}, "business_day"),
    # ConfirmTransactions / DisputeTransactions
    ("batch-id-not-uuid", "ConfirmTransactions", {"batch_id": "batch-1"},
     "batch_id"),
    ("confirm-record-id-pattern", "ConfirmTransactions", {"record_ids": ["s 1"]},
     "record_ids.0"),
    ("dispute-no-records", "DisputeTransactions", {"record_ids": []},
     "record_ids"),
    ("dispute-reason-empty", "DisputeTransactions", {"reason": ""}, "reason"),
    # RunClearing
    ("clearing-day-not-a-date", "RunClearing", {"business_day": "2026-11-31"},
     "business_day"),
    ("clearing-day-month-13", "RunClearing", {"business_day": "2026-13-01"},
     "business_day"),
    ("clearing-day-word", "RunClearing", {"business_day": "today"},
     "business_day"),
    ("clearing-day-number", "RunClearing", {"business_day": 20261120},
     "business_day"),
]


@pytest.mark.parametrize(
    ("function", "changes", "field"),
    [*_generic_malformed(),
     *(pytest.param(*case[1:], id=f"{case[1]}-{case[0]}") for case in SPECIFIC)])
def test_malformed_argument(shared: World, function: str, changes: Args,
                            field: str) -> None:
    caller, make = VALID[function]
    args = make(shared)
    for key, value in changes.items():
        if value is None:
            args.pop(key)
        else:
            args[key] = value
    err = rejected(shared, caller, function, args, InvalidArgument, field)
    assert err.message.startswith(f"{field}: ")


def test_unknown_function_names_the_accepted_ones(shared: World) -> None:
    err = rejected(shared, ("Kunshan", "admin"), "DeleteEverything", {},
                   InvalidArgument, "function", "DeleteEverything")
    assert "RunClearing" in err.message


def test_arguments_must_be_an_object(shared: World) -> None:
    rejected(shared, (CENTER, "admin"), "RunClearing", [DAY], InvalidArgument,
             "args", "object")


# --------------------------------------------------------------- identifiers
def test_register_identifier(ids: Clients) -> None:
    nk = unique_hash()
    receipt = ids("Taicang", "health").submit("RegisterIdentifier", {
        "kind": "person", "category": "identity", "scheme": "cn-id",
        "natural_key_hash": nk, "attributes": "c2VjcmV0"})
    ident = derive_identifier_id("cn-id", nk)
    assert receipt.result == {"id": ident, "status": "active"}
    assert event_types(receipt) == ["IdentifierRegistered"]
    ev = receipt.events[0]
    assert ev["aggregate_id"] == ident and ev["version"] == 1
    assert ev["data"] == {"kind": "person", "category": "identity", "scheme": "cn-id",
                          "natural_key_hash": nk, "attributes": "c2VjcmV0",
                          "city": "Taicang", "registered_by":
                          "Taicang:department/health"}
    tx = ids.node.block(receipt.block_number)["transactions"][0]
    assert ev["timestamp"] == tx["proposal"]["timestamp"]  # tx time, not the clock
    # the same natural key under another scheme is another identifier
    other = ids("Taicang", "admin").submit("RegisterIdentifier", identifier_args(
        "organisation", "uscc", nk))
    assert other.result["id"] == derive_identifier_id("uscc", nk) != ident


def test_object_is_active_only_with_physical_and_business_link(world: World) -> None:
    ks = ("Kunshan", "transport")
    assert get(world, "GetIdentifier", {"id": world.obj})["status"] == "pending"
    place = submit(world, ks, "RegisterIdentifier", identifier_args(
        "place", "poi")).result["id"]
    first = submit(world, ks, "LinkIdentifier", {
        "identifier_id": world.obj, "target_id": place, "relation": "attached"})
    second = submit(world, ks, "LinkIdentifier", {
        "identifier_id": world.obj, "target_id": world.person,
        "relation": "contains"})
    assert event_types(first) == event_types(second) == ["IdentifierLinked"]
    assert first.events[0]["data"] == {"target_id": place, "relation": "attached",
                                       "linked_by": "Kunshan:department/transport"}
    assert second.result["status"] == "pending"  # physical links only
    third = submit(world, ("Kunshan", "admin"), "LinkIdentifier", {
        "identifier_id": world.obj, "target_id": world.org,
        "relation": "organisation"})
    assert event_types(third) == ["IdentifierLinked", "IdentifierActivated"]
    assert [e["version"] for e in third.events] == [4, 5]
    assert third.result == {"id": world.obj, "status": "active"}
    state = get(world, "GetIdentifier", {"id": world.obj})
    assert state["status"] == "active" and len(state["links"]) == 3
    # a further link records no second activation
    fourth = submit(world, ks, "LinkIdentifier", {
        "identifier_id": world.obj, "target_id": world.person,
        "relation": "person"})
    assert event_types(fourth) == ["IdentifierLinked"]


def test_business_link_alone_does_not_activate(world: World) -> None:
    receipt = submit(world, ("Kunshan", "transport"), "LinkIdentifier", {
        "identifier_id": world.obj, "target_id": world.person, "relation": "person"})
    assert event_types(receipt) == ["IdentifierLinked"]
    assert receipt.result["status"] == "pending"


def test_link_rules_on_recorded_state(world: World) -> None:
    ks = ("Kunshan", "transport")
    link = {"identifier_id": world.obj, "target_id": world.org,
            "relation": "organisation"}
    submit(world, ks, "LinkIdentifier", link)
    rejected(world, ("Kunshan", "health"), "LinkIdentifier", link, Conflict,
             "target_id", "already recorded")
    submit(world, ks, "RevokeIdentifier", {"identifier_id": world.person,
                                            "reason": "deceased"})
    rejected(world, ks, "LinkIdentifier", {
        "identifier_id": world.obj, "target_id": world.person,
        "relation": "attached"}, Conflict, "target_id", "revoked")
    rejected(world, ks, "LinkIdentifier", {
        "identifier_id": world.person, "target_id": world.obj,
        "relation": "attached"}, Conflict, "target_id", "revoked")


def test_revoke_identifier(world: World) -> None:
    receipt = submit(world, ("Kunshan", "admin"), "RevokeIdentifier", {
        "identifier_id": world.person, "reason": "registered twice"})
    assert receipt.result == {"id": world.person, "status": "revoked"}
    assert event_types(receipt) == ["IdentifierRevoked"]
    assert receipt.events[0]["data"] == {"reason": "registered twice",
                                         "revoked_by": "Kunshan:city_admin"}
    assert get(world, "GetIdentifier", {"id": world.person})["status"] == "revoked"
    rejected(world, ("Kunshan", "transport"), "RevokeIdentifier", {
        "identifier_id": world.person, "reason": "again"}, Conflict,
        "identifier_id", "already revoked")


# ------------------------------------------------------------- code schemes
def test_register_department(ids: Clients) -> None:
    receipt = ids("Taicang").submit("RegisterDepartment", {
        "code": "transport", "name": "Transport", "duties": ["transport", "bus",
                                                             "transport"]})
    assert event_types(receipt) == ["DepartmentRegistered"]
    assert receipt.events[0]["data"] == {"city": "Taicang", "code": "transport",
                                         "name": "Transport",
                                         "duties": ["bus", "transport"]}
    # the same code in another city is another department
    other = ids("Kunshan").submit("RegisterDepartment", {
        "code": "transport", "name": "Transport", "duties": ["transport"]})
    assert other.result["id"] != receipt.result["id"]
    assert ids("Kunshan").evaluate("GetDepartment", {
        "city": "Taicang", "code": "transport"})["duties"] == ["bus", "transport"]


def test_apply_code_scheme(world: World) -> None:
    receipt = submit(world, ("Kunshan", "health"), "ApplyCodeScheme", {
        "application_name": "health-qr", "code_type": "health", "scope": "Kunshan",
        "data_sharing_commitment": False})
    assert receipt.result["status"] == "applied"
    assert event_types(receipt) == ["CodeSchemeApplied"]
    assert receipt.events[0]["data"] == {
        "city": "Kunshan", "department": "health", "application_name": "health-qr",
        "code_type": "health", "scope": "Kunshan", "data_sharing_commitment": False,
        "applied_by": "Kunshan:department/health"}


@pytest.mark.parametrize("approver", [(CENTER, "admin"), ("Kunshan", "admin")])
def test_approve_records_the_checks(world: World, approver: Caller) -> None:
    receipt = submit(world, approver, "ApproveCodeScheme", {"scheme_id": world.scheme})
    checks = {"duty": True, "duplicate": True, "sharing": True}
    assert receipt.result == {"id": world.scheme, "status": "approved",
                              "checks": checks}
    assert event_types(receipt) == ["CodeSchemeApproved"]
    role = "center_admin" if approver[0] == CENTER else "city_admin"
    assert receipt.events[0]["data"] == {"checks": checks,
                                         "approved_by": f"{approver[0]}:{role}"}
    assert get(world, "GetCodeScheme", {"id": world.scheme})["status"] == "approved"
    for function in ("ApproveCodeScheme", "RejectCodeScheme"):
        rejected(world, (CENTER, "admin"), function,
                 VALID[function][1](world), Conflict, "scheme_id",
                 "already approved")


def _apply(w: World, caller: Caller, name: str, code_type: str, scope: str,
           commitment: bool = True) -> str:
    return submit(w, caller, "ApplyCodeScheme", {
        "application_name": name, "code_type": code_type, "scope": scope,
        "data_sharing_commitment": commitment}).result["id"]


@pytest.mark.parametrize("failing", ["duty", "duplicate", "sharing"])
def test_failed_check_blocks_approval_and_is_recorded_by_reject(
        world: World, failing: str) -> None:
    ks = ("Kunshan", "transport")
    if failing == "duty":  # transport's duties are transport and payment
        scheme = _apply(world, ks, "parking-qr", "parking", "Kunshan")
    elif failing == "duplicate":  # transport/Kunshan is already covered
        submit(world, (CENTER, "admin"), "ApproveCodeScheme",
               {"scheme_id": world.scheme})
        scheme = _apply(world, ks, "metro-qr-2", "transport", "Kunshan")
    else:
        scheme = _apply(world, ks, "pay-qr", "payment", "Kunshan", commitment=False)
    err = rejected(world, (CENTER, "admin"), "ApproveCodeScheme",
                   {"scheme_id": scheme}, ChecksFailed, "scheme_id", failing)
    assert "reject" in err.message
    receipt = submit(world, ("Kunshan", "admin"), "RejectCodeScheme", {
        "scheme_id": scheme, "reason": f"{failing} check failed"})
    checks = {"duty": True, "duplicate": True, "sharing": True, failing: False}
    assert receipt.result == {"id": scheme, "status": "rejected", "checks": checks}
    assert event_types(receipt) == ["CodeSchemeRejected"]
    assert receipt.events[0]["data"] == {"checks": checks,
                                         "reason": f"{failing} check failed",
                                         "rejected_by": "Kunshan:city_admin"}
    rejected(world, (CENTER, "admin"), "ApproveCodeScheme", {"scheme_id": scheme},
             Conflict, "scheme_id", "already rejected")


def test_same_code_type_in_another_scope_is_no_duplicate(world: World) -> None:
    submit(world, (CENTER, "admin"), "ApproveCodeScheme", {"scheme_id": world.scheme})
    other = _apply(world, ("Kunshan", "transport"), "metro-qr-2", "transport",
                   "Kunshan-metro")
    receipt = submit(world, (CENTER, "admin"), "ApproveCodeScheme",
                     {"scheme_id": other})
    assert receipt.result["checks"]["duplicate"] is True


# ------------------------------------------------ card transaction batches
def test_report_batch(ids: Clients) -> None:
    records = [card_record("a1", "Shanghai", 300), card_record("a2", "Kunshan", 45)]
    args = batch_args(records)
    receipt = ids("Taicang", "terminal").submit("ReportTransactionBatch", args)
    assert receipt.result["count"] == 2 and receipt.result["amount_fen"] == 345
    assert event_types(receipt) == ["TransactionBatchReported"]
    data = receipt.events[0]["data"]
    assert data["acquirer_city"] == "Taicang"
    assert data["merkle_root"] == args["merkle_root"]
    assert data["business_day"] == DAY
    assert (data["count"], data["amount_fen"]) == (2, 345)
    assert data["records"] == records
    assert data["reported_by"] == "Taicang:terminal"
    # record ids are per acquirer: Kunshan may use the same ids
    again = ids("Kunshan").submit("ReportTransactionBatch", batch_args(
        [card_record("a1", "Taicang", 300)]))
    assert again.result["id"] != receipt.result["id"]


def test_confirm_all_of_own_records(world: World) -> None:
    receipt = submit(world, ("Shanghai", "admin"), "ConfirmTransactions",
                     {"batch_id": world.batch})
    assert receipt.result == {"id": world.batch, "confirmed": 2}
    assert event_types(receipt) == ["TransactionBatchConfirmed"]
    assert receipt.events[0]["data"] == {"issuer_city": "Shanghai",
                                         "record_ids": ["s1", "s2"],
                                         "confirmed_by": "Shanghai:city_admin"}
    status = get(world, "GetBatch", {"id": world.batch})["status"]
    assert status == {"s1": "confirmed", "s2": "confirmed", "t1": "reported"}
    rejected(world, ("Shanghai", "admin"), "ConfirmTransactions",
             {"batch_id": world.batch}, Conflict, "record_ids", "no reported")
    rejected(world, ("Shanghai", "admin"), "DisputeTransactions", {
        "batch_id": world.batch, "record_ids": ["s1"], "reason": "late"},
        Conflict, "record_ids", "already confirmed")


def test_dispute_then_no_confirm(world: World) -> None:
    receipt = submit(world, ("Shanghai", "admin"), "DisputeTransactions", {
        "batch_id": world.batch, "record_ids": ["s2", "s2"], "reason": "double"})
    assert receipt.result == {"id": world.batch, "disputed": 1}
    assert event_types(receipt) == ["TransactionBatchDisputed"]
    assert receipt.events[0]["data"] == {"issuer_city": "Shanghai",
                                         "record_ids": ["s2"], "reason": "double",
                                         "disputed_by": "Shanghai:city_admin"}
    rejected(world, ("Shanghai", "admin"), "ConfirmTransactions", {
        "batch_id": world.batch, "record_ids": ["s2"]}, Conflict, "record_ids",
        "already disputed")
    confirmed = submit(world, ("Shanghai", "admin"), "ConfirmTransactions",
                       {"batch_id": world.batch})
    assert confirmed.events[0]["data"]["record_ids"] == ["s1"]


def test_clearing(world: World) -> None:
    ta = ("Taicang", "admin")
    second = submit(world, ta, "ReportTransactionBatch", batch_args(
        [card_record("x1", "Kunshan", 1000), card_record("x2", "Shanghai", 7)])
    ).result["id"]
    other_day = submit(world, ta, "ReportTransactionBatch", batch_args(
        [card_record("y1", "Kunshan", 5000)], "2026-11-21")).result["id"]
    submit(world, ("Shanghai", "admin"), "DisputeTransactions", {
        "batch_id": world.batch, "record_ids": ["s2"], "reason": "double charge"})
    submit(world, ("Taicang", "admin"), "ConfirmTransactions",
           {"batch_id": world.batch})
    receipt = submit(world, (CENTER, "admin"), "RunClearing", {"business_day": DAY})
    # Kunshan carried s1 300 + t1 125 (s2 450 disputed); Taicang carried
    # x1 1000 (issued by Kunshan) + x2 7 (issued by Shanghai).
    positions = {"Kunshan": 425 - 1000, "Shanghai": -300 - 7,
                 "Taicang": -125 + 1007}
    assert sum(positions.values()) == 0
    assert receipt.result["positions"] == positions
    assert (receipt.result["records"], receipt.result["excluded_disputed"],
            receipt.result["gross_fen"]) == (4, 1, 1432)
    assert event_types(receipt) == ["ClearingRunCompleted"]
    data = receipt.events[0]["data"]
    assert data["positions"] == positions and data["business_day"] == DAY
    assert sorted(data["batches"]) == sorted([world.batch, second])
    assert other_day not in data["batches"]
    assert data["run_by"] == "Center:center_admin"
    assert get(world, "GetClearingRun", {"business_day": DAY})["positions"] == \
        positions

    # once per day, and the day is closed
    rejected(world, (CENTER, "admin"), "RunClearing", {"business_day": DAY},
             Conflict, "business_day", "already cleared")
    rejected(world, ("Kunshan", "admin"), "ReportTransactionBatch", batch_args(
        [card_record("late1", "Shanghai")]), Conflict, "business_day",
        "already cleared")
    rejected(world, ("Shanghai", "admin"), "ConfirmTransactions",
             {"batch_id": world.batch, "record_ids": ["s1"]}, Conflict,
             "business_day", "already cleared")
    rejected(world, ("Kunshan", "admin"), "DisputeTransactions", {
        "batch_id": second, "record_ids": ["x1"], "reason": "late"}, Conflict,
        "business_day", "already cleared")
    # other days stay open
    assert submit(world, ("Kunshan", "admin"), "ConfirmTransactions",
                  {"batch_id": other_day}).result["confirmed"] == 1


def test_clearing_an_empty_day(ids: Clients) -> None:
    receipt = ids(CENTER).submit("RunClearing", {"business_day": "2026-01-01"})
    assert receipt.result["positions"] == dict.fromkeys(sorted(CITIES), 0)
    assert receipt.result["records"] == receipt.result["gross_fen"] == 0


def test_rejection_leaves_no_partial_writes(world: World) -> None:
    # The second record is rejected after the first passed every check: none of
    # the batch may be stored, so the first record id stays free.
    rejected(world, ("Kunshan", "admin"), "ReportTransactionBatch",
             batch_args([card_record("p1", "Shanghai"), card_record("s1", "Taicang")]),
             Conflict, "records.1.record_id")
    ok = submit(world, ("Kunshan", "admin"), "ReportTransactionBatch",
                batch_args([card_record("p1", "Shanghai")]))
    assert ok.result["count"] == 1


def test_errors_cross_the_wire_as_typed_payloads() -> None:
    from chaincode.errors import from_payload

    for cls in (InvalidArgument, Unauthorized, NotFound, Conflict, ChecksFailed):
        err = cls("bad thing", "records.0.amount_fen")
        back = from_payload(err.to_payload())
        assert type(back) is cls
        assert (back.message, back.field) == ("bad thing", "records.0.amount_fen")
    assert from_payload("not json") is None
    assert from_payload('{"error": "Nope", "message": "x"}') is None

