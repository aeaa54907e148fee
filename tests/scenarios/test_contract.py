"""The contract on every ledger: every command's happy path and events, who may
call it, malformed arguments, and the domain invariants.

Every rejection must be a typed ``ContractError`` with a clear message that
writes nothing: the rejection tests compare ``snapshot`` before and after. They
share one module-scoped world (a rejection changes nothing); the happy paths each
build their own. All of them run on a ledger other tests have written to (see
conftest.py), so they make their own keys and business days.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import (
    CENTER,
    CITIES,
    KUNSHAN,
    OPTIONAL,
    TIME,
    VALID,
    Clients,
    World,
    batch_args,
    card_record,
    certificate,
    code_batch_args,
    code_scan,
    event_types,
    fresh_day,
    identifier_args,
    register_departments,
    rejected,
    unique_hash,
    unique_name,
    usage_args,
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
from ledger import crypto
from ledger.crypto import x509
from ledger.protocol import Ledger, Receipt

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
    "PublishFeeRule": frozenset({Role.CENTER_ADMIN}),
    "RespondToDispute": frozenset({Role.CITY_ADMIN}),
    "ArbitrateDispute": frozenset({Role.CENTER_ADMIN}),
    "RegisterSettlementKey": frozenset({Role.CITY_ADMIN}),
    "ConfirmSettlement": frozenset({Role.CITY_ADMIN}),
    "CompleteSettlement": frozenset({Role.CENTER_ADMIN}),
    "BlacklistCards": frozenset({Role.CITY_ADMIN}),
    "CertifyIssuerKey": frozenset({Role.CENTER_ADMIN}),
    "CertifyUserKey": frozenset({Role.CITY_ADMIN}),
    "RevokeIssuerKey": frozenset({Role.CENTER_ADMIN, Role.CITY_ADMIN}),
    "FileGuideUrl": frozenset({Role.DEPARTMENT}),
    "ApproveGuideUrl": frozenset({Role.CITY_ADMIN, Role.CENTER_ADMIN}),
    "RejectGuideUrl": frozenset({Role.CITY_ADMIN, Role.CENTER_ADMIN}),
    "IssueCodeBatch": frozenset({Role.DEPARTMENT}),
    "RevokeUserCertificate": frozenset({Role.CITY_ADMIN, Role.CENTER_ADMIN}),
    "ReportCodeUsage": frozenset({Role.TERMINAL, Role.CITY_ADMIN}),
    # cameras: workers raise with a terminal identity; people decide
    "RegisterCamera": frozenset({Role.DEPARTMENT, Role.CITY_ADMIN}),
    "RaiseVideoAlert": frozenset({Role.TERMINAL}),
    "ReviewAlert": frozenset({Role.DEPARTMENT, Role.CITY_ADMIN}),
    "DispatchAlert": frozenset({Role.DEPARTMENT, Role.CITY_ADMIN}),
    "HandleAlert": frozenset({Role.DEPARTMENT, Role.CITY_ADMIN}),
    "StartCallCampaign": frozenset({Role.DEPARTMENT}),
    "CompleteCallCampaign": frozenset({Role.DEPARTMENT}),
    "RecordCallOutcomes": frozenset({Role.DEPARTMENT}),
}


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
    auditor = world.ids(CENTER, "auditor")
    args = make(world)  # may prepare what the call needs first
    height = auditor.height()
    receipt = submit(world, caller, function, args)
    assert receipt.block_number == height
    assert receipt.events, f"{function} recorded no event"
    assert auditor.height() == height + 1


# ------------------------------------------------------------ unauthorized
def _identities_of(role: Role, home: str) -> list[Caller]:
    # Center's "node" (an auditor) is the embedded ledger's own identity, which
    # a Fabric wallet does not have: test_contract_embedded.py covers it.
    return {
        Role.CENTER_ADMIN: [(CENTER, "admin")],
        Role.AUDITOR: [(CENTER, "auditor"), (home, "auditor")],
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
                cases.append(pytest.param(function, org, user, role,
                                          id=f"{function}-{org}-{user}"))
    return cases


@pytest.mark.parametrize(("function", "org", "user", "role"), _unauthorized_cases())
def test_role_not_allowed(shared: World, function: str, org: str, user: str,
                          role: Role) -> None:
    err = rejected(shared.ids, (org, user), function, VALID[function][1](shared),
                   Unauthorized)
    assert function in err.message
    assert f"the caller is {role.value}" in err.message


# -------------------------------------------- unregistered department callers
# Every city's ``ghost`` is a department identity whose department (its
# certificate says "never-registered") no one registers (conftest.py).
DEPARTMENT_COMMANDS = sorted(f for f, roles in ALLOWED.items()
                             if Role.DEPARTMENT in roles)


@pytest.mark.parametrize("city", CITIES)
@pytest.mark.parametrize("function", DEPARTMENT_COMMANDS)
def test_unregistered_department_may_call_no_command(shared: World, function: str,
                                                     city: str) -> None:
    """With arguments a registered department's call succeeds with (in Kunshan,
    the city of the world's identifiers, nothing else would refuse it)."""
    rejected(shared.ids, (city, "ghost"), function, VALID[function][1](shared),
             Unauthorized, None,
             f"department never-registered is not registered in {city}")


@pytest.mark.parametrize("function", DEPARTMENT_COMMANDS)
def test_unregistered_department_is_refused_before_its_arguments(
        shared: World, function: str) -> None:
    rejected(shared.ids, ("Kunshan", "ghost"), function, {"owner": "me"},
             Unauthorized, None, "never-registered")


# ---------------------------------------------- rejections by domain rules
def _with(function: str, **changes: Any) -> Callable[[World], Args]:
    def make(w: World) -> Args:
        args = VALID[function][1](w)
        args.update({k: v(w) if callable(v) else v for k, v in changes.items()})
        return args
    return make


def _batch(*records: tuple[Any, ...]) -> Callable[[World], Args]:
    """A batch of the world's day whose records are ``(name, issuer[, amount])``
    (``name`` made the world's own record id)."""
    def make(w: World) -> Args:
        return batch_args([w.record(*r) for r in records], w.day)
    return make


def _root_of(*records: tuple[Any, ...]) -> Callable[[World], str]:
    return lambda w: merkle_root([w.record(*r) for r in records])


MISSING = str(uuid.UUID(int=7))


def _reported_usage(w: World) -> Args:
    """ReportCodeUsage arguments a Kunshan terminal has just reported."""
    args = VALID["ReportCodeUsage"][1](w)
    submit(w, ("Kunshan", "terminal"), "ReportCodeUsage", args)
    return args


