"""The city QR code (城市二维码) as text: three segments (the city management
segment: guide URL, code system, authorisation, attribute and identity ids; the
department segment; the content), a serial, a validity window and the signer's
fingerprint, signed with SM2 over their canonical JSON:

    CU1:<base64url canonical JSON>.<base64url DER SM2 signature>

Personal content is SM4-encrypted by the issuer (``enc``), so only departments
holding the key read it; every terminal can still check the signature.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chaincode.encoding import canonical_json
from ledger import crypto
from ledger.crypto.errors import CryptoError

PREFIX = "CU1:"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Code:
    """A parsed code: its payload and signature, not yet verified."""

    payload: dict[str, Any]
    signature: bytes  # r || s

    @property
    def serial(self) -> str:
        return str(self.payload["serial"])

    @property
    def signer(self) -> str:
        return str(self.payload["signer"])


def make_payload(*, guide_url_id: str, scheme_id: str, code_type: str,
                 identifier_id: str, city: str, department: str,
                 content: dict[str, Any], not_before: datetime,
                 not_after: datetime, signer: str,
                 serial: str | None = None) -> dict[str, Any]:
    """The payload of a static code (``content``: plain fields, or
    ``{"enc": <base64 SM4 ciphertext>}`` for personal data)."""
    return {
        # the city management segment: guide URL, code system (the scheme's
        # code type), authorisation (the approved scheme), attribute (a static
        # code of an identifier), identity (the identifier)
        "city": {"url": guide_url_id, "system": code_type, "auth": scheme_id,
                 "attr": "static", "ident": identifier_id},
        "dept": {"city": city, "code": department},
        "content": content, "serial": serial or secrets.token_hex(16),
        "nb": int(not_before.timestamp()), "na": int(not_after.timestamp()),
        "signer": signer}


def sign(payload: dict[str, Any], private: bytes) -> str:
    """The code's text."""
    body = canonical_json(payload)
    signature = crypto.get_backend().sm2_sign(private, body)
    return f"{PREFIX}{_b64(body)}.{_b64(crypto.signature_to_der(signature))}"


def parse(text: str) -> Code:
    """A code from its text; ValueError saying what is malformed."""
    text = text.strip()
    if not text.startswith(PREFIX) or text.count(".") != 1:
        raise ValueError(f"not a city QR code (expected {PREFIX}<payload>."
                         "<signature>)")
    body, sig = text[len(PREFIX):].split(".")
    try:
        payload = json.loads(_unb64(body))
        signature = crypto.signature_from_der(_unb64(sig))
    except (binascii.Error, ValueError, CryptoError) as e:
        raise ValueError(f"malformed code: {e}") from None
    required = {"city", "dept", "content", "serial", "nb", "na", "signer"}
    if not isinstance(payload, dict) or not required <= payload.keys():
        raise ValueError(f"malformed code: the payload needs {sorted(required)}")
    if canonical_json(payload) != _unb64(body):
        raise ValueError("malformed code: the payload is not canonical JSON")
    return Code(payload, signature)
