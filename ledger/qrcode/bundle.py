"""The trust bundle (信任包): what a terminal needs to verify any member
city's codes offline: the issuer keys with their certificates and statuses
(revocations included), the users' compact certificates revoked and not yet
expired, the approved code schemes and guide URLs, and the
ledger height they were read at; sealed with the exporting node's SM2 key."""

from __future__ import annotations

from typing import Any

from ledger.crypto.sealed import seal, unseal
from ledger.protocol import Ledger

KIND = "cityunion/trust-bundle/1"


def export(ledger: Ledger, private: bytes, public: bytes) -> dict[str, Any]:
    """The bundle of ``ledger`` now, sealed with the key pair."""
    material = ledger.evaluate("GetTrustMaterial", {})
    return seal({"kind": KIND, "height": ledger.height(), **material},
                private, public)


def open_bundle(sealed: dict[str, Any], public: bytes) -> dict[str, Any]:
    """The bundle's document once its seal verifies with the pinned key."""
    document = unseal(sealed, public)
    if document.get("kind") != KIND:
        raise ValueError(f"not a trust bundle (kind {document.get('kind')!r})")
    return document
