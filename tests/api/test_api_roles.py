"""The role matrix: every role against every command. A role outside the
contract's list gets 403 from the API and nothing reaches the ledger; the
chaincode refuses the same identity again when the API is bypassed; every
allowed role succeeds. Read endpoints with role limits are checked too."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apikit import (
    CENTER_ADMIN,
    KS_ADMIN,
    KS_TERMINAL,
    KS_TRANSPORT,
    ROLES,
    SH_ADMIN,
    Api,
    Who,
    name,
    new_day,
    problem,
)
from helpers import (
    KUNSHAN,
    call_campaign_args,
    call_records_args,
    card_record,
    certificate,
    code_scan,
    issuer_keys,
    unique_hash,
)

from api.gateway import allowed_roles
from api.tokens import Principal
from chaincode.contract import COMMANDS
from chaincode.errors import Unauthorized
from chaincode.identity import Role
from ledger import crypto

Call = tuple[str, dict[str, Any]]


def _batch_for_kunshan(api: Api) -> tuple[str, str]:
    """A Shanghai batch with a Kunshan-issued record: (batch id, record id)."""
    batch, records, _ = api.batch(SH_ADMIN, ("Kunshan",))
    return batch, records[0]["record_id"]


def _scheme(api: Api) -> str:
    return api.scheme()


def _completion(api: Api) -> Call:
    """Kunshan confirmed a statement; the center's completion of it."""
    day = api.cleared_day()
    api.ok(f"/api/settlements/{day}/confirmation",
           api.confirmation(day, api.settlement_key()), KS_ADMIN)
    return (f"/api/settlements/{day}/Kunshan/completion",
            {"payment_reference": "CNAPS-1"})


