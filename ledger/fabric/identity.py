"""A Fabric client identity: an MSP id, an X.509 certificate (PEM) enrolled by the
organisation's Fabric CA, and its ECDSA P-256 private key.

Fabric 2.5 signs with ECDSA over SHA-256, DER-encoded, and peers reject a signature
whose S is in the upper half of the curve order (malleability): ``sign`` always
returns the low-S form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from fabric_protos.msp import identities_pb2

# The order n of NIST P-256.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def low_s(signature: bytes) -> bytes:
    """The same ECDSA P-256 signature with S in the lower half of the order."""
    r, s = decode_dss_signature(signature)
    if s > P256_ORDER // 2:
        s = P256_ORDER - s
    return encode_dss_signature(r, s)


@dataclass(frozen=True)
class FabricIdentity:
    """One wallet entry: who signs (``msp_id`` + certificate) and the key."""

    msp_id: str
    cert_pem: bytes
    key_pem: bytes = b""
    name: str = ""

    @cached_property
    def serialized(self) -> bytes:
        """``msp.SerializedIdentity`` bytes: the creator in every header."""
        return identities_pb2.SerializedIdentity(  # type: ignore[no-any-return]
            mspid=self.msp_id, id_bytes=self.cert_pem).SerializeToString()

    @cached_property
    def _key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.name or self.msp_id}: the key is not ECDSA")
        return key

    def sign(self, message: bytes) -> bytes:
        """ECDSA P-256 / SHA-256 signature of ``message``, DER, low-S."""
        return low_s(self._key.sign(message, ec.ECDSA(hashes.SHA256())))

    @classmethod
    def load(cls, directory: Path) -> FabricIdentity:
        """Read a wallet entry: ``cert.pem``, ``key.pem`` and ``identity.json``
        (``{"msp_id": ..., "name": ..., ...}``)."""
        meta = json.loads((directory / "identity.json").read_text())
        return cls(meta["msp_id"], (directory / "cert.pem").read_bytes(),
                   (directory / "key.pem").read_bytes(), meta.get("name", ""))