def _issued_prefix(w: World) -> str:
    """The serial prefix of a batch just issued for the world's approved scheme."""
    args = code_batch_args(w)
    submit(w, ("Kunshan", "transport"), "IssueCodeBatch", args)
    return str(args["serial_prefix"])


def _expired(w: World) -> str:
    """A Kunshan user certificate whose validity ended a month ago."""
    private, cert = w.issuer_keys().institution
    _, public = crypto.get_backend().sm2_generate()
    start = datetime.now(UTC) - timedelta(days=60)
    return x509.issue(KUNSHAN, public, cert.subject, private, cert.public_key, 77,
                      start, start + timedelta(days=30)).pem
REJECTIONS: list[tuple[str, str, Caller, Callable[[World], Args],
                       type[ContractError], str | None, str]] = [
    # -- who may act on what (beyond roles)
    ("link-by-other-city-admin", "LinkIdentifier", ("Shanghai", "admin"),
     _with("LinkIdentifier"), Unauthorized, None, "only Kunshan"),
    ("link-by-other-city-department", "LinkIdentifier", ("Shanghai", "transport"),
     _with("LinkIdentifier"), Unauthorized, None, "only Kunshan"),
    ("revoke-by-other-city", "RevokeIdentifier", ("Shanghai", "transport"),
     _with("RevokeIdentifier"), Unauthorized, None, "only Kunshan"),
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
     _with("ApplyCodeScheme", application_name=lambda w: w.scheme_name), Conflict,
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
     _batch(("n1", "Shanghai"), ("n2", "Kunshan")),
     InvalidArgument, "records.1.issuer_city", "must differ from the acquirer"),
    ("report-issuer-not-a-member", "ReportTransactionBatch", ("Kunshan", "admin"),
     _batch(("n1", "Beijing")), InvalidArgument, "records.0.issuer_city",
     "Beijing"),
    ("report-issuer-is-the-center", "ReportTransactionBatch", ("Kunshan", "admin"),
     _batch(("n1", CENTER)), InvalidArgument, "records.0.issuer_city",
     "not a member"),
    ("report-record-twice-in-batch", "ReportTransactionBatch", ("Kunshan", "admin"),
     _batch(("n1", "Shanghai"), ("n2", "Taicang"), ("n1", "Taicang", 7)),
     InvalidArgument, "records.2.record_id", "appears twice"),
    ("report-record-of-earlier-batch", "ReportTransactionBatch", ("Kunshan", "admin"),
     _batch(("n1", "Shanghai"), ("t1", "Taicang", 999)),
     Conflict, "records.1.record_id", "already reported"),
    ("report-same-batch-again", "ReportTransactionBatch", ("Kunshan", "terminal"),
     lambda w: batch_args(w.records, w.day), Conflict, "records.0.record_id",
     "already reported"),
    ("report-wrong-merkle-root", "ReportTransactionBatch", ("Kunshan", "admin"),
     lambda w: {**_batch(("n1", "Shanghai"))(w),
                "merkle_root": _root_of(("n1", "Shanghai", 201))(w)},
     InvalidArgument, "merkle_root", "does not match"),
    ("report-root-of-other-order", "ReportTransactionBatch", ("Kunshan", "admin"),
     lambda w: {**_batch(("n1", "Shanghai"), ("n2", "Taicang"))(w),
                "merkle_root": _root_of(("n2", "Taicang"), ("n1", "Shanghai"))(w)},
     InvalidArgument, "merkle_root", "does not match"),
    ("confirm-records-of-other-issuer", "ConfirmTransactions", ("Taicang", "admin"),
     _with("ConfirmTransactions"), Unauthorized, "record_ids",
     "issued by Shanghai"),
    ("confirm-by-the-acquirer", "ConfirmTransactions", ("Kunshan", "admin"),
     lambda w: {"batch_id": w.batch}, Conflict, "record_ids", "no reported records"),
    ("confirm-unknown-record", "ConfirmTransactions", ("Shanghai", "admin"),
     _with("ConfirmTransactions", record_ids=lambda w: [w.unique("s1"), "x9"]),
     InvalidArgument, "record_ids", "'x9'"),
    ("confirm-missing-batch", "ConfirmTransactions", ("Shanghai", "admin"),
     _with("ConfirmTransactions", batch_id=MISSING), NotFound, "batch_id", MISSING),
    ("dispute-records-of-other-issuer", "DisputeTransactions", ("Shanghai", "admin"),
     _with("DisputeTransactions",
           record_ids=lambda w: [w.unique("s2"), w.unique("t1")]),
     Unauthorized, "record_ids", "issued by Taicang"),
    ("dispute-by-the-acquirer", "DisputeTransactions", ("Kunshan", "admin"),
     _with("DisputeTransactions"), Unauthorized, "record_ids", "not Kunshan"),
    ("dispute-missing-batch", "DisputeTransactions", ("Shanghai", "admin"),
     _with("DisputeTransactions", batch_id=lambda w: w.scheme), NotFound,
     "batch_id", "not a batch"),
    # -- dispute resolution (d1 disputed, d2 contested: World.disputes)
    ("respond-by-the-issuer", "RespondToDispute", ("Shanghai", "admin"),
     _with("RespondToDispute"), Unauthorized, "batch_id", "not Shanghai"),
    ("respond-to-contested-record", "RespondToDispute", ("Kunshan", "admin"),
     _with("RespondToDispute", record_ids=lambda w: [w.unique("d2")]), Conflict,
     "record_ids", "is contested, not disputed"),
    ("respond-to-unknown-record", "RespondToDispute", ("Kunshan", "admin"),
     _with("RespondToDispute", record_ids=["x9"]), InvalidArgument, "record_ids",
     "'x9'"),
    ("contest-without-evidence", "RespondToDispute", ("Kunshan", "admin"),
     _with("RespondToDispute", response="contest"), InvalidArgument,
     "evidence_sm3", "SM3 of its evidence"),
    ("respond-missing-batch", "RespondToDispute", ("Kunshan", "admin"),
     _with("RespondToDispute", batch_id=MISSING), NotFound, "batch_id", MISSING),
    ("arbitrate-uncontested-record", "ArbitrateDispute", (CENTER, "admin"),
     _with("ArbitrateDispute", record_ids=lambda w: [w.unique("d1")]), Conflict,
     "record_ids", "is disputed, not contested"),
    ("arbitrate-missing-batch", "ArbitrateDispute", (CENTER, "admin"),
     _with("ArbitrateDispute", batch_id=MISSING), NotFound, "batch_id", MISSING),
    # -- settlement (World.settlement: Shanghai confirmed, Kunshan not yet)
    ("settlement-key-not-pem", "RegisterSettlementKey", ("Taicang", "admin"),
     _with("RegisterSettlementKey", public_key_pem="-----BEGIN PUBLIC KEY-----"),
     InvalidArgument, "public_key_pem", "not an SM2 public key"),
    ("confirm-day-not-cleared", "ConfirmSettlement", ("Kunshan", "admin"),
     _with("ConfirmSettlement", business_day=lambda w: w.day), NotFound,
     "business_day", "not cleared"),
    ("confirm-other-statement-hash", "ConfirmSettlement", ("Kunshan", "admin"),
     _with("ConfirmSettlement", statement_sm3="ab" * 32), Conflict,
     "statement_sm3", "is not the SM3 of Kunshan's statement"),
    ("confirm-signature-by-other-key", "ConfirmSettlement", ("Kunshan", "admin"),
     lambda w: {**w.confirmation("Shanghai", w.settlement()),
                "statement_sm3": w.confirmation("Kunshan", w.settlement())[
                    "statement_sm3"]},
     Unauthorized, "signature", "does not verify"),
    ("confirm-signature-not-der", "ConfirmSettlement", ("Kunshan", "admin"),
     _with("ConfirmSettlement", signature="AAAAAAAA"), InvalidArgument,
     "signature", "DER SM2 signature"),
    ("confirm-twice", "ConfirmSettlement", ("Shanghai", "admin"),
     lambda w: w.confirmation("Shanghai", w.settlement()), Conflict,
     "business_day", "already confirmed"),
    ("complete-unconfirmed", "CompleteSettlement", (CENTER, "admin"),
     _with("CompleteSettlement", city="Kunshan"), Conflict, "city",
     "has not confirmed"),
    ("complete-not-a-member", "CompleteSettlement", (CENTER, "admin"),
     _with("CompleteSettlement", city="Beijing"), InvalidArgument, "city",
     "not a member city"),
    # -- issuer keys and guide URLs (World.issuer_keys, approved_scheme)
    ("institution-key-not-signed-by-root", "CertifyIssuerKey", (CENTER, "admin"),
     lambda w: {"level": "institution", "certificate_pem": certificate(
         {**KUNSHAN, "organization_name": "Taicang"}, None, ca=True)[1].pem},
     Unauthorized, "certificate_pem", "not signed by the root key"),
    ("institution-key-of-a-non-member", "CertifyIssuerKey", (CENTER, "admin"),
     lambda w: {"level": "institution", "certificate_pem": certificate(
         {**KUNSHAN, "organization_name": "Beijing"}, w.issuer_keys().signed_root,
         ca=True)[1].pem},
     InvalidArgument, "certificate_pem", "member city"),
    ("user-key-signed-by-the-root", "CertifyUserKey", ("Kunshan", "admin"),
     lambda w: {"certificate_pem": certificate(
         KUNSHAN, w.issuer_keys().signed_root)[1].pem},
     Unauthorized, "certificate_pem", "not signed by the Kunshan institution"),
    ("user-key-of-another-city", "CertifyUserKey", ("Kunshan", "admin"),
     lambda w: {"certificate_pem": certificate(
         {**KUNSHAN, "organization_name": "Taicang"},
         w.issuer_keys().institution)[1].pem},
     InvalidArgument, "certificate_pem", "organization is Kunshan"),
    ("user-key-expired", "CertifyUserKey", ("Kunshan", "admin"),
     lambda w: {"certificate_pem": _expired(w)},
     InvalidArgument, "certificate_pem", "not now"),
    ("key-certified-twice", "CertifyIssuerKey", (CENTER, "admin"),
     lambda w: {"level": "institution",
                "certificate_pem": w.issuer_keys().institution[1].pem},
     Conflict, "certificate_pem", "already certified"),
    ("key-not-a-certificate", "CertifyIssuerKey", (CENTER, "admin"),
     _with("CertifyIssuerKey", certificate_pem="-----BEGIN CERTIFICATE-----"),
     InvalidArgument, "certificate_pem", "not an SM2 X.509 certificate"),
    ("revoke-institution-by-a-city", "RevokeIssuerKey", ("Kunshan", "admin"),
     lambda w: {"fingerprint": w.issuer_keys().institution[1].fingerprint,
                "reason": "test"},
     Unauthorized, "fingerprint", "only the center"),
    ("revoke-unknown-key", "RevokeIssuerKey", (CENTER, "admin"),
     _with("RevokeIssuerKey", fingerprint="cd" * 32), NotFound, "fingerprint",
     "cd" * 32),
    ("url-for-scheme-not-approved", "FileGuideUrl", ("Kunshan", "transport"),
     _with("FileGuideUrl", scheme_id=lambda w: w.scheme), Conflict, "scheme_id",
     "not approved"),
    ("url-for-other-department", "FileGuideUrl", ("Kunshan", "health"),
     _with("FileGuideUrl"), Unauthorized, "scheme_id", "belongs to transport"),
    ("url-decided-by-other-city", "ApproveGuideUrl", ("Shanghai", "admin"),
     _with("ApproveGuideUrl"), Unauthorized, "url_id", "Kunshan's city admin"),
    ("url-missing", "RejectGuideUrl", (CENTER, "admin"),
     _with("RejectGuideUrl", url_id=MISSING), NotFound, "url_id", MISSING),
    ("codes-of-scheme-not-approved", "IssueCodeBatch", ("Kunshan", "transport"),
     _with("IssueCodeBatch", scheme_id=lambda w: w.scheme), Conflict, "scheme_id",
     "not approved"),
    ("codes-to-a-filed-url", "IssueCodeBatch", ("Kunshan", "transport"),
     _with("IssueCodeBatch", guide_url_id=lambda w: w.filed_url()), Conflict,
     "guide_url_id", "codes lead only to an approved URL"),
    ("codes-signed-by-the-root", "IssueCodeBatch", ("Kunshan", "transport"),
     _with("IssueCodeBatch",
           signer_fingerprint=lambda w: w.issuer_keys().root.fingerprint),
     Conflict, "signer_fingerprint", "root key"),
    ("codes-outlive-their-key", "IssueCodeBatch", ("Kunshan", "transport"),
     lambda w: code_batch_args(w, days=4000), InvalidArgument, "not_after",
     "within the key's"),
    ("codes-of-other-department", "IssueCodeBatch", ("Kunshan", "health"),
     _with("IssueCodeBatch"), Unauthorized, "scheme_id", "belongs to transport"),
    ("codes-unknown-signer", "IssueCodeBatch", ("Kunshan", "transport"),
     _with("IssueCodeBatch", signer_fingerprint="cd" * 32), NotFound,
     "signer_fingerprint", "cd" * 32),
    ("user-cert-of-other-city", "RevokeUserCertificate", ("Shanghai", "admin"),
     _with("RevokeUserCertificate"), Unauthorized, "scheme_id",
     "Kunshan's city admin"),
    ("user-cert-already-expired", "RevokeUserCertificate", ("Kunshan", "admin"),
     _with("RevokeUserCertificate", until="2020-01-01T00:00:00Z"),
     InvalidArgument, "until", "a time still to come"),
    ("user-cert-unknown-scheme", "RevokeUserCertificate", ("Kunshan", "admin"),
     _with("RevokeUserCertificate", scheme_id=MISSING), NotFound, "scheme_id",
     MISSING),
    ("codes-serial-prefix-reused", "IssueCodeBatch", ("Kunshan", "transport"),
     lambda w: _with("IssueCodeBatch", serial_prefix=_issued_prefix(w))(w),
     Conflict, "serial_prefix", "already used by a batch of this scheme"),
    # -- code usage
    ("usage-root-mismatch", "ReportCodeUsage", ("Kunshan", "terminal"),
     _with("ReportCodeUsage", merkle_root="ab" * 32), InvalidArgument,
     "merkle_root", "does not match the scans"),
    ("usage-reason-of-a-valid-scan", "ReportCodeUsage", ("Kunshan", "terminal"),
     lambda w: usage_args([code_scan(w.scheme, reason="expired")]),
     InvalidArgument, "scans.0.reason", "no refusal reason"),
    ("usage-scan-after-the-transaction", "ReportCodeUsage", ("Kunshan", "admin"),
     lambda w: usage_args([code_scan(w.scheme), code_scan(w.scheme, at=(
         datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))]),
     InvalidArgument, "scans.1.at", "check the terminal's clock"),
    ("usage-reported-twice", "ReportCodeUsage", ("Kunshan", "admin"),
     _reported_usage, Conflict, "merkle_root", "already reported"),
    # -- blacklist
    ("blacklist-card-twice-in-list", "BlacklistCards", ("Kunshan", "admin"),
     lambda w: {"cards": [{"card_id_hash": HASH, "reason": "lost",
                           "since": "2026-11-20T09:30:00Z"}] * 2},
     InvalidArgument, "cards.1.card_id_hash", "appears twice"),
]


