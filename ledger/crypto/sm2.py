"""SM2 as both backends need it: the curve, Z_A, key and signature checks.

Keys are raw bytes: private = 32-byte big-endian ``d``, public = 64-byte
``x || y``, signature = 64-byte ``r || s``. Signatures follow GB/T 32918.2 with an
explicit user id (``e = SM3(Z_A || M)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from chaincode.encoding import sm3
from ledger.crypto.errors import CryptoError

DEFAULT_USER_ID: bytes = b"1234567812345678"


@dataclass(frozen=True)
class Curve:
    """Short Weierstrass curve y^2 = x^3 + ax + b over F_p with base point order n."""

    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int

    def ecc_table(self) -> dict[str, str]:
        """Parameters in the hex-string form ``gmssl.sm2.CryptSM2`` expects."""
        h = "{:064X}".format
        return {"p": h(self.p), "a": h(self.a), "b": h(self.b), "n": h(self.n),
                "g": h(self.gx) + h(self.gy)}


SM2_CURVE = Curve(  # the recommended curve of GB/T 32918.5
    p=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
    a=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    b=0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    gx=0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    gy=0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
    n=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123,
)


def za(hash_fn: Callable[[bytes], bytes], public: bytes, user_id: bytes,
       curve: Curve) -> bytes:
    """Z_A with the given SM3 implementation (the gmssl reference uses its own)."""
    bits = check_user_id(user_id)
    if len(public) != 64:
        raise CryptoError(f"SM2 public key must be 64 bytes, got {len(public)}")
    params = b"".join(v.to_bytes(32, "big")
                      for v in (curve.a, curve.b, curve.gx, curve.gy))
    return hash_fn(bits.to_bytes(2, "big") + user_id + params + public)


def check_user_id(user_id: bytes) -> int:
    """ENTL, the user id's length in bits; CryptoError if it does not fit 16 bits."""
    bits = len(user_id) * 8
    if bits > 0xFFFF:
        raise CryptoError(f"SM2 user id too long ({len(user_id)} bytes, max 8191)")
    return bits


def sm2_za(public: bytes, user_id: bytes = DEFAULT_USER_ID,
           curve: Curve = SM2_CURVE) -> bytes:
    """Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA), GB/T 32918.2."""
    return za(sm3, public, user_id, curve)


def check_private(private: bytes, curve: Curve = SM2_CURVE) -> int:
    """``d`` of a 32-byte private key, or CryptoError if it is out of range."""
    if len(private) != 32:
        raise CryptoError(f"SM2 private key must be 32 bytes, got {len(private)}")
    d = int.from_bytes(private, "big")
    if not 1 <= d <= curve.n - 2:  # SM2 needs d+1 invertible mod n
        raise CryptoError("SM2 private key out of range [1, n-2]")
    return d


def on_curve(public: bytes, curve: Curve = SM2_CURVE) -> bool:
    """Whether ``public`` is 64 bytes ``x || y`` of a point on the curve."""
    if len(public) != 64:
        return False
    x, y = int.from_bytes(public[:32], "big"), int.from_bytes(public[32:], "big")
    p = curve.p
    return x < p and y < p and (y * y - x * x * x - curve.a * x - curve.b) % p == 0


def rs(signature: bytes, curve: Curve = SM2_CURVE) -> tuple[int, int] | None:
    """``(r, s)`` of a 64-byte signature, or None if either is out of range."""
    if len(signature) != 64:
        return None
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    return (r, s) if 0 < r < curve.n and 0 < s < curve.n else None


def signature_to_der(sig: bytes) -> bytes:
    """64-byte ``r || s`` -> DER ``SEQUENCE { r INTEGER, s INTEGER }``."""
    pair = rs(sig)
    if pair is None:
        raise CryptoError("SM2 signature must be 64 bytes r||s with 0 < r, s < n")
    return encode_dss_signature(*pair)


def signature_from_der(der: bytes) -> bytes:
    """DER ``SEQUENCE { r INTEGER, s INTEGER }`` -> 64-byte ``r || s``."""
    try:
        r, s = decode_dss_signature(der)
    except ValueError as exc:
        raise CryptoError(f"malformed DER signature: {exc}") from exc
    if not (0 < r < 2**256 and 0 < s < 2**256):
        raise CryptoError("DER signature values out of range")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def compress(public: bytes, curve: Curve = SM2_CURVE) -> bytes:
    """The 33-byte compressed form (SEC 1: 02/03 || x) of a 64-byte key."""
    if len(public) != 64:
        raise CryptoError(f"SM2 public key must be 64 bytes, got {len(public)}")
    return bytes([2 + (public[-1] & 1)]) + public[:32]


def decompress(data: bytes, curve: Curve = SM2_CURVE) -> bytes | None:
    """The 64-byte key of a compressed point, or None when it is no point of
    the curve (p = 3 mod 4, so y = (x^3 + ax + b)^((p+1)/4))."""
    if len(data) != 33 or data[0] not in (2, 3):
        return None
    x, p = int.from_bytes(data[1:], "big"), curve.p
    if x >= p:
        return None
    rhs = (x * x * x + curve.a * x + curve.b) % p
    y = pow(rhs, (p + 1) // 4, p)
    if y * y % p != rhs:
        return None
    if y & 1 != data[0] & 1:
        y = p - y
    return data[1:] + y.to_bytes(32, "big")
