"""Who is calling: city, role and department, from the creator's certificate only.

Authority never comes from an argument. Callers hold X.509 certificates: from
Fabric CA (ECDSA) on Fabric, SM2 ones from ``ledger/msp.py`` on the embedded
ledger; in both the attribute extension (OID 1.2.3.4.5.6.7.8.1, JSON
``{"attrs": {...}}``) carries ``cityunion.role`` and ``cityunion.department``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from chaincode.errors import Unauthorized
from chaincode.stub import Creator
from network.consortium import Organisation, load_consortium

FABRIC_ATTRS_OID = "1.2.3.4.5.6.7.8.1"


class Role(StrEnum):
    CENTER_ADMIN = "center_admin"
    CITY_ADMIN = "city_admin"
    DEPARTMENT = "department"
    TERMINAL = "terminal"
    AUDITOR = "auditor"


def roles_of(org: Organisation) -> tuple[Role, ...]:
    """The roles an organisation's identities may hold: the center has its
    admin and auditors; a member city every role but the center admin."""
    if org.is_center:
        return (Role.CENTER_ADMIN, Role.AUDITOR)
    return tuple(r for r in Role if r is not Role.CENTER_ADMIN)


def label(city: str, role: str, department: str | None) -> str:
    """How an identity is named in events and logs: ``city:role[/department]``."""
    return f"{city}:{role}" + (f"/{department}" if department else "")


@dataclass(frozen=True)
class Caller:
    city: str  # organisation name, e.g. "Kunshan" or "Center"
    role: Role
    department: str | None = None
    name: str = ""

    @property
    def is_center(self) -> bool:
        return self.city == load_consortium().center.name

    def __str__(self) -> str:
        return label(self.city, self.role.value, self.department)


def _attributes(id_bytes: bytes) -> tuple[dict[str, str], str]:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(id_bytes)
    name = cert.subject.rfc4514_string()
    try:
        ext = cert.extensions.get_extension_for_oid(
            x509.ObjectIdentifier(FABRIC_ATTRS_OID)
        )
    except x509.ExtensionNotFound:
        return {}, name
    raw = ext.value.public_bytes()  # type: ignore[attr-defined]
    attrs = json.loads(raw).get("attrs", {})
    return {k.removeprefix("cityunion."): str(v) for k, v in attrs.items()}, name


def caller_of(creator: Creator) -> Caller:
    """The caller's organisation and role, or Unauthorized if they cannot be told."""
    return _caller_of(creator.msp_id, creator.id_bytes)


@lru_cache(maxsize=1024)  # a certificate's attributes never change
def _caller_of(msp_id: str, id_bytes: bytes) -> Caller:
    creator = Creator(msp_id, id_bytes)
    org = load_consortium().by_msp(creator.msp_id)
    if org is None:
        raise Unauthorized(f"MSP {creator.msp_id!r} is not a consortium member")
    try:
        attrs, name = _attributes(creator.id_bytes)
        role = Role(attrs.get("role", ""))
    except (ValueError, KeyError, TypeError) as e:
        raise Unauthorized(
            "the caller's certificate carries no valid role attribute "
            f"(accepted: {', '.join(r.value for r in Role)})"
        ) from e
    if role not in roles_of(org):
        raise Unauthorized(f"role {role.value} is not valid for {org.name}")
    department = attrs.get("department") or None
    if role is Role.DEPARTMENT and not department:
        raise Unauthorized("a department identity must name its department")
    return Caller(org.name, role, department, name)
