"""SM2 keys in PEM, as OpenSSL and Tongsuo write them, through ``asn1crypto``.

Private keys are written as PKCS#8 ``PRIVATE KEY`` (id-ecPublicKey with the SM2
named curve, public key included) and read from PKCS#8 or SEC1 ``EC``/``SM2
PRIVATE KEY``; public keys are SubjectPublicKeyInfo ``PUBLIC KEY``. Encrypted
keys are not read.
"""

from __future__ import annotations

import binascii
from typing import Any

from asn1crypto import keys, pem

from ledger.crypto.errors import CryptoError
from ledger.crypto.sm2 import check_private, on_curve

EC_PUBLIC_KEY = "1.2.840.10045.2.1"  # id-ecPublicKey
SM2_CURVE_OID = "1.2.156.10197.1.301"  # sm2p256v1
# asn1crypto's documented way to teach it a curve (and its key size, 32 bytes)
keys.NamedCurve.register("sm2p256v1", SM2_CURVE_OID, 32)
_SM2_ALGORITHM = {"algorithm": "ec", "parameters": ("named", SM2_CURVE_OID)}
# asn1crypto's errors for malformed DER; all become CryptoError here
_DER_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError)


def _unarmor(data: bytes) -> tuple[str, bytes]:
    try:
        label, _, der = pem.unarmor(data)
    except binascii.Error as exc:
        raise CryptoError(f"bad base64 in PEM: {exc}") from exc
    except ValueError as exc:
        raise CryptoError("no PEM block found") from exc
    return label, der


def _check_algorithm(algorithm: Any) -> None:
    """id-ecPublicKey on the SM2 curve, or (as some tools write) the SM2 OID."""
    oid, params = algorithm["algorithm"].dotted, algorithm["parameters"]
    sm2 = (oid == EC_PUBLIC_KEY and params.name == "named"
           and params.chosen.dotted == SM2_CURVE_OID) or (
        oid == SM2_CURVE_OID and params.native is None)
    if not sm2:
        raise CryptoError("not an SM2 key (expected curve OID 1.2.156.10197.1.301)")


def private_key_to_pem(private: bytes, public: bytes) -> bytes:
    """PKCS#8 ``PRIVATE KEY`` of the key pair."""
    ec_key = keys.ECPrivateKey({"version": "ecPrivkeyVer1",
                                "private_key": int.from_bytes(private, "big"),
                                "public_key": b"\x04" + public})
    ec_key["private_key"].set_encoded_width(32)
    info = keys.PrivateKeyInfo({"version": 0,
                                "private_key_algorithm": _SM2_ALGORITHM,
                                "private_key": ec_key})
    return pem.armor("PRIVATE KEY", info.dump())


def private_key_from_pem(data: bytes) -> bytes:
    """Accepts PKCS#8 ``PRIVATE KEY`` and SEC1 ``EC``/``SM2 PRIVATE KEY``."""
    label, der = _unarmor(data)
    try:
        if label == "PRIVATE KEY":
            try:
                info = keys.PrivateKeyInfo.load(der, strict=True)
                algorithm, der = info["private_key_algorithm"], info["private_key"]
                der = der.contents
            except _DER_ERRORS as exc:
                raise CryptoError("malformed PKCS#8 private key") from exc
            _check_algorithm(algorithm)
        elif label not in ("EC PRIVATE KEY", "SM2 PRIVATE KEY"):  # OpenSSL 3: SM2
            raise CryptoError(f"unsupported PEM type {label!r} (no encrypted keys)")
        ec_key = keys.ECPrivateKey.load(der, strict=True)
        if ec_key["version"].native != "ecPrivkeyVer1":
            raise CryptoError("malformed EC private key")
        private = ec_key["private_key"].contents.rjust(32, b"\0")
        params = ec_key["parameters"]
        if params.native is not None and not (
                params.name == "named" and params.chosen.dotted == SM2_CURVE_OID):
            raise CryptoError("EC private key is not on the SM2 curve")
    except _DER_ERRORS as exc:
        raise CryptoError(f"malformed EC private key: {exc}") from exc
    check_private(private)
    return private


def public_key_to_pem(public: bytes) -> bytes:
    """SubjectPublicKeyInfo ``PUBLIC KEY``."""
    if not on_curve(public):
        raise CryptoError("SM2 public key must be 64 bytes x||y on the curve")
    info = keys.PublicKeyInfo({"algorithm": _SM2_ALGORITHM,
                               "public_key": b"\x04" + public})
    return pem.armor("PUBLIC KEY", info.dump())


def public_key_from_pem(data: bytes) -> bytes:
    """The 64-byte ``x || y`` of a SubjectPublicKeyInfo ``PUBLIC KEY``."""
    label, der = _unarmor(data)
    if label != "PUBLIC KEY":
        raise CryptoError(f"expected a PUBLIC KEY PEM, got {label!r}")
    try:
        info = keys.PublicKeyInfo.load(der, strict=True)
        algorithm, bits = info["algorithm"], info["public_key"].contents
    except _DER_ERRORS as exc:
        raise CryptoError("malformed SubjectPublicKeyInfo") from exc
    _check_algorithm(algorithm)
    # the BIT STRING's body: no unused bits, then an uncompressed SEC1 point
    if len(bits) != 66 or bits[:2] != b"\x00\x04" or not on_curve(bits[2:]):
        raise CryptoError("SM2 public key must be an uncompressed point on the curve")
    return bytes(bits[2:])
