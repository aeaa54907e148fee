"""X.509 certificates with SM2 (GM/T 0015): the issuer keys of the city QR code
(center → institution → user) in the format OpenSSL, Tongsuo and GmSSL read.

Built with ``asn1crypto``: the subject key is id-ecPublicKey on the SM2 curve
(1.2.156.10197.1.301), the signature SM2-with-SM3 (1.2.156.10197.1.501) over
the DER of the TBSCertificate with the default user id ``1234567812345678``.
A certificate's fingerprint is the SM3 of its DER, in hex.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from asn1crypto import pem, x509

from chaincode.encoding import canonical_json, sm3, sm3_hex
from ledger.crypto.errors import CryptoError
from ledger.crypto.pem import _SM2_ALGORITHM, _check_algorithm
from ledger.crypto.sm2 import on_curve, signature_from_der, signature_to_der

SM2_WITH_SM3 = "1.2.156.10197.1.501"
# Fabric CA's attribute extension: JSON {"attrs": {...}}; the embedded ledger's
# membership certificates carry their role and department in it too
ATTRIBUTES_OID = "1.2.3.4.5.6.7.8.1"
# asn1crypto's errors for malformed DER; all become CryptoError here
_DER_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError,
               AttributeError)


def _time(when: datetime) -> x509.Time:
    # RFC 5280: UTCTime through 2049, GeneralizedTime from 2050
    name = "utc_time" if when.year < 2050 else "general_time"
    return x509.Time(name=name, value=when.astimezone(UTC).replace(microsecond=0))


def _key_id(public: bytes) -> bytes:
    return sm3(b"\x04" + public)[:20]


@dataclass(frozen=True)
class Certificate:
    """A parsed certificate: what callers check and the DER it came from."""

    der: bytes
    subject: dict[str, str]
    issuer: dict[str, str]
    serial: int
    not_before: datetime
    not_after: datetime
    public_key: bytes  # 64-byte x || y
    is_ca: bool
    path_length: int | None
    attributes: dict[str, str]  # Fabric CA's attribute extension, if any

    @cached_property
    def fingerprint(self) -> str:
        return sm3_hex(self.der)

    @property
    def pem(self) -> str:
        return str(pem.armor("CERTIFICATE", self.der).decode())

    @cached_property
    def _parsed(self) -> x509.Certificate:
        return x509.Certificate.load(self.der)

    def signed_by(self, issuer_public: bytes, backend: Any = None) -> bool:
        """Whether ``issuer_public`` made this certificate's signature."""
        from ledger.crypto import get_backend

        tbs = self._parsed["tbs_certificate"].dump()
        try:
            signature = signature_from_der(self._parsed["signature_value"].native)
        except CryptoError:
            return False
        return bool((backend or get_backend()).sm2_verify(issuer_public, tbs,
                                                          signature))

    def valid_at(self, when: datetime) -> bool:
        return self.not_before <= when <= self.not_after


def issue(subject: Mapping[str, str], public_key: bytes,
          issuer: Mapping[str, str], issuer_private: bytes, issuer_public: bytes,
          serial: int, not_before: datetime, not_after: datetime,
          ca: bool = False, path_length: int | None = None,
          attributes: Mapping[str, str] | None = None) -> Certificate:
    """A certificate of ``public_key`` for ``subject`` (asn1crypto name fields:
    ``common_name``, ``organization_name``, ``organizational_unit_name``,
    ``country_name``), signed by the issuer's key. A CA certificate may certify
    keys (``path_length``: how many CA levels may follow); any other signs
    codes and data only."""
    if not on_curve(public_key):
        raise CryptoError("the subject key is not an SM2 public key (64 bytes "
                          "x || y on the curve)")
    if not 0 < serial < 1 << 159:
        raise CryptoError("serial must be a positive integer of at most 159 bits")
    if not_after <= not_before:
        raise CryptoError("not_after must come after not_before")
    usage = {"key_cert_sign", "crl_sign"} if ca else {"digital_signature"}
    constraints: dict[str, Any] = {"ca": ca}
    if ca and path_length is not None:
        constraints["path_len_constraint"] = path_length
    tbs = x509.TbsCertificate({
        "version": "v3", "serial_number": serial,
        "signature": {"algorithm": SM2_WITH_SM3},
        "issuer": x509.Name.build(dict(issuer)),
        "validity": {"not_before": _time(not_before), "not_after": _time(not_after)},
        "subject": x509.Name.build(dict(subject)),
        "subject_public_key_info": {"algorithm": _SM2_ALGORITHM,
                                    "public_key": b"\x04" + public_key},
        "extensions": [
            {"extn_id": "basic_constraints", "critical": True,
             "extn_value": constraints},
            {"extn_id": "key_usage", "critical": True, "extn_value": usage},
            {"extn_id": "key_identifier", "critical": False,
             "extn_value": _key_id(public_key)},
            {"extn_id": "authority_key_identifier", "critical": False,
             "extn_value": {"key_identifier": _key_id(issuer_public)}},
        ] + ([{"extn_id": ATTRIBUTES_OID, "critical": False,
               "extn_value": canonical_json({"attrs": dict(attributes)})}]
             if attributes else [])})
    from ledger.crypto import get_backend

    signature = get_backend().sm2_sign(issuer_private, tbs.dump())
    cert = x509.Certificate({"tbs_certificate": tbs,
                             "signature_algorithm": {"algorithm": SM2_WITH_SM3},
                             "signature_value": signature_to_der(signature)})
    return load(cert.dump())


def load(data: bytes) -> Certificate:
    """A certificate from PEM or DER; CryptoError naming what is wrong."""
    der = data
    if data.lstrip().startswith(b"-----"):
        try:
            label, _, der = pem.unarmor(data.strip())
        except (binascii.Error, ValueError) as e:
            raise CryptoError(f"not a PEM certificate: {e}") from None
        if label != "CERTIFICATE":
            raise CryptoError(f"expected a CERTIFICATE PEM, got {label!r}")
    try:
        cert = x509.Certificate.load(der, strict=True)
        tbs = cert["tbs_certificate"]
        algorithm = cert["signature_algorithm"]["algorithm"].dotted
        info = tbs["subject_public_key_info"]
        _check_algorithm(info["algorithm"])
        point = info["public_key"].native
        basic = cert.basic_constraints_value
        attributes = {}
        for ext in tbs["extensions"]:
            if ext["extn_id"].dotted == ATTRIBUTES_OID:
                attributes = {str(k): str(v) for k, v in json.loads(
                    ext["extn_value"].native)["attrs"].items()}
        out = Certificate(
            der=der, subject=dict(tbs["subject"].native),
            issuer=dict(tbs["issuer"].native), serial=int(tbs["serial_number"].native),
            not_before=tbs["validity"]["not_before"].native,
            not_after=tbs["validity"]["not_after"].native,
            public_key=bytes(point)[1:], is_ca=bool(basic and basic["ca"].native),
            path_length=(basic["path_len_constraint"].native if basic else None),
            attributes=attributes)
    except _DER_ERRORS as e:
        raise CryptoError(f"malformed certificate: {e}") from None
    if algorithm != SM2_WITH_SM3:
        raise CryptoError(f"signature algorithm {algorithm} is not SM2-with-SM3 "
                          f"({SM2_WITH_SM3})")
    if not (len(point) == 65 and point[0] == 4 and on_curve(bytes(point)[1:])):
        raise CryptoError("the subject key is not an uncompressed SM2 point")
    return out
