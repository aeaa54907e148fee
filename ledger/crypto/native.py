"""The ``native`` backend: Tongsuo (``tongsuopy``) SM2, OpenSSL SM3 and
``cryptography``'s SM4 (:class:`~ledger.crypto.sm4.OpenSslSm4Blobs`). The default
whenever ``tongsuopy`` imports."""

from __future__ import annotations

import functools
from typing import Any

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from chaincode.encoding import sm3
from ledger.crypto.errors import CryptoError
from ledger.crypto.sm2 import (
    DEFAULT_USER_ID,
    SM2_CURVE,
    check_private,
    on_curve,
    rs,
    signature_from_der,
    sm2_za,
)
from ledger.crypto.sm4 import OpenSslSm4Blobs


class NativeBackend(OpenSslSm4Blobs):
    name = "native"

    def __init__(self) -> None:
        from tongsuopy.backends.tongsuo.backend import backend
        from tongsuopy.crypto.asymciphers import ec

        self._ec, self._lib, self._ffi = ec, backend._lib, backend._ffi
        # Key parsing dominates small sign/verify calls, so cache per key bytes.
        self._private = functools.lru_cache(maxsize=4096)(self._load_private)
        self._public = functools.lru_cache(maxsize=8192)(self._load_public)
        self._za = functools.lru_cache(maxsize=8192)(sm2_za)

    def _load_private(self, private: bytes) -> tuple[Any, bytes]:
        key = self._ec.derive_private_key(check_private(private), self._ec.SM2())
        pn = key.public_key().public_numbers()
        return key, pn.x.to_bytes(32, "big") + pn.y.to_bytes(32, "big")

    def _load_public(self, public: bytes) -> Any:
        if not on_curve(public):
            return None
        x, y = int.from_bytes(public[:32], "big"), int.from_bytes(public[32:], "big")
        try:
            nums = self._ec.EllipticCurvePublicNumbers(x, y, self._ec.SM2())
            return nums.public_key()
        except ValueError:
            return None

    def _ctx(self, key: Any) -> Any:
        lib, ffi = self._lib, self._ffi
        ctx = lib.EVP_PKEY_CTX_new(key._evp_pkey, ffi.NULL)
        return ffi.gc(ctx, lib.EVP_PKEY_CTX_free)

    def sm2_generate(self) -> tuple[bytes, bytes]:
        while True:
            key = self._ec.generate_private_key(self._ec.SM2())
            private = key.private_numbers().private_value.to_bytes(32, "big")
            if int.from_bytes(private, "big") <= SM2_CURVE.n - 2:
                return private, self._private(private)[1]

    def sm2_public_from_private(self, private: bytes) -> bytes:
        return self._private(private)[1]  # type: ignore[no-any-return]

    def sm2_sign(self, private: bytes, message: bytes,
                 user_id: bytes = DEFAULT_USER_ID) -> bytes:
        key, public = self._private(private)
        # EVP_DigestSign only knows the default id; sign e = SM3(Z_A||M) directly.
        e = sm3(self._za(public, user_id) + message)
        lib, ffi = self._lib, self._ffi
        ctx = self._ctx(key)
        siglen = ffi.new("size_t *", 80)  # a DER SM2 signature is at most 72 bytes
        buf = ffi.new("unsigned char[]", 80)
        if lib.EVP_PKEY_sign_init(ctx) != 1 or lib.EVP_PKEY_sign(
                ctx, buf, siglen, e, len(e)) != 1:
            lib.ERR_clear_error()
            raise CryptoError("Tongsuo SM2 signing failed")
        return signature_from_der(bytes(ffi.buffer(buf, siglen[0])))

    def sm2_verify(self, public: bytes, message: bytes, signature: bytes,
                   user_id: bytes = DEFAULT_USER_ID) -> bool:
        pair = rs(signature)
        key = self._public(public) if pair else None
        if pair is None or key is None:
            return False
        e = sm3(self._za(public, user_id) + message)
        der = encode_dss_signature(*pair)
        lib = self._lib
        ctx = self._ctx(key)
        ok = (lib.EVP_PKEY_verify_init(ctx) == 1
              and lib.EVP_PKEY_verify(ctx, der, len(der), e, len(e)) == 1)
        if not ok:
            lib.ERR_clear_error()  # don't leave stale errors for later OpenSSL calls
        return ok  # type: ignore[no-any-return]
