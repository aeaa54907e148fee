"""Embedded membership: SM2 keys certified center → institution → user.

The center holds the root key; each organisation (the center itself and every
member city) has an institution CA key certified by the root; users (admins,
departments, terminals, auditors) have keys certified by their organisation's CA.
Certificates are SM2 X.509 (``ledger/crypto/x509.py``, the format of the city
QR code's issuer keys); a user's role and department are in the attribute
extension Fabric CA uses, so the chaincode reads callers the same way on both
ledgers. Validity is not enforced by the embedded ledger (keys are revoked by
re-creating the consortium); certificates are issued for ``VALID_DAYS``.
The root and institution certificates go into the genesis block, so the chain can
be verified offline from its own first block.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from chaincode.encoding import canonical_json
from chaincode.identity import Role
from chaincode.identity import label as identity_label
from chaincode.stub import Creator
from ledger import crypto
from ledger.crypto import x509
from ledger.crypto.errors import CryptoError
from network.consortium import Consortium, load_consortium

ROOT_NAME = "CityUnion Root CA"
VALID_DAYS = 20 * 365


class MembershipError(ValueError):
    """A certificate or identity that cannot be trusted or found."""


def _name(subject: Mapping[str, Any]) -> dict[str, str]:
    return {"common_name": str(subject["name"]),
            "organization_name": str(subject["org"])}


def issue_certificate(issuer: Mapping[str, Any], issuer_key: bytes,
                      issuer_public: bytes, subject: Mapping[str, Any],
                      public_key: bytes, backend: crypto.Backend,
                      ca: bool = False) -> bytes:
    """An SM2 X.509 certificate (PEM) of ``public_key`` for ``subject`` (org,
    name, and for users role and department, which go into the attribute
    extension as Fabric CA writes them: ``cityunion.role``, ...)."""
    attributes = {f"cityunion.{k}": str(subject[k]) for k in ("role", "department")
                  if k in subject and not ca}
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    cert = x509.issue(_name(subject), public_key, _name(issuer), issuer_key,
                      issuer_public, secrets.randbelow(1 << 64) + 1, start,
                      start + timedelta(days=VALID_DAYS), ca=ca,
                      path_length=(1 if issuer is subject else 0) if ca else None,
                      attributes=attributes)
    return cert.pem.encode()


def parse_certificate(cert: bytes) -> dict[str, Any]:
    """``{"issuer": its common name, "public_key": hex, "subject": {org, name,
    role, department}}`` of a membership certificate."""
    try:
        parsed = x509.load(cert)
    except CryptoError as e:
        raise MembershipError(f"malformed certificate: {e}") from e
    subject = {"org": parsed.subject.get("organization_name", ""),
               "name": parsed.subject.get("common_name", "")}
    subject |= {k.removeprefix("cityunion."): v
                for k, v in parsed.attributes.items()}
    return {"issuer": parsed.issuer.get("common_name", ""),
            "public_key": parsed.public_key.hex(), "subject": subject}


@functools.lru_cache(maxsize=1024)
def creator_name(cert: str) -> str:
    """The name of a transaction's creator (its certificate's common name)."""
    return str(parse_certificate(cert.encode())["subject"]["name"])


def check_signature(cert: bytes, issuer_public: bytes,
                    backend: crypto.Backend) -> bool:
    try:
        return x509.load(cert).signed_by(issuer_public, backend)
    except CryptoError as e:
        raise MembershipError(f"malformed certificate: {e}") from e


@dataclass(frozen=True)
class Identity:
    """A signing identity: its organisation's MSP id, certificate and private key."""

    msp_id: str
    certificate: bytes
    private_key: bytes

    @cached_property
    def subject(self) -> dict[str, Any]:
        return dict(parse_certificate(self.certificate)["subject"])

    @property
    def creator(self) -> Creator:
        return Creator(self.msp_id, self.certificate)

    @property
    def label(self) -> str:
        s = self.subject
        return identity_label(s["org"], s["role"], s.get("department"))

    def sign(self, data: bytes, backend: crypto.Backend | None = None) -> bytes:
        return (backend or crypto.get_backend()).sm2_sign(self.private_key, data)


class Membership:
    """Trust anchors (root + institution certificates) and creator validation."""

    def __init__(self, config: dict[str, Any], backend: crypto.Backend) -> None:
        self.config = config
        self.backend = backend
        root = parse_certificate(config["root"].encode())
        self.root_public = bytes.fromhex(root["public_key"])
        self.cas: dict[str, bytes] = {}
        for msp_id, ca_cert in config["organisations"].items():
            if not check_signature(ca_cert.encode(), self.root_public, backend):
                raise MembershipError(f"the CA certificate of {msp_id} is not "
                                      "signed by the root")
            self.cas[msp_id] = bytes.fromhex(
                parse_certificate(ca_cert.encode())["public_key"])
        self._trusted: dict[tuple[str, bytes], bytes] = {}

    def public_key_of(self, creator: Creator) -> bytes:
        """The creator's public key, once its certificate chains to the root."""
        cached = self._trusted.get((creator.msp_id, creator.id_bytes))
        if cached is not None:
            return cached
        ca = self.cas.get(creator.msp_id)
        if ca is None:
            raise MembershipError(f"unknown MSP {creator.msp_id!r}")
        cert = parse_certificate(creator.id_bytes)
        if cert["issuer"] != f"{creator.msp_id} CA":
            raise MembershipError(f"certificate not issued by {creator.msp_id} CA")
        if not check_signature(creator.id_bytes, ca, self.backend):
            raise MembershipError(f"certificate of {cert['subject'].get('name')} "
                                  f"is not signed by {creator.msp_id} CA")
        public = bytes.fromhex(cert["public_key"])
        self._trusted[(creator.msp_id, creator.id_bytes)] = public
        return public


