"""The ``gmssl`` backend: the pure-Python ``gmssl`` package, kept as an
independent reference (its own SM3 too, so it checks OpenSSL's).

The arithmetic is module-level so tests can drive other curves and a fixed k.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import Any

from ledger.crypto.errors import CryptoError
from ledger.crypto.sm2 import (
    DEFAULT_USER_ID,
    SM2_CURVE,
    Curve,
    check_private,
    on_curve,
    rs,
    za,
)
from ledger.crypto.sm4 import Sm4Blobs


def sm3(data: bytes) -> bytes:
    """gmssl's own SM3 (slow; the reference, not the fast path)."""
    from gmssl import sm3 as gm_sm3

    return bytes.fromhex(gm_sm3.sm3_hash(list(data)))


def _crypt(curve: Curve, d: int = 0, public: bytes = b"") -> Any:
    from gmssl.sm2 import CryptSM2

    crypt = CryptSM2(private_key=f"{d:064x}", public_key="",
                     ecc_table=curve.ecc_table(), mode=1)
    # Set after construction: the constructor does public_key.lstrip("04") when
    # the hex starts with "04", which mangles an x || y whose x begins with 0x04
    # (1 key in 256 failed to verify).
    crypt.public_key = public.hex()
    return crypt


@functools.lru_cache(maxsize=1024)
def public_key(private: bytes, curve: Curve = SM2_CURVE) -> bytes:
    """The public key ``x || y`` of ``private`` on ``curve``."""
    d = check_private(private, curve)
    return bytes.fromhex(_crypt(curve)._kg(d, curve.ecc_table()["g"]))


def sign(private: bytes, message: bytes, user_id: bytes = DEFAULT_USER_ID,
         curve: Curve = SM2_CURVE, k: int | None = None) -> bytes:
    """SM2 signature ``r || s``; ``k`` fixed only for test vectors."""
    public = public_key(private, curve)
    e = sm3(za(sm3, public, user_id, curve) + message)
    crypt = _crypt(curve, check_private(private, curve), public)
    while True:
        kk = secrets.randbelow(curve.n - 1) + 1 if k is None else k
        sig = crypt.sign(e, f"{kk:064x}")  # gmssl treats e's bytes as the integer e
        if sig is not None:
            return bytes.fromhex(sig)
        if k is not None:
            raise CryptoError("fixed k yields a degenerate SM2 signature")


def verify(public: bytes, message: bytes, signature: bytes,
           user_id: bytes = DEFAULT_USER_ID, curve: Curve = SM2_CURVE) -> bool:
    """Whether ``signature`` is ``public``'s SM2 signature of ``message``."""
    if rs(signature, curve) is None or not on_curve(public, curve):
        return False
    e = sm3(za(sm3, public, user_id, curve) + message)
    try:
        return bool(_crypt(curve, 0, public).verify(signature.hex(), e))
    except (TypeError, ValueError):  # gmssl hits the point at infinity this way
        return False


def _xor16(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(16, "big")


class GmsslBackend(Sm4Blobs):
    name = "gmssl"

    def __init__(self) -> None:
        from gmssl import sm2, sm3, sm4  # noqa: F401  (fail early if absent)

        self._sm4_cls = sm4.CryptSM4

    def sm3(self, data: bytes) -> bytes:
        return sm3(data)

    def sm2_generate(self) -> tuple[bytes, bytes]:
        private = (secrets.randbelow(SM2_CURVE.n - 2) + 1).to_bytes(32, "big")
        return private, public_key(private)

    # Curve and k keep their defaults: SM2_CURVE and a fresh random k.
    sm2_public_from_private = staticmethod(public_key)
    sm2_sign = staticmethod(sign)
    sm2_verify = staticmethod(verify)

    def _round_fn(self, key: bytes, encrypt: bool) -> Callable[[bytes], bytes]:
        c = self._sm4_cls()
        c.set_key(key, 0 if encrypt else 1)  # SM4_ENCRYPT / SM4_DECRYPT
        return lambda block: bytes(c.one_round(c.sk, list(block)))

    def sm4_encrypt_block(self, key: bytes, block: bytes) -> bytes:
        if len(key) != 16 or len(block) != 16:
            raise CryptoError("SM4 key and block must both be 16 bytes")
        return self._round_fn(key, True)(block)

    def _hmac(self, key: bytes, data: bytes) -> bytes:
        k = (self.sm3(key) if len(key) > 64 else key).ljust(64, b"\0")
        inner = self.sm3(bytes(b ^ 0x36 for b in k) + data)
        return self.sm3(bytes(b ^ 0x5C for b in k) + inner)

    def _cbc(self, key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
        # Own CBC over single blocks: gmssl's crypt_cbc pads/unpads by itself.
        rnd, prev, out = self._round_fn(key, encrypt), iv, bytearray()
        for i in range(0, len(data), 16):
            blk = data[i:i + 16]
            if encrypt:
                prev = rnd(_xor16(blk, prev))
                out += prev
            else:
                out += _xor16(rnd(blk), prev)
                prev = blk
        return bytes(out)
