"""The SM4 blob scheme every backend shares, built on its primitives, and the
OpenSSL primitives (``cryptography``'s SM4, ``hashlib``'s SM3) two backends use.

A blob is ``0x01 || IV(16) || SM4-CBC-PKCS#7(ct) || HMAC-SM3(version || IV ||
ct)``, with separate encryption and MAC keys derived from the one SM4 key.
"""

from __future__ import annotations

import hmac
import secrets

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from chaincode.encoding import sm3
from ledger.crypto.errors import CryptoError

_SM4_VERSION = b"\x01"
_TAG_LEN = 32


def _pad(data: bytes) -> bytes:
    n = 16 - len(data) % 16
    return data + bytes([n]) * n


def _unpad(data: bytes) -> bytes:
    n = data[-1] if data else 0
    if not 1 <= n <= 16 or data[-n:] != bytes([n]) * n:
        raise CryptoError("SM4 blob has invalid padding")
    return data[:-n]


class Sm4Blobs:
    """``sm4_encrypt`` / ``sm4_decrypt`` over a backend's SM3, HMAC and CBC."""

    name = ""

    def sm3(self, data: bytes) -> bytes:
        raise NotImplementedError

    def _hmac(self, key: bytes, data: bytes) -> bytes:
        raise NotImplementedError

    def _cbc(self, key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
        raise NotImplementedError

    def _keys(self, key: bytes) -> tuple[bytes, bytes]:
        if len(key) != 16:
            raise CryptoError(f"SM4 key must be 16 bytes, got {len(key)}")
        # Separate keys for encryption and MAC so neither leaks into the other.
        return self.sm3(key + b"enc")[:16], self.sm3(key + b"mac")

    def sm4_encrypt(self, key: bytes, plaintext: bytes) -> bytes:
        enc, mac = self._keys(key)
        iv = secrets.token_bytes(16)
        head = _SM4_VERSION + iv + self._cbc(enc, iv, _pad(plaintext), True)
        return head + self._hmac(mac, head)

    def sm4_decrypt(self, key: bytes, blob: bytes) -> bytes:
        enc, mac = self._keys(key)
        body = len(blob) - 1 - 16 - _TAG_LEN
        if body < 16 or body % 16:
            raise CryptoError(f"SM4 blob truncated or malformed ({len(blob)} bytes)")
        if blob[:1] != _SM4_VERSION:
            raise CryptoError(f"unsupported SM4 blob version {blob[0]}")
        head, tag = blob[:-_TAG_LEN], blob[-_TAG_LEN:]
        # Encrypt-then-MAC: authenticate before touching the ciphertext.
        if not hmac.compare_digest(self._hmac(mac, head), tag):
            raise CryptoError("SM4 blob authentication failed (wrong key or tampered)")
        return _unpad(self._cbc(enc, blob[1:17], head[17:], False))


class OpenSslSm4Blobs(Sm4Blobs):
    """SM3, HMAC-SM3 and SM4 from OpenSSL (``chaincode.encoding`` and
    ``cryptography``): the symmetric half of the native and gmsm backends."""

    def sm3(self, data: bytes) -> bytes:
        return sm3(data)

    def sm4_encrypt_block(self, key: bytes, block: bytes) -> bytes:
        if len(key) != 16 or len(block) != 16:
            raise CryptoError("SM4 key and block must both be 16 bytes")
        enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
        return enc.update(block) + enc.finalize()

    def _hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, "sm3").digest()

    def _cbc(self, key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
        c = Cipher(algorithms.SM4(key), modes.CBC(iv))
        op = c.encryptor() if encrypt else c.decryptor()
        return op.update(data) + op.finalize()