# ---------------------------------------------------------------- on disk
def _write_key(path: Path, private: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(crypto.private_key_to_pem(private))


def default_users(consortium: Consortium) -> dict[str, list[dict[str, str]]]:
    """The identities each organisation gets when a consortium is created."""
    users = {consortium.center.name: [
        {"name": "admin", "role": Role.CENTER_ADMIN},
        {"name": "auditor", "role": Role.AUDITOR}]}
    for city in consortium.cities:
        users[city.name] = [
            {"name": "admin", "role": Role.CITY_ADMIN},
            {"name": "transport", "role": Role.DEPARTMENT, "department": "transport"},
            {"name": "health", "role": Role.DEPARTMENT, "department": "health"},
            {"name": "terminal", "role": Role.TERMINAL},
            {"name": "auditor", "role": Role.AUDITOR}]
    return users


class Wallet:
    """The consortium's key material under ``<data dir>/msp``."""

    def __init__(self, data_dir: Path, consortium: Consortium | None = None) -> None:
        self.root = Path(data_dir) / "msp"
        self.consortium = consortium or load_consortium()

    @property
    def exists(self) -> bool:
        return (self.root / "config.json").exists()

    def create(self, backend: crypto.Backend) -> dict[str, Any]:
        """Generate root, institution and user keys; returns the MSP config."""
        root_private, root_public = backend.sm2_generate()
        root = {"org": "root", "name": ROOT_NAME}
        root_cert = issue_certificate(root, root_private, root_public, root,
                                      root_public, backend, ca=True)
        _write_key(self.root / "root.key", root_private)
        (self.root / "root.cert").write_bytes(root_cert)
        orgs: dict[str, str] = {}
        for org in self.consortium.organisations:
            ca_private, ca_public = backend.sm2_generate()
            ca_cert = issue_certificate(
                root, root_private, root_public,
                {"org": org.name, "name": f"{org.msp_id} CA"}, ca_public,
                backend, ca=True)
            orgs[org.msp_id] = ca_cert.decode()
            _write_key(self.root / org.name / "ca.key", ca_private)
            (self.root / org.name / "ca.cert").write_bytes(ca_cert)
        for org_name, users in default_users(self.consortium).items():
            for user in users:
                self.enroll(org_name, user["name"], Role(user["role"]),
                            user.get("department"), backend)
        node = self.enroll(self.consortium.center.name, "node", Role.AUDITOR, None,
                           backend)
        config = {"root": root_cert.decode(), "organisations": orgs,
                  "node": {"msp_id": node.msp_id,
                           "certificate": node.certificate.decode()}}
        (self.root / "config.json").write_bytes(canonical_json(config))
        return config

    def config(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.root / "config.json").read_bytes()))
        except FileNotFoundError:
            raise MembershipError(f"no consortium in {self.root.parent} "
                                  "(run `cityunion demo` or `cityunion init`)"
                                  ) from None

    def enroll(self, org_name: str, name: str, role: Role, department: str | None,
               backend: crypto.Backend) -> Identity:
        """Issue a user certificate from the organisation's CA."""
        org = self.consortium.by_name(org_name)
        if org is None:
            raise MembershipError(f"unknown organisation {org_name!r} (accepted: "
                                  f"{', '.join(self.consortium_names)})")
        ca_key = crypto.private_key_from_pem((self.root / org.name / "ca.key")
                                             .read_bytes())
        private, public = backend.sm2_generate()
        subject = {"org": org.name, "name": name, "role": role.value}
        if department:
            subject["department"] = department
        cert = issue_certificate({"org": org.name, "name": f"{org.msp_id} CA"},
                                 ca_key, backend.sm2_public_from_private(ca_key),
                                 subject, public, backend)
        user_dir = self.root / org.name / "users"
        _write_key(user_dir / f"{name}.key", private)
        (user_dir / f"{name}.cert").write_bytes(cert)
        return Identity(org.msp_id, cert, private)

    @property
    def consortium_names(self) -> list[str]:
        return [o.name for o in self.consortium.organisations]

    def identity(self, org_name: str, name: str = "admin") -> Identity:
        org = self.consortium.by_name(org_name)
        if org is None:
            raise MembershipError(f"unknown organisation {org_name!r} (accepted: "
                                  f"{', '.join(self.consortium_names)})")
        user_dir = self.root / org.name / "users"
        try:
            cert = (user_dir / f"{name}.cert").read_bytes()
            key = crypto.private_key_from_pem((user_dir / f"{name}.key").read_bytes())
        except FileNotFoundError:
            known = sorted(p.stem for p in user_dir.glob("*.cert"))
            raise MembershipError(f"no identity {name!r} in {org.name} (known: "
                                  f"{', '.join(known) or 'none'})") from None
        return Identity(org.msp_id, cert, key)
