"""SM2 X.509 certificates (ledger.crypto.x509): the chain center → institution
→ user verifies here with either crypto backend and with the OpenSSL command
line; a changed byte, the wrong issuer or a non-SM2 certificate is refused."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger import crypto
from ledger.crypto import x509
from ledger.crypto.errors import CryptoError

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ROOT = {"common_name": "CityUnion Root", "organization_name": "Center",
        "country_name": "CN"}


def _chain() -> tuple[x509.Certificate, ...]:
    b = crypto.get_backend()
    (rk, rp), (ik, ip), (_, up) = (b.sm2_generate() for _ in range(3))
    root = x509.issue(ROOT, rp, ROOT, rk, rp, 1, NOW, NOW + timedelta(days=3650),
                      ca=True, path_length=1)
    inst = x509.issue({"common_name": "Kunshan code issuer",
                       "organization_name": "Kunshan", "country_name": "CN"},
                      ip, root.subject, rk, rp, 2, NOW, NOW + timedelta(days=365),
                      ca=True, path_length=0)
    user = x509.issue({"common_name": "Kunshan transport app",
                       "organization_name": "Kunshan",
                       "organizational_unit_name": "transport"},
                      up, inst.subject, ik, ip, 3, NOW, NOW + timedelta(days=30))
    return root, inst, user


def test_chain_verifies_with_every_backend() -> None:
    root, inst, user = _chain()
    assert (root.is_ca, inst.is_ca, user.is_ca) == (True, True, False)
    assert (root.path_length, inst.path_length) == (1, 0)
    assert user.subject["organizational_unit_name"] == "transport"
    assert x509.load(user.pem.encode()) == user
    for name in crypto.available_backends():
        backend = crypto.get_backend(name)
        tbs = user._parsed["tbs_certificate"].dump()
        sig = crypto.signature_from_der(user._parsed["signature_value"].native)
        assert backend.sm2_verify(inst.public_key, tbs, sig), name
    assert root.signed_by(root.public_key) and inst.signed_by(root.public_key)
    assert user.signed_by(inst.public_key) and not user.signed_by(root.public_key)
    assert user.valid_at(NOW + timedelta(days=1))
    assert not user.valid_at(NOW + timedelta(days=31))


def test_a_changed_byte_fails() -> None:
    _, inst, user = _chain()
    der = bytearray(user.der)
    der[der.index(b"transport")] ^= 1  # in the subject: still parses
    changed = x509.load(bytes(der))
    assert changed.subject["organizational_unit_name"] != "transport"
    assert not changed.signed_by(inst.public_key)
    assert changed.fingerprint != user.fingerprint


def test_not_sm2_is_refused() -> None:
    with pytest.raises(CryptoError, match="malformed"):
        x509.load(b"\x30\x03\x02\x01\x01")
    with pytest.raises(CryptoError, match="CERTIFICATE"):
        x509.load(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    root, _, _ = _chain()
    with pytest.raises(CryptoError, match="not_after"):
        x509.issue(ROOT, root.public_key, ROOT, b"\x01" * 32, root.public_key, 9,
                   NOW, NOW)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
def test_openssl_reads_and_verifies_the_chain(tmp_path: Path) -> None:
    root, inst, user = _chain()
    for name, cert in (("root", root), ("inst", inst), ("user", user)):
        (tmp_path / f"{name}.pem").write_text(cert.pem)
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in",
                           str(tmp_path / "user.pem")], capture_output=True,
                          text=True, check=True).stdout
    assert "Signature Algorithm: SM2-with-SM3" in text and "ASN1 OID: SM2" in text
    # OpenSSL 3.0 applies the GM/T 0009 default distinguishing id, spelled out,
    # to the certificate it is asked about only: each link is checked apart.
    for anchor, leaf in (("root", "inst"), ("inst", "user")):
        run = subprocess.run(["openssl", "verify", "-vfyopt",
                              "distid:1234567812345678", "-partial_chain",
                              "-CAfile", str(tmp_path / f"{anchor}.pem"),
                              str(tmp_path / f"{leaf}.pem")],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip().endswith(": OK")
    run = subprocess.run(["openssl", "verify", "-vfyopt", "distid:1234567812345678",
                          "-partial_chain", "-CAfile", str(tmp_path / "root.pem"),
                          str(tmp_path / "user.pem")], capture_output=True, text=True)
    assert run.returncode != 0  # the root did not sign the user's key


def test_membership_certificates_are_the_same_format(tmp_path: Path) -> None:
    """The embedded ledger's identities: SM2 X.509 root → organisation CA →
    user, the role and department in Fabric CA's attribute extension, read
    by the chaincode as on Fabric."""
    from chaincode.identity import Role, caller_of
    from ledger.msp import Wallet

    wallet = Wallet(tmp_path)
    config = wallet.create(crypto.get_backend())
    root = x509.load(config["root"].encode())
    ca = x509.load(config["organisations"]["KunshanMSP"].encode())
    identity = wallet.identity("Kunshan", "transport")
    user = x509.load(identity.certificate)
    assert root.is_ca and ca.is_ca and not user.is_ca
    assert ca.signed_by(root.public_key) and user.signed_by(ca.public_key)
    assert user.attributes == {"cityunion.role": "department",
                               "cityunion.department": "transport"}
    caller = caller_of(identity.creator)
    assert (caller.city, caller.role, caller.department) == (
        "Kunshan", Role.DEPARTMENT, "transport")
    if shutil.which("openssl"):
        (tmp_path / "ca.pem").write_text(ca.pem)
        (tmp_path / "user.pem").write_text(user.pem)
        run = subprocess.run(["openssl", "verify", "-vfyopt",
                              "distid:1234567812345678", "-partial_chain",
                              "-CAfile", str(tmp_path / "ca.pem"),
                              str(tmp_path / "user.pem")],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