@pytest.mark.parametrize(
    ("function", "caller", "make", "error", "field", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in REJECTIONS])
def test_rejected_by_rule(shared: World, function: str, caller: Caller,
                          make: Callable[[World], Args], error: type[ContractError],
                          field: str | None, fragment: str) -> None:
    rejected(shared.ids, caller, function, make(shared), error, field, fragment)


# ------------------------------------------------------- malformed arguments
def _wrong_type(value: Any) -> Any:
    if isinstance(value, bool):
        return "true"
    if isinstance(value, list):
        return "not-a-list"
    if isinstance(value, int):  # an int field: its digits as a string
        return str(value)
    return 12345


# Arguments whose shape alone matters (test cases are made before any world).
DUMMY = World(None, "dummy", "2026-11-20", person="1" * 32,  # type: ignore[arg-type]
              obj="2" * 32, org="3" * 32, scheme="4" * 32, batch="5" * 32,
              video=dict.fromkeys(("place", "camera", "raised", "confirmed",
                                   "dispatched"), "6" * 32))


def _generic_malformed() -> list[Any]:
    """Missing, wrongly typed and extra fields, for every command."""
    cases = []
    for function, (_, make) in sorted(VALID.items()):
        for key, value in make(DUMMY).items():
            if (function, key) not in OPTIONAL:
                cases.append(pytest.param(function, {key: None}, key,
                                          id=f"{function}-missing-{key}"))
            cases.append(pytest.param(function, {key: _wrong_type(value)}, key,
                                      id=f"{function}-wrong-type-{key}"))
        cases.append(pytest.param(function, {"owner": "me"}, "owner",
                                  id=f"{function}-extra-field"))
    return cases


