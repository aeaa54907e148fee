"""Sealed documents: a JSON document with a detached SM2 signature over its
canonical JSON, checkable offline by anyone holding the signer's public key
(terminals with a blacklist delta, for instance).

    {"document": {...}, "sm3": "<SM3 of the canonical JSON>",
     "signature": "<base64 DER SM2 signature>", "key_sm3": "<SM3 of the key>"}
"""

from __future__ import annotations

import base64
from typing import Any

from chaincode.encoding import canonical_json, sm3_hex
from ledger.crypto.errors import CryptoError
from ledger.crypto.sm2 import signature_from_der, signature_to_der


def seal(document: dict[str, Any], private: bytes, public: bytes) -> dict[str, Any]:
    """``document`` signed with the SM2 key pair (64-byte ``x || y`` public)."""
    from ledger.crypto import get_backend

    body = canonical_json(document)
    signature = get_backend().sm2_sign(private, body)
    return {"document": document, "sm3": sm3_hex(body),
            "signature": base64.b64encode(signature_to_der(signature)).decode(),
            "key_sm3": sm3_hex(public)}


def unseal(sealed: dict[str, Any], public: bytes) -> dict[str, Any]:
    """The document of ``sealed`` once its signature verifies with ``public``;
    a CryptoError saying what is wrong otherwise."""
    from ledger.crypto import get_backend

    try:
        document, signature = sealed["document"], sealed["signature"]
        body = canonical_json(document)
        rs = signature_from_der(base64.b64decode(signature, validate=True))
    except (KeyError, TypeError, ValueError) as e:
        raise CryptoError(f"not a sealed document: {e}") from None
    if sealed.get("key_sm3") not in (None, sm3_hex(public)):
        raise CryptoError(f"sealed by key {sealed['key_sm3']}, not by "
                          f"{sm3_hex(public)}")
    if sealed.get("sm3") != sm3_hex(body):
        raise CryptoError("the document does not match its SM3")
    if not get_backend().sm2_verify(public, body, rs):
        raise CryptoError("the signature does not verify with the key")
    return dict(document)
