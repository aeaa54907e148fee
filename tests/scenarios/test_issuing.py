"""Issuing city QR codes on every ledger: the SM2 issuer keys certified center
→ institution → user (X.509), rotated and revoked, each step an event with the
certificate's fingerprint; guide URLs filed, approved and rejected. The ledger
is shared (conftest.py): tests use the ledger's keys (World.issuer_keys) and
look only at what they made."""

from __future__ import annotations

from typing import Any

from helpers import (
    CENTER,
    KUNSHAN,
    World,
    certificate,
    certify_institution,
    event_types,
    rejected,
)

from chaincode.errors import Conflict, Unauthorized


def _keys(w: World) -> dict[str, dict[str, Any]]:
    got = w.ids("Taicang", "auditor").evaluate("GetIssuerKeys", {})
    return {k["fingerprint"]: k for k in got["keys"]}


def test_root_and_institution_keys_rotate(world: World) -> None:
    keys = world.issuer_keys()
    old_root = keys.root.fingerprint
    new_root = certificate(keys.root.subject, None, ca=True)
    r = world.ids(CENTER, "admin").submit("CertifyIssuerKey", {
        "level": "root", "certificate_pem": new_root[1].pem})
    assert event_types(r) == ["IssuerKeyRotated", "IssuerKeyCertified"]
    assert r.result["rotated"] == old_root
    keys.root_private, keys.root = new_root  # later tests certify under it
    # naming the root as its issuer is not enough: the root's key must sign
    stranger = certificate(KUNSHAN, None)[0]
    rejected(world.ids, (CENTER, "admin"), "CertifyIssuerKey", {
        "level": "institution", "certificate_pem": certificate(
            {**KUNSHAN, "organization_name": "Shanghai"}, (stranger, keys.root),
            ca=True)[1].pem}, Unauthorized, "certificate_pem", "not signed")
    first = certify_institution(world.ids, keys, "Shanghai")
    second = certify_institution(world.ids, keys, "Shanghai")
    listed = _keys(world)
    assert listed[old_root]["status"] == "rotated"
    assert listed[new_root[1].fingerprint]["status"] == "active"
    assert listed[first[1].fingerprint]["status"] == "rotated"
    assert listed[second[1].fingerprint]["level"] == "institution"
    assert listed[second[1].fingerprint]["issuer_fingerprint"] == \
        new_root[1].fingerprint
    # a user key signed by the rotated institution key is refused
    rejected(world.ids, ("Shanghai", "admin"), "CertifyUserKey", {
        "certificate_pem": certificate(
            {**KUNSHAN, "organization_name": "Shanghai"}, first)[1].pem},
        Unauthorized, "certificate_pem", "not signed by the Shanghai institution")


def test_user_key_certified_then_revoked(world: World) -> None:
    keys = world.issuer_keys()
    _, cert = certificate({**KUNSHAN, "organizational_unit_name": "metro-app"},
                          keys.institution)
    r = world.ids("Kunshan", "admin").submit("CertifyUserKey", {
        "certificate_pem": cert.pem})
    assert event_types(r) == ["IssuerKeyCertified"]
    data = r.events[0]["data"]
    assert (data["fingerprint"], data["level"], data["holder"], data["city"]) == (
        cert.fingerprint, "user", "metro-app", "Kunshan")
    assert data["issuer_fingerprint"] == keys.institution[1].fingerprint
    r = world.ids("Kunshan", "admin").submit("RevokeIssuerKey", {
        "fingerprint": cert.fingerprint, "reason": "phone lost"})
    assert event_types(r) == ["IssuerKeyRevoked"]
    assert _keys(world)[cert.fingerprint]["status"] == "revoked"
    rejected(world.ids, (CENTER, "admin"), "RevokeIssuerKey", {
        "fingerprint": cert.fingerprint, "reason": "again"}, Conflict,
        "fingerprint", "already revoked")
    rejected(world.ids, ("Taicang", "admin"), "RevokeIssuerKey", {
        "fingerprint": world.user_key(), "reason": "not mine"}, Unauthorized,
        "fingerprint", "only the center")


def test_guide_url_filed_approved_or_rejected(world: World) -> None:
    url_id = world.filed_url()
    r = world.ids("Kunshan", "admin").submit("ApproveGuideUrl", {"url_id": url_id})
    assert event_types(r) == ["GuideUrlApproved"]
    rejected(world.ids, (CENTER, "admin"), "RejectGuideUrl", {
        "url_id": url_id, "reason": "late"}, Conflict, "url_id", "already approved")
    other = world.filed_url()
    r = world.ids(CENTER, "admin").submit("RejectGuideUrl", {
        "url_id": other, "reason": "not a government domain"})
    assert event_types(r) == ["GuideUrlRejected"]
    got = world.ids("Kunshan", "auditor").evaluate("GetGuideUrl", {"id": other})
    assert got["status"] == "rejected" and got["department"] == "transport"
    url = got["url"]
    rejected(world.ids, ("Kunshan", "transport"), "FileGuideUrl", {
        "scheme_id": world.approved_scheme(), "url": url}, Conflict, "url",
        "already filed")