def _record_change(**changes: Any) -> dict[str, Any]:
    """Replace the first record of the valid batch with a changed one (never
    stored: each change is refused before record ids are looked up)."""
    rec = {**card_record("n1", "Shanghai"), **changes}
    return {"records": [{k: v for k, v in rec.items() if v is not None}]}


HASH = "ab" * 32


def _scan_change(**changes: Any) -> Args:
    """ReportCodeUsage's scans as one valid scan with ``changes`` (None drops
    a field); refused for its shape, before the Merkle root is computed."""
    scan = {**code_scan(str(uuid.UUID(int=4))), **changes}
    return {"scans": [{k: v for k, v in scan.items() if v is not None}]}


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
    # dispute resolution, settlement, blacklist
    ("respond-unknown-response", "RespondToDispute", {"response": "ignore"},
     "response"),
    ("respond-evidence-not-sm3", "RespondToDispute", {"evidence_sm3": "x" * 64},
     "evidence_sm3"),
    ("arbitrate-unknown-decision", "ArbitrateDispute", {"decision": "center"},
     "decision"),
    ("arbitrate-no-records", "ArbitrateDispute", {"record_ids": []}, "record_ids"),
    ("confirm-sm3-short", "ConfirmSettlement", {"statement_sm3": HASH[:63]},
     "statement_sm3"),
    ("confirm-signature-not-base64", "ConfirmSettlement", {"signature": "%%%%%%%%"},
     "signature"),
    ("complete-reference-empty", "CompleteSettlement", {"payment_reference": ""},
     "payment_reference"),
    ("blacklist-no-cards", "BlacklistCards", {"cards": []}, "cards"),
    ("blacklist-reason-unknown", "BlacklistCards", {"cards": [
        {"card_id_hash": HASH, "reason": "expired", "since": TIME}]},
     "cards.0.reason"),
    ("blacklist-since-bad", "BlacklistCards", {"cards": [
        {"card_id_hash": HASH, "reason": "lost", "since": "2026-11-20"}]},
     "cards.0.since"),
    # RunClearing
    ("clearing-day-not-a-date", "RunClearing", {"business_day": "2026-11-31"},
     "business_day"),
    ("clearing-day-month-13", "RunClearing", {"business_day": "2026-13-01"},
     "business_day"),
    ("clearing-day-word", "RunClearing", {"business_day": "today"},
     "business_day"),
    ("clearing-day-number", "RunClearing", {"business_day": 20261120},
     "business_day"),
    # ReportTransactionBatch: scene and type
    ("record-scene-unknown", "ReportTransactionBatch",
     _record_change(scene="airport"), "records.0.scene"),
    ("record-scene-not-text", "ReportTransactionBatch",
     {"records": [{**card_record("n1", "Shanghai"), "scene": 3}]},
     "records.0.scene"),
    ("record-type-unknown", "ReportTransactionBatch",
     _record_change(type="withdrawal"), "records.0.type"),
    # issuer keys and guide URLs
    ("key-level-unknown", "CertifyIssuerKey", {"level": "user"}, "level"),
    ("revoke-fingerprint-short", "RevokeIssuerKey", {"fingerprint": "ab"},
     "fingerprint"),
    ("url-not-https", "FileGuideUrl", {"url": "http://code.kunshan.example/a"},
     "url"),
    ("url-with-space", "FileGuideUrl", {"url": "https://code.kunshan.example/a b"},
     "url"),
    ("url-id-not-uuid", "ApproveGuideUrl", {"url_id": "url-1"}, "url_id"),
    ("codes-count-zero", "IssueCodeBatch", {"count": 0}, "count"),
    ("user-id-a-phone-number", "RevokeUserCertificate",
     {"user_id": "13800138000"}, "user_id"),
    ("user-cert-until-a-date", "RevokeUserCertificate",
     {"until": "2031-01-01"}, "until"),
    ("codes-time-with-offset", "IssueCodeBatch",
     {"not_before": "2026-12-01T08:00:00+08:00"}, "not_before"),
    ("codes-serial-prefix-short", "IssueCodeBatch", {"serial_prefix": "abc123"},
     "serial_prefix"),
    ("codes-serial-prefix-uppercase", "IssueCodeBatch",
     {"serial_prefix": "ABCDEF12"}, "serial_prefix"),
    ("codes-serial-prefix-not-hex", "IssueCodeBatch",
     {"serial_prefix": "ghijklmn"}, "serial_prefix"),
    # ReportCodeUsage
    ("usage-no-scans", "ReportCodeUsage", {"scans": []}, "scans"),
    ("usage-terminal-pattern", "ReportCodeUsage", {"terminal_id": "T 1"},
     "terminal_id"),
    ("usage-scan-not-object", "ReportCodeUsage", {"scans": ["ab" * 12]},
     "scans.0"),
    ("usage-serial-short", "ReportCodeUsage", _scan_change(serial="ab" * 11),
     "scans.0.serial"),
    ("usage-serial-uppercase", "ReportCodeUsage", _scan_change(serial="AB" * 12),
     "scans.0.serial"),
    ("usage-scheme-not-uuid", "ReportCodeUsage", _scan_change(scheme_id="bus"),
     "scans.0.scheme_id"),
    ("usage-kind-unknown", "ReportCodeUsage", _scan_change(kind="printed"),
     "scans.0.kind"),
    ("usage-result-unknown", "ReportCodeUsage", _scan_change(result="ok"),
     "scans.0.result"),
    ("usage-at-without-zone", "ReportCodeUsage",
     _scan_change(at="2026-11-20T08:00:00"), "scans.0.at"),
    ("usage-at-bad-day", "ReportCodeUsage", _scan_change(at="2026-02-30T08:00:00Z"),
     "scans.0.at"),
    ("usage-sm3-short", "ReportCodeUsage", _scan_change(code_sm3=HASH[:63]),
     "scans.0.code_sm3"),
    ("usage-reason-empty", "ReportCodeUsage", _scan_change(reason=""),
     "scans.0.reason"),
    ("usage-reason-too-long", "ReportCodeUsage", _scan_change(reason="x" * 501),
     "scans.0.reason"),
    ("usage-scan-missing-serial", "ReportCodeUsage", _scan_change(serial=None),
     "scans.0.serial"),
    ("usage-scan-extra-field", "ReportCodeUsage",
     _scan_change(phone="13800000000"), "scans.0.phone"),
    # PublishFeeRule
    ("fee-bps-negative", "PublishFeeRule", {"rate_bps": -1}, "rate_bps"),
    ("fee-bps-over-100-percent", "PublishFeeRule", {"rate_bps": 10_001},
     "rate_bps"),
    ("fee-bps-float", "PublishFeeRule", {"rate_bps": 2.5}, "rate_bps"),
    ("fee-min-negative", "PublishFeeRule", {"min_fee_fen": -1}, "min_fee_fen"),
    ("fee-max-float", "PublishFeeRule", {"max_fee_fen": 5.0}, "max_fee_fen"),
    ("fee-min-over-max", "PublishFeeRule", {"min_fee_fen": 501}, "min_fee_fen"),
    ("fee-scene-unknown", "PublishFeeRule", {"scene": "airport"}, "scene"),
    ("fee-party-unknown", "PublishFeeRule", {"party": "center"}, "party"),
    ("fee-day-not-a-date", "PublishFeeRule", {"effective_day": "2026-02-30"},
     "effective_day"),
    ("fee-day-word", "PublishFeeRule", {"effective_day": "tomorrow"},
     "effective_day"),
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
    err = rejected(shared.ids, caller, function, args, InvalidArgument, field)
    assert err.message.startswith(f"{field}: ")


