"""The trust bundle over HTTP: a terminal fetches it sealed with the node's
SM2 key, checks the seal against the pinned signing key and verifies city QR
codes offline with it; after a revocation a refreshed bundle refuses them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from apikit import KS_ADMIN, KS_TERMINAL, Api, name
from helpers import KUNSHAN, certificate, issuer_keys

from ledger import crypto
from ledger.qrcode.bundle import open_bundle
from ledger.qrcode.codes import issue_user_cert, make_dynamic, sign_static
from ledger.qrcode.verify import Verifier


def _terminal(api: Api) -> Verifier:
    api.sync()
    pem = api.get("/api/signing-key", KS_TERMINAL).json()["public_key_pem"]
    sealed = api.get("/api/trust-bundle", KS_TERMINAL).json()
    return Verifier(open_bundle(sealed, crypto.public_key_from_pem(pem.encode())))


def test_terminal_verifies_with_the_fetched_bundle(api: Api) -> None:
    scheme = api.approved_scheme()
    url = api.guide_url(scheme)
    api.ok(f"/api/guide-urls/{url}/approve", {}, KS_ADMIN, 200)
    private, cert = certificate({**KUNSHAN, "organizational_unit_name": name("app")},
                                issuer_keys(api.clients).institution)
    api.ok("/api/issuer-keys/users", {"certificate_pem": cert.pem}, KS_ADMIN)
    now = datetime.now(UTC)
    static = sign_static(
        signer_fingerprint=cert.fingerprint, scheme_id=scheme, guide_url_id=url,
        code_type="transport", identifier_id=str(uuid.uuid4()),
        not_before=now - timedelta(minutes=1), not_after=now + timedelta(days=1),
        private=private)
    institution_key, institution = issuer_keys(api.clients).institution
    rider, rider_public = crypto.get_backend().sm2_generate()
    compact = issue_user_cert(
        institution_private=institution_key,
        institution_fingerprint=institution.fingerprint, scheme_id=scheme,
        user_id=b"rider-01", user_public=rider_public,
        not_after=now + timedelta(days=1))
    terminal = _terminal(api)
    assert terminal.verify(static).ok and terminal.verify(
        make_dynamic(compact, rider)).ok
    api.ok(f"/api/issuer-keys/{cert.fingerprint}/revoke",
           {"reason": "device lost"}, KS_ADMIN, 200)
    refreshed = _terminal(api)
    verdict = refreshed.verify(static)
    assert not verdict.ok and "is revoked" in verdict.reason
    assert refreshed.verify(make_dynamic(compact, rider)).ok  # another key
    assert terminal.verify(static).ok  # a stale bundle: terminals must refresh
    # the rider's phone is lost: the city revokes the compact certificate
    api.ok(f"/api/code-schemes/{scheme}/user-revocations", {
        "user_id": b"rider-01".hex(), "until": (now + timedelta(days=1)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"), "reason": "phone lost"}, KS_ADMIN)
    verdict = _terminal(api).verify(make_dynamic(compact, rider))
    assert verdict.reason == "the user certificate is revoked"
    r = api.client.get("/api/trust-bundle")
    assert r.status_code == 401