def _code_batch(api: Api) -> Call:
    """Codes of an approved scheme of Kunshan transport, to its approved guide
    URL, signed by Kunshan's institution key, valid for a week from now."""
    scheme = api.approved_scheme()
    url = api.guide_url(scheme)
    api.ok(f"/api/guide-urls/{url}/approve", {}, KS_ADMIN, 200)
    start = datetime.now(UTC).replace(microsecond=0)
    return (f"/api/code-schemes/{scheme}/code-batches", {
        "guide_url_id": url,
        "signer_fingerprint": issuer_keys(api.clients).institution[1].fingerprint,
        "count": 3, "not_before": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": (start + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "merkle_root": unique_hash(), "serial_prefix": secrets.token_hex(4)})


def _user_key(api: Api) -> str:
    """A Kunshan user key certified by its city admin: its fingerprint."""
    _, cert = certificate({**KUNSHAN, "organizational_unit_name": name("app")},
                          issuer_keys(api.clients).institution)
    api.ok("/api/issuer-keys/users", {"certificate_pem": cert.pem}, KS_ADMIN)
    return cert.fingerprint


CAMERA = {"department": "transport",
          "zones": [{"zone": "stall", "polygon": [[0, 0], [90, 0], [90, 60]],
                     "detectors": ["fire"]}]}


def _camera(api: Api) -> Call:
    """A camera at a new place of Kunshan: (path, body) of RegisterCamera."""
    place = api.identifier("place", scheme="poi")
    return (f"/api/identifiers/{place}/cameras",
            {"camera_code": name("cam"), **CAMERA})


def _raise(api: Api) -> Call:
    """A new camera's RaiseVideoAlert: (path, body)."""
    camera = api.ok(*_camera(api), KS_TRANSPORT)["result"]["id"]
    return (f"/api/cameras/{camera}/alerts", {
        "incident": name("fire"), "kind": "fire", "confidence_permille": 800,
        "observed_at": "2026-11-20T08:00:00Z", "zone": "stall",
        "evidence_sm3": unique_hash()})


def _alert(api: Api, *steps: tuple[str, dict[str, Any]]) -> str:
    """A raised alert of a Kunshan transport camera, taken through ``steps``."""
    alert = str(api.ok(*_raise(api), KS_TERMINAL)["result"]["id"])
    for action, body in steps:
        api.ok(f"/api/video-alerts/{alert}/{action}", body, KS_TRANSPORT, 200)
    return alert


CONFIRM = ("review", {"verdict": "confirmed"})
DISPATCH = ("dispatch", {"department": "transport"})


def _campaign(api: Api, contact_count: int = 2) -> str:
    """A call campaign Kunshan transport started: its name."""
    campaign = name("c")
    api.ok("/api/call-campaigns", call_campaign_args(campaign, contact_count),
           KS_TRANSPORT)
    return campaign


# For each command: (path, body) that the allowed roles of ROLES can perform,
# built fresh for every call (the role's city is Kunshan, or the center).
PREPARE: dict[str, Callable[[Api], Call]] = {
    "RegisterIdentifier": lambda api: ("/api/identifiers", {
        "kind": "person", "category": "identity", "scheme": "cn-id",
        "natural_key_hash": unique_hash()}),
    "LinkIdentifier": lambda api: (
        f"/api/identifiers/{api.identifier('object', scheme='asset')}/links",
        {"target_id": api.identifier("place", scheme="poi"),
         "relation": "attached"}),
    "RevokeIdentifier": lambda api: (
        f"/api/identifiers/{api.identifier()}/revoke", {"reason": "test"}),
    "RegisterDepartment": lambda api: ("/api/departments", {
        "code": name("d"), "name": "New department", "duties": ["water"]}),
    "ApplyCodeScheme": lambda api: ("/api/code-schemes", {
        "application_name": name("a"), "code_type": "transport",
        "scope": name("s"), "data_sharing_commitment": True}),
    "ApproveCodeScheme": lambda api: (
        f"/api/code-schemes/{_scheme(api)}/approve", {}),
    "RejectCodeScheme": lambda api: (
        f"/api/code-schemes/{_scheme(api)}/reject", {"reason": "test"}),
    "ReportTransactionBatch": lambda api: ("/api/card-batches", {
        "business_day": new_day(),
        "records": [card_record(name("r"), "Shanghai")]}),
    "ConfirmTransactions": lambda api: (
        f"/api/card-batches/{_batch_for_kunshan(api)[0]}/confirm", {}),
    "DisputeTransactions": lambda api: (
        lambda b: (f"/api/card-batches/{b[0]}/dispute",
                   {"record_ids": [b[1]], "reason": "test"}))(
        _batch_for_kunshan(api)),
    "RunClearing": lambda api: ("/api/clearing-runs", {
        "business_day": new_day()}),
    "PublishFeeRule": lambda api: ("/api/fee-rules", {
        "scene": "retail", "party": "issuer", "rate_bps": 25, "min_fee_fen": 0,
        "max_fee_fen": 300, "effective_day": new_day()}),
    "RespondToDispute": lambda api: (
        lambda b: (f"/api/card-batches/{b[0]}/dispute-response",
                   {"record_ids": [b[1]], "response": "accept"}))(api.disputed()),
    "ArbitrateDispute": lambda api: (
        lambda b: (f"/api/card-batches/{b[0]}/arbitration",
                   {"record_ids": [b[1]], "decision": "issuer",
                    "reason": "test"}))(api.disputed(contested=True)),
    "RegisterSettlementKey": lambda api: ("/api/settlement-keys", {
        "public_key_pem": crypto.public_key_to_pem(
            crypto.get_backend().sm2_generate()[1]).decode()}),
    "ConfirmSettlement": lambda api: (
        lambda day: (f"/api/settlements/{day}/confirmation",
                     api.confirmation(day, api.settlement_key())))(api.cleared_day()),
    "CompleteSettlement": lambda api: _completion(api),
    "CertifyIssuerKey": lambda api: ("/api/issuer-keys", {
        "level": "institution", "certificate_pem": certificate(
            {**KUNSHAN, "organization_name": "Taicang"},
            issuer_keys(api.clients).signed_root, ca=True)[1].pem}),
    "CertifyUserKey": lambda api: ("/api/issuer-keys/users", {
        "certificate_pem": certificate(
            {**KUNSHAN, "organizational_unit_name": name("app")},
            issuer_keys(api.clients).institution)[1].pem}),
    "RevokeIssuerKey": lambda api: (
        f"/api/issuer-keys/{_user_key(api)}/revoke", {"reason": "lost"}),
    "FileGuideUrl": lambda api: (
        f"/api/code-schemes/{api.approved_scheme()}/guide-urls",
        {"url": f"https://code.kunshan.example/{name('u')}"}),
    "ApproveGuideUrl": lambda api: (
        f"/api/guide-urls/{api.guide_url()}/approve", {}),
    "RejectGuideUrl": lambda api: (
        f"/api/guide-urls/{api.guide_url()}/reject", {"reason": "test"}),
    "IssueCodeBatch": lambda api: _code_batch(api),
    "RevokeUserCertificate": lambda api: (
        f"/api/code-schemes/{api.approved_scheme()}/user-revocations", {
            "user_id": unique_hash()[:16], "until": "2031-01-01T00:00:00Z",
            "reason": "phone lost"}),
    "ReportCodeUsage": lambda api: ("/api/code-usage", {
        "terminal_id": "gate-1", "scans": [code_scan(api.scheme())]}),
    "BlacklistCards": lambda api: ("/api/card-blacklist", {"cards": [{
        "card_id_hash": unique_hash(), "reason": "lost",
        "since": "2031-01-01T00:00:00Z"}]}),
    "RegisterCamera": _camera,
    "RaiseVideoAlert": _raise,
    "ReviewAlert": lambda api: (f"/api/video-alerts/{_alert(api)}/review",
                                {"verdict": "false_alarm", "note": "a lamp"}),
    "DispatchAlert": lambda api: (
        f"/api/video-alerts/{_alert(api, CONFIRM)}/dispatch",
        {"department": "transport"}),
    "HandleAlert": lambda api: (
        f"/api/video-alerts/{_alert(api, CONFIRM, DISPATCH)}/handle",
        {"outcome": "put out"}),
    "StartCallCampaign": lambda api: ("/api/call-campaigns",
                                      call_campaign_args(name("c"))),
    "CompleteCallCampaign": lambda api: (
        f"/api/call-campaigns/{_campaign(api)}/complete",
        {"outcomes": {"satisfied": 1, "busy": 1}}),
    "RecordCallOutcomes": lambda api: (
        f"/api/call-campaigns/{_campaign(api)}/calls",
        {k: v for k, v in call_records_args("x", 0, ("satisfied",)).items()
         if k != "campaign"}),
}


def test_every_command_is_in_the_matrix() -> None:
    assert set(PREPARE) == set(COMMANDS)


def _principal(who: Who) -> Principal:
    dept = who[2] if len(who) > 2 else None
    return Principal(who[0], Role(who[1]), dept, "0" * 32, datetime.now(UTC))


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_role_matrix(api: Api, command: str, role: str) -> None:
    who = ROLES[role]
    path, body = PREPARE[command](api)
    before = api.height()
    r = api.post(path, body, who)
    if Role(role) in allowed_roles(command):
        assert r.status_code in (200, 201), r.text
        assert r.json()["status"] == "VALID"
        assert api.height() == before + 1
        return
    refusal = problem(r, 403, "role")
    assert refusal["type"] == "/problems/forbidden-role"
    assert role in refusal["detail"]
    assert api.height() == before  # nothing was submitted
    # Bypassing the API, the chaincode refuses the same identity on its own.
    ledger = api.runtime.gateway.ledger_for(_principal(who))
    with pytest.raises(Unauthorized):
        ledger.submit(command, body)
    assert api.height() == before


@pytest.mark.parametrize("role", list(ROLES))
def test_audit_endpoints_need_auditor_or_center(api: Api, role: str) -> None:
    who = ROLES[role]
    allowed = role in ("auditor", "center_admin")
    for path in ("/api/ledger/history/a~x", "/api/ledger/blocks/0",
                 "/api/ledger/verify"):
        r = api.get(path, who)
        if allowed:
            assert r.status_code == 200, (path, r.text)
        else:
            problem(r, 403, "role")


def test_auditor_reads_every_city(api: Api) -> None:
    sh = api.identifier("person", SH_ADMIN)
    api.sync()
    for who in (("Taicang", "auditor"), ("Center", "auditor"), CENTER_ADMIN):
        assert api.get(f"/api/identifiers/{sh}", who).status_code == 200
    for who in (KS_ADMIN, KS_TRANSPORT):
        problem(api.get(f"/api/identifiers/{sh}", who), 403)