def _text_paths(value: Any, path: tuple[str | int, ...] = ()
                ) -> list[tuple[str | int, ...]]:
    """Where ``value`` (arguments) holds text: every string, in lists the first."""
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _text_paths(v, (*path, k))]
    if isinstance(value, list) and value:
        return _text_paths(value[0], (*path, 0))
    return []


def _unstorable_cases() -> list[Any]:
    """Every text argument of every command (ids, names, days, hashes, free
    text; in a list, its first item) and the optional ciphertext."""
    cases = [pytest.param("RegisterIdentifier", ("attributes",),
                          id="RegisterIdentifier-attributes")]
    for function, (_, make) in sorted(VALID.items()):
        for path in _text_paths(make(DUMMY)):
            field = ".".join(map(str, path))
            cases.append(pytest.param(function, path, id=f"{function}-{field}"))
    return cases


# top-level fields of the chaincode.registry types Text and Ciphertext
FREE_TEXT = {"reason", "name", "attributes", "note", "payment_reference", "outcome"}


@pytest.mark.parametrize(("function", "path"), _unstorable_cases())
def test_text_with_nul_is_refused(shared: World, function: str,
                                  path: tuple[str | int, ...]) -> None:
    """NUL, which PostgreSQL's text cannot hold, is refused by every field. (An
    unpaired surrogate cannot be sent by these clients, whose JSON is UTF-8; a
    raw proposal carries one in test_contract_embedded.py.)"""
    caller, make = VALID[function]
    args = make(shared)
    if path == ("attributes",):
        args["attributes"] = "c2Vj"
    *parents, last = path
    holder: Any = args
    for key in parents:
        holder = holder[key]
    holder[last] = holder[last][:2] + "\x00" + holder[last][2:]
    field = ".".join(map(str, path))
    err = rejected(shared.ids, caller, function, args, InvalidArgument, field)
    if path == (last,) and last in FREE_TEXT:
        assert "NUL (U+0000)" in err.message


def test_unknown_function_names_the_accepted_ones(shared: World) -> None:
    err = rejected(shared.ids, ("Kunshan", "admin"), "DeleteEverything", {},
                   InvalidArgument, "function", "DeleteEverything")
    assert "RunClearing" in err.message


def test_arguments_must_be_an_object(shared: World) -> None:
    rejected(shared.ids, (CENTER, "admin"), "RunClearing", [shared.day],
             InvalidArgument, "args", "object")


# --------------------------------------------------------------- identifiers
def test_register_identifier(ids: Clients[Ledger]) -> None:
    register_departments(ids)  # Taicang health among them
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
    # the transaction's time, not the endorsing peer's clock
    [written] = ids("Taicang", "auditor").history(f"a~{ident}")
    assert written.tx_id == receipt.tx_id
    assert ev["timestamp"] == written.timestamp
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
    rejected(world.ids, ("Kunshan", "health"), "LinkIdentifier", link, Conflict,
             "target_id", "already recorded")
    submit(world, ks, "RevokeIdentifier", {"identifier_id": world.person,
                                            "reason": "deceased"})
    rejected(world.ids, ks, "LinkIdentifier", {
        "identifier_id": world.obj, "target_id": world.person,
        "relation": "attached"}, Conflict, "target_id", "revoked")
    rejected(world.ids, ks, "LinkIdentifier", {
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
    rejected(world.ids, ("Kunshan", "transport"), "RevokeIdentifier", {
        "identifier_id": world.person, "reason": "again"}, Conflict,
        "identifier_id", "already revoked")


# ------------------------------------------------------------- code schemes
# ------------------------------------------------------------- code schemes
def test_register_department(ids: Clients[Ledger]) -> None:
    code = unique_name("transport")
    receipt = ids("Taicang").submit("RegisterDepartment", {
        "code": code, "name": "Transport", "duties": ["transport", "bus",
                                                      "transport"]})
    assert event_types(receipt) == ["DepartmentRegistered"]
    assert receipt.events[0]["data"] == {"city": "Taicang", "code": code,
                                         "name": "Transport",
                                         "duties": ["bus", "transport"]}
    # the same code in another city is another department
    other = ids("Kunshan").submit("RegisterDepartment", {
        "code": code, "name": "Transport", "duties": ["transport"]})
    assert other.result["id"] != receipt.result["id"]
    assert ids("Kunshan").evaluate("GetDepartment", {
        "city": "Taicang", "code": code})["duties"] == ["bus", "transport"]


def test_apply_code_scheme(world: World) -> None:
    name = world.unique("health-qr")
    receipt = submit(world, ("Kunshan", "health"), "ApplyCodeScheme", {
        "application_name": name, "code_type": "health", "scope": world.scope,
        "data_sharing_commitment": False})
    assert receipt.result["status"] == "applied"
    assert event_types(receipt) == ["CodeSchemeApplied"]
    assert receipt.events[0]["data"] == {
        "city": "Kunshan", "department": "health", "application_name": name,
        "code_type": "health", "scope": world.scope,
        "data_sharing_commitment": False, "applied_by": "Kunshan:department/health"}


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
        rejected(world.ids, (CENTER, "admin"), function,
                 VALID[function][1](world), Conflict, "scheme_id",
                 "already approved")


def _apply(w: World, caller: Caller, name: str, code_type: str, scope: str,
           commitment: bool = True) -> str:
    """Apply for a scheme named ``name`` (made the world's own)."""
    return submit(w, caller, "ApplyCodeScheme", {
        "application_name": w.unique(name), "code_type": code_type, "scope": scope,
        "data_sharing_commitment": commitment}).result["id"]


@pytest.mark.parametrize("failing", ["duty", "duplicate", "sharing"])
def test_failed_check_blocks_approval_and_is_recorded_by_reject(
        world: World, failing: str) -> None:
    ks = ("Kunshan", "transport")
    if failing == "duty":  # transport's duties are transport and payment
        scheme = _apply(world, ks, "parking-qr", "parking", world.scope)
    elif failing == "duplicate":  # transport in the world's scope is covered
        submit(world, (CENTER, "admin"), "ApproveCodeScheme",
               {"scheme_id": world.scheme})
        scheme = _apply(world, ks, "metro-qr-2", "transport", world.scope)
    else:
        scheme = _apply(world, ks, "pay-qr", "payment", world.scope,
                        commitment=False)
    err = rejected(world.ids, (CENTER, "admin"), "ApproveCodeScheme",
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
    rejected(world.ids, (CENTER, "admin"), "ApproveCodeScheme",
             {"scheme_id": scheme}, Conflict, "scheme_id", "already rejected")


def test_same_code_type_in_another_scope_is_no_duplicate(world: World) -> None:
    submit(world, (CENTER, "admin"), "ApproveCodeScheme", {"scheme_id": world.scheme})
    other = _apply(world, ("Kunshan", "transport"), "metro-qr-2", "transport",
                   world.unique("Kunshan-metro"))
    receipt = submit(world, (CENTER, "admin"), "ApproveCodeScheme",
                     {"scheme_id": other})
    assert receipt.result["checks"]["duplicate"] is True


# ------------------------------------------------ card transaction batches
def test_report_batch(ids: Clients[Ledger]) -> None:
    day, a1, a2 = fresh_day(), unique_name("a1"), unique_name("a2")
    records = [card_record(a1, "Shanghai", 300), card_record(a2, "Kunshan", 45)]
    args = batch_args(records, day)
    receipt = ids("Taicang", "terminal").submit("ReportTransactionBatch", args)
    assert receipt.result["count"] == 2 and receipt.result["amount_fen"] == 345
    assert event_types(receipt) == ["TransactionBatchReported"]
    data = receipt.events[0]["data"]
    assert data["acquirer_city"] == "Taicang"
    assert data["merkle_root"] == args["merkle_root"]
    assert data["business_day"] == day
    assert (data["count"], data["amount_fen"]) == (2, 345)
    assert data["records"] == records
    assert data["reported_by"] == "Taicang:terminal"
    # record ids are per acquirer: Kunshan may use the same ids
    again = ids("Kunshan").submit("ReportTransactionBatch", batch_args(
        [card_record(a1, "Taicang", 300)], day))
    assert again.result["id"] != receipt.result["id"]


def test_confirm_all_of_own_records(world: World) -> None:
    s1, s2, t1 = (world.unique(r) for r in ("s1", "s2", "t1"))
    receipt = submit(world, ("Shanghai", "admin"), "ConfirmTransactions",
                     {"batch_id": world.batch})
    assert receipt.result == {"id": world.batch, "confirmed": 2}
    assert event_types(receipt) == ["TransactionBatchConfirmed"]
    assert receipt.events[0]["data"] == {"issuer_city": "Shanghai",
                                         "record_ids": [s1, s2],
                                         "confirmed_by": "Shanghai:city_admin"}
    status = get(world, "GetBatch", {"id": world.batch})["status"]
    assert status == {s1: "confirmed", s2: "confirmed", t1: "reported"}
    rejected(world.ids, ("Shanghai", "admin"), "ConfirmTransactions",
             {"batch_id": world.batch}, Conflict, "record_ids", "no reported")
    rejected(world.ids, ("Shanghai", "admin"), "DisputeTransactions", {
        "batch_id": world.batch, "record_ids": [s1], "reason": "late"},
        Conflict, "record_ids", "already confirmed")


def test_dispute_then_no_confirm(world: World) -> None:
    s1, s2 = world.unique("s1"), world.unique("s2")
    receipt = submit(world, ("Shanghai", "admin"), "DisputeTransactions", {
        "batch_id": world.batch, "record_ids": [s2, s2], "reason": "double"})
    assert receipt.result == {"id": world.batch, "disputed": 1}
    assert event_types(receipt) == ["TransactionBatchDisputed"]
    assert receipt.events[0]["data"] == {"issuer_city": "Shanghai",
                                         "record_ids": [s2], "reason": "double",
                                         "disputed_by": "Shanghai:city_admin"}
    rejected(world.ids, ("Shanghai", "admin"), "ConfirmTransactions", {
        "batch_id": world.batch, "record_ids": [s2]}, Conflict, "record_ids",
        "already disputed")
    confirmed = submit(world, ("Shanghai", "admin"), "ConfirmTransactions",
                       {"batch_id": world.batch})
    assert confirmed.events[0]["data"]["record_ids"] == [s1]


def test_clearing(world: World) -> None:
    ta, day, other_day = ("Taicang", "admin"), world.day, fresh_day()
    second = submit(world, ta, "ReportTransactionBatch", batch_args(
        [world.record("x1", "Kunshan", 1000), world.record("x2", "Shanghai", 7)],
        day)).result["id"]
    other = submit(world, ta, "ReportTransactionBatch", batch_args(
        [world.record("y1", "Kunshan", 5000)], other_day)).result["id"]
    submit(world, ("Shanghai", "admin"), "DisputeTransactions", {
        "batch_id": world.batch, "record_ids": [world.unique("s2")],
        "reason": "double charge"})
    submit(world, ("Taicang", "admin"), "ConfirmTransactions",
           {"batch_id": world.batch})
    receipt = submit(world, (CENTER, "admin"), "RunClearing", {"business_day": day})
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
    assert data["positions"] == positions and data["business_day"] == day
    assert sorted(data["batches"]) == sorted([world.batch, second])
    assert other not in data["batches"]
    assert data["run_by"] == "Center:center_admin"
    assert get(world, "GetClearingRun", {"business_day": day})["positions"] == \
        positions

    # once per day, and the day is closed
    rejected(world.ids, (CENTER, "admin"), "RunClearing", {"business_day": day},
             Conflict, "business_day", "already cleared")
    rejected(world.ids, ("Kunshan", "admin"), "ReportTransactionBatch", batch_args(
        [world.record("late1", "Shanghai")], day), Conflict, "business_day",
        "already cleared")
    rejected(world.ids, ("Shanghai", "admin"), "ConfirmTransactions",
             {"batch_id": world.batch, "record_ids": [world.unique("s1")]},
             Conflict, "business_day", "already cleared")
    rejected(world.ids, ("Kunshan", "admin"), "DisputeTransactions", {
        "batch_id": second, "record_ids": [world.unique("x1")], "reason": "late"},
        Conflict, "business_day", "already cleared")
    # other days stay open
    assert submit(world, ("Kunshan", "admin"), "ConfirmTransactions",
                  {"batch_id": other}).result["confirmed"] == 1


# ------------------------------------------------------------ fee rules
def _fee_rule(scene: str, party: str, bps: int, low: int, high: int, day: str
              ) -> Args:
    return {"scene": scene, "party": party, "rate_bps": bps, "min_fee_fen": low,
            "max_fee_fen": high, "effective_day": day}


def test_publish_fee_rule_versions(ids: Clients[Ledger]) -> None:
    # parking/issuer is this test's own; a Fabric network may hold versions of
    # earlier sessions, so version numbers are compared, not assumed.
    d1, d2 = fresh_day(), fresh_day()
    first = ids(CENTER).submit("PublishFeeRule",
                               _fee_rule("parking", "issuer", 30, 1, 200, d1))
    assert event_types(first) == ["FeeRulePublished"]
    data = first.events[0]["data"]
    assert (data["scene"], data["party"], data["rate_bps"], data["min_fee_fen"],
            data["max_fee_fen"], data["effective_day"]) == (
        "parking", "issuer", 30, 1, 200, d1)
    assert data["published_by"] == "Center:center_admin"
    second = ids(CENTER).submit("PublishFeeRule",
                                _fee_rule("parking", "issuer", 45, 0, 300, d2))
    assert second.result["rule_version"] == first.result["rule_version"] + 1
    assert second.result["id"] != first.result["id"]
    # every city sees every version
    for who in (("Kunshan", "auditor"), ("Shanghai", "admin"), (CENTER, "auditor")):
        rules = ids(*who).evaluate("GetFeeRules", {})["rules"]
        mine = [r for r in rules if r["scene"] == "parking"
                and r["party"] == "issuer" and r["effective_day"] in (d1, d2)]
        assert mine == [first.result, second.result]
    # the same effective day again is a conflict; nothing is written
    rejected(ids, (CENTER, "admin"), "PublishFeeRule",
             _fee_rule("parking", "issuer", 50, 0, 300, d2), Conflict,
             "effective_day", "already effective")
    # the other party's rule for the same scene and day is its own
    ids(CENTER).submit("PublishFeeRule",
                       _fee_rule("parking", "acquirer", 50, 0, 300, d2))


def test_fee_rule_for_a_cleared_day_is_refused(ids: Clients[Ledger]) -> None:
    day = fresh_day()
    ids(CENTER).submit("RunClearing", {"business_day": day})
    rejected(ids, (CENTER, "admin"), "PublishFeeRule",
             _fee_rule("parking", "acquirer", 10, 0, 10, day), Conflict,
             "effective_day", "already cleared")


def test_batch_with_scene_and_type(world: World) -> None:
    records = [{**world.record("sc1", "Shanghai"), "scene": "park_and_ride",
                "type": "refund"}, world.record("sc2", "Taicang")]
    receipt = submit(world, ("Kunshan", "admin"), "ReportTransactionBatch",
                     batch_args(records, fresh_day()))
    assert receipt.events[0]["data"]["records"] == records  # no nulls added


def test_clearing_with_fees(world: World) -> None:
    day, ca = fresh_day(), (CENTER, "admin")
    # This test's own rules for every (scene, party) its records use, effective
    # on its day: a rule of another test (or session) for these is earlier and
    # superseded, or later and not yet in effect.
    rules = [_fee_rule("metro", "acquirer", 50, 1, 100, day),
             _fee_rule("metro", "issuer", 100, 0, 3, day),
             _fee_rule("bus", "acquirer", 0, 2, 2, day),   # flat 2 fen
             _fee_rule("bus", "issuer", 0, 0, 0, day)]     # no fee
    rule_ids = [submit(world, ca, "PublishFeeRule", r).result["id"] for r in rules]

    def rec(name: str, issuer: str, amount: int, **extra: str) -> Args:
        return {**world.record(name, issuer, amount), **extra}

    submit(world, ("Kunshan", "admin"), "ReportTransactionBatch", batch_args([
        rec("m1", "Shanghai", 1000, scene="metro"),
        rec("m2", "Taicang", 150, scene="metro", type="top_up"),
        rec("m3", "Shanghai", 50, scene="metro", type="refund"),
        rec("b1", "Shanghai", 200, scene="bus", type="purchase"),
        rec("o1", "Taicang", 300)], day))
    tc = submit(world, ("Taicang", "admin"), "ReportTransactionBatch", batch_args([
        rec("x1", "Kunshan", 49, scene="metro"),
        rec("x2", "Shanghai", 400, scene="bus")], day)).result["id"]
    submit(world, ("Shanghai", "admin"), "DisputeTransactions", {
        "batch_id": tc, "record_ids": [world.unique("x2")], "reason": "double"})
    receipt = submit(world, ca, "RunClearing", {"business_day": day})
    # fee = clamp(round_half_up(amount * bps / 10000), min, max), per party:
    #   m1 metro 1000: acquirer 5.0 -> 5; issuer 10.0 -> max 3
    #   m2 metro 150 top-up (Kunshan owes Taicang): acq 0.75 -> 1; iss 1.5 -> 2
    #   m3 metro 50 refund: acq 0.25 -> 0 -> min 1; iss 0.5 -> 1 (half up)
    #   b1 bus 200: acq flat 2; iss 0
    #   o1 other 300: no rule, no fee
    #   x1 metro 49 (Taicang acquires, Kunshan issues): acq 0.245 -> min 1;
    #      iss 0.49 -> 0
    #   x2 disputed: not cleared
    cities = {"Kunshan": {"gross_fen": 1000 - 150 + 50 + 200 + 300 - 49,
                          "fees_fen": 5 + 1 + 1 + 2, "net_fen": 1351 - 9},
              "Shanghai": {"gross_fen": -1000 - 50 - 200, "fees_fen": 3 + 1,
                           "net_fen": -1250 - 4},
              "Taicang": {"gross_fen": 150 - 300 + 49, "fees_fen": 2 + 1,
                          "net_fen": -101 - 3}}
    pairs = [{"acquirer_city": "Kunshan", "issuer_city": "Shanghai", "records": 3,
              "gross_fen": 1250, "acquirer_fee_fen": 8, "issuer_fee_fen": 4,
              "net_fen": 1250},
             {"acquirer_city": "Kunshan", "issuer_city": "Taicang", "records": 2,
              "gross_fen": 450, "acquirer_fee_fen": 1, "issuer_fee_fen": 2,
              "net_fen": 150},
             {"acquirer_city": "Taicang", "issuer_city": "Kunshan", "records": 1,
              "gross_fen": 49, "acquirer_fee_fen": 1, "issuer_fee_fen": 0,
              "net_fen": 49}]
    positions = {"Kunshan": 1342, "Shanghai": -1254, "Taicang": -104}
    r = receipt.result
    assert r["positions"] == positions
    assert r["center_fee_fen"] == r["fees_fen"] == 16
    assert sum(positions.values()) + r["center_fee_fen"] == 0
    assert r["cities"] == cities and r["pairs"] == pairs
    assert (r["records"], r["excluded_disputed"], r["gross_fen"]) == (6, 1, 1749)
    data = receipt.events[0]["data"]
    assert data["positions"] == positions and data["center_fee_fen"] == 16
    assert data["pairs"] == pairs and data["cities"] == cities
    assert set(rule_ids) <= set(data["fee_rules"])
    run = get(world, "GetClearingRun", {"business_day": day})
    assert (run["positions"], run["center_fee_fen"]) == (positions, 16)


def test_clearing_an_empty_day(ids: Clients[Ledger]) -> None:
    receipt = ids(CENTER).submit("RunClearing", {"business_day": fresh_day()})
    assert receipt.result["positions"] == dict.fromkeys(sorted(CITIES), 0)
    assert receipt.result["records"] == receipt.result["gross_fen"] == 0


def test_rejection_leaves_no_partial_writes(world: World) -> None:
    # The second record is rejected after the first passed every check: none of
    # the batch may be stored, so the first record id stays free.
    rejected(world.ids, ("Kunshan", "admin"), "ReportTransactionBatch",
             batch_args([world.record("p1", "Shanghai"),
                         world.record("s1", "Taicang")], world.day),
             Conflict, "records.1.record_id")
    ok = submit(world, ("Kunshan", "admin"), "ReportTransactionBatch",
                batch_args([world.record("p1", "Shanghai")], world.day))
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

