"""Chinese national cryptography (SM2 / SM3 / SM4) behind one small interface.

Two interchangeable backends implement :class:`Backend`:

* ``native``: Tongsuo (``tongsuopy``) for SM2, OpenSSL's ``hashlib`` SM3 and
  ``cryptography``'s SM4. Fast; the default whenever ``tongsuopy`` imports.
* ``gmssl``: the pure-Python ``gmssl`` package, kept as an independent reference.

Pick one with ``get_backend(name)`` or the ``CITYUNION_CRYPTO`` environment
variable. Keys are raw bytes: private = 32-byte big-endian ``d``, public = 64-byte
``x || y``, signature = 64-byte ``r || s``. Signatures follow GB/T 32918.2 with an
explicit user id (``e = SM3(Z_A || M)``). SM4 blobs are
``0x01 || IV(16) || SM4-CBC-PKCS#7(ct) || HMAC-SM3(version || IV || ct)``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

DEFAULT_USER_ID: bytes = b"1234567812345678"
ENV_VAR = "CITYUNION_CRYPTO"
_SM4_VERSION = b"\x01"
_TAG_LEN = 32


class CryptoError(ValueError):
    """Bad key, PEM, signature encoding or ciphertext."""


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


class Backend(Protocol):
    name: str

    def sm3(self, data: bytes) -> bytes: ...
    def sm2_generate(self) -> tuple[bytes, bytes]: ...
    def sm2_public_from_private(self, private: bytes) -> bytes: ...
    def sm2_sign(self, private: bytes, message: bytes,
                 user_id: bytes = DEFAULT_USER_ID) -> bytes: ...
    def sm2_verify(self, public: bytes, message: bytes, signature: bytes,
                   user_id: bytes = DEFAULT_USER_ID) -> bool: ...
    def sm4_encrypt_block(self, key: bytes, block: bytes) -> bytes: ...
    def sm4_encrypt(self, key: bytes, plaintext: bytes) -> bytes: ...
    def sm4_decrypt(self, key: bytes, blob: bytes) -> bytes: ...


# ---------------------------------------------------------------- helpers
def sm3(data: bytes) -> bytes:
    """SM3 digest via OpenSSL, whatever backend is selected (the hashing fast path)."""
    return hashlib.new("sm3", data).digest()


def sm3_hex(data: bytes) -> str:
    return hashlib.new("sm3", data).hexdigest()


def _za(hash_fn: Callable[[bytes], bytes], public: bytes, user_id: bytes,
        curve: Curve) -> bytes:
    bits = len(user_id) * 8
    if bits > 0xFFFF:  # ENTL is a 16-bit field
        raise CryptoError(f"SM2 user id too long ({len(user_id)} bytes, max 8191)")
    if len(public) != 64:
        raise CryptoError(f"SM2 public key must be 64 bytes, got {len(public)}")
    params = b"".join(v.to_bytes(32, "big")
                      for v in (curve.a, curve.b, curve.gx, curve.gy))
    return hash_fn(bits.to_bytes(2, "big") + user_id + params + public)


def sm2_za(public: bytes, user_id: bytes = DEFAULT_USER_ID,
           curve: Curve = SM2_CURVE) -> bytes:
    """Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA), GB/T 32918.2."""
    return _za(sm3, public, user_id, curve)


def _check_private(private: bytes, curve: Curve = SM2_CURVE) -> int:
    if len(private) != 32:
        raise CryptoError(f"SM2 private key must be 32 bytes, got {len(private)}")
    d = int.from_bytes(private, "big")
    if not 1 <= d <= curve.n - 2:  # SM2 needs d+1 invertible mod n
        raise CryptoError("SM2 private key out of range [1, n-2]")
    return d


def _on_curve(public: bytes, curve: Curve = SM2_CURVE) -> bool:
    if len(public) != 64:
        return False
    x, y = int.from_bytes(public[:32], "big"), int.from_bytes(public[32:], "big")
    p = curve.p
    return x < p and y < p and (y * y - x * x * x - curve.a * x - curve.b) % p == 0


def _rs(signature: bytes, curve: Curve = SM2_CURVE) -> tuple[int, int] | None:
    if len(signature) != 64:
        return None
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    return (r, s) if 0 < r < curve.n and 0 < s < curve.n else None


def _pad(data: bytes) -> bytes:
    n = 16 - len(data) % 16
    return data + bytes([n]) * n


def _xor16(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(16, "big")


def _unpad(data: bytes) -> bytes:
    n = data[-1] if data else 0
    if not 1 <= n <= 16 or data[-n:] != bytes([n]) * n:
        raise CryptoError("SM4 blob has invalid padding")
    return data[:-n]


# ------------------------------------------------------------- backends
class _Base:
    """SM4 blob scheme shared by both backends, built on their primitives."""

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


class _NativeBackend(_Base):
    name = "native"

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from tongsuopy.backends.tongsuo.backend import backend
        from tongsuopy.crypto.asymciphers import ec

        self._ec, self._lib, self._ffi = ec, backend._lib, backend._ffi
        self._cipher, self._sm4, self._modes = Cipher, algorithms.SM4, modes
        # Key parsing dominates small sign/verify calls, so cache per key bytes.
        self._private = functools.lru_cache(maxsize=4096)(self._load_private)
        self._public = functools.lru_cache(maxsize=8192)(self._load_public)
        self._za = functools.lru_cache(maxsize=8192)(sm2_za)

    def _load_private(self, private: bytes) -> tuple[Any, bytes]:
        key = self._ec.derive_private_key(_check_private(private), self._ec.SM2())
        pn = key.public_key().public_numbers()
        return key, pn.x.to_bytes(32, "big") + pn.y.to_bytes(32, "big")

    def _load_public(self, public: bytes) -> Any:
        if not _on_curve(public):
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

    def sm3(self, data: bytes) -> bytes:
        return hashlib.new("sm3", data).digest()

    def sm2_generate(self) -> tuple[bytes, bytes]:
        while True:
            key = self._ec.generate_private_key(self._ec.SM2())
            private = key.private_numbers().private_value.to_bytes(32, "big")
            if int.from_bytes(private, "big") <= SM2_CURVE.n - 2:
                return private, self._private(private)[1]

    def sm2_public_from_private(self, private: bytes) -> bytes:
        return self._private(private)[1]

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
        rs = _rs(signature)
        key = self._public(public) if rs else None
        if rs is None or key is None:
            return False
        e = sm3(self._za(public, user_id) + message)
        der = encode_dss_signature(*rs)
        lib = self._lib
        ctx = self._ctx(key)
        ok = (lib.EVP_PKEY_verify_init(ctx) == 1
              and lib.EVP_PKEY_verify(ctx, der, len(der), e, len(e)) == 1)
        if not ok:
            lib.ERR_clear_error()  # don't leave stale errors for later OpenSSL calls
        return ok

    def sm4_encrypt_block(self, key: bytes, block: bytes) -> bytes:
        if len(key) != 16 or len(block) != 16:
            raise CryptoError("SM4 key and block must both be 16 bytes")
        enc = self._cipher(self._sm4(key), self._modes.ECB()).encryptor()
        return enc.update(block) + enc.finalize()

    def _hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, "sm3").digest()

    def _cbc(self, key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
        c = self._cipher(self._sm4(key), self._modes.CBC(iv))
        op = c.encryptor() if encrypt else c.decryptor()
        return op.update(data) + op.finalize()


# gmssl reference arithmetic; module-level so tests can drive other curves / fixed k.
def _gm_sm3(data: bytes) -> bytes:
    from gmssl import sm3 as gm_sm3

    return bytes.fromhex(gm_sm3.sm3_hash(list(data)))


def _gm_crypt(curve: Curve, d: int = 0, public: bytes = b"") -> Any:
    from gmssl.sm2 import CryptSM2

    return CryptSM2(private_key=f"{d:064x}", public_key=public.hex(),
                    ecc_table=curve.ecc_table(), mode=1)


@functools.lru_cache(maxsize=1024)
def _gm_public(private: bytes, curve: Curve = SM2_CURVE) -> bytes:
    d = _check_private(private, curve)
    return bytes.fromhex(_gm_crypt(curve)._kg(d, curve.ecc_table()["g"]))


def _gm_sign(private: bytes, message: bytes, user_id: bytes = DEFAULT_USER_ID,
             curve: Curve = SM2_CURVE, k: int | None = None) -> bytes:
    public = _gm_public(private, curve)
    e = _gm_sm3(_za(_gm_sm3, public, user_id, curve) + message)
    crypt = _gm_crypt(curve, _check_private(private, curve), public)
    while True:
        kk = secrets.randbelow(curve.n - 1) + 1 if k is None else k
        sig = crypt.sign(e, f"{kk:064x}")  # gmssl treats e's bytes as the integer e
        if sig is not None:
            return bytes.fromhex(sig)
        if k is not None:
            raise CryptoError("fixed k yields a degenerate SM2 signature")


def _gm_verify(public: bytes, message: bytes, signature: bytes,
               user_id: bytes = DEFAULT_USER_ID, curve: Curve = SM2_CURVE) -> bool:
    if _rs(signature, curve) is None or not _on_curve(public, curve):
        return False
    e = _gm_sm3(_za(_gm_sm3, public, user_id, curve) + message)
    try:
        return bool(_gm_crypt(curve, 0, public).verify(signature.hex(), e))
    except (TypeError, ValueError):  # gmssl hits the point at infinity this way
        return False


class _GmsslBackend(_Base):
    name = "gmssl"

    def __init__(self) -> None:
        from gmssl import sm2, sm3, sm4  # noqa: F401  (fail early if absent)

        self._sm4_cls = sm4.CryptSM4

    def sm3(self, data: bytes) -> bytes:
        return _gm_sm3(data)

    def sm2_generate(self) -> tuple[bytes, bytes]:
        private = (secrets.randbelow(SM2_CURVE.n - 2) + 1).to_bytes(32, "big")
        return private, _gm_public(private)

    # Curve and k keep their defaults: SM2_CURVE and a fresh random k.
    sm2_public_from_private = staticmethod(_gm_public)
    sm2_sign = staticmethod(_gm_sign)
    sm2_verify = staticmethod(_gm_verify)

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


_FACTORIES: dict[str, Callable[[], Backend]] = {
    "native": _NativeBackend, "gmssl": _GmsslBackend}
_instances: dict[str, Backend] = {}
_lock = threading.Lock()


def get_backend(name: str | None = None) -> Backend:
    """Backend by name; None -> $CITYUNION_CRYPTO, else native if importable."""
    if name is None:
        name = os.environ.get(ENV_VAR, "").strip() or None
    if name is None:
        name = "native" if "native" in _available() else "gmssl"
    key = name.strip().lower()
    if key not in _FACTORIES:
        raise CryptoError(f"unknown crypto backend {name!r}; accepted values: "
                          + ", ".join(repr(n) for n in _FACTORIES))
    with _lock:
        if key not in _instances:
            try:
                _instances[key] = _FACTORIES[key]()
            except ImportError as exc:
                raise CryptoError(f"crypto backend {key!r} unavailable: {exc}") from exc
        return _instances[key]


@functools.cache
def _available() -> tuple[str, ...]:
    found = []
    for n in _FACTORIES:
        try:
            get_backend(n)
            found.append(n)
        except CryptoError:
            pass
    return tuple(found)


def available_backends() -> list[str]:
    """Names of the backends whose dependencies import."""
    return list(_available())


# ------------------------------------------------------------- DER / PEM
_OID_EC = bytes.fromhex("06072A8648CE3D0201")  # id-ecPublicKey 1.2.840.10045.2.1
_OID_SM2 = bytes.fromhex("06082A811CCF5501822D")  # sm2p256v1 1.2.156.10197.1.301


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(ln)]) + ln + body


def _der_items(data: bytes) -> list[tuple[int, bytes]]:
    """Split concatenated DER TLVs (one nesting level)."""
    out, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise CryptoError("truncated DER")
        tag, ln = data[pos], data[pos + 1]
        pos += 2
        if ln & 0x80:
            nb = ln & 0x7F
            if not 1 <= nb <= 4 or pos + nb > len(data):
                raise CryptoError("bad DER length")
            ln, pos = int.from_bytes(data[pos:pos + nb], "big"), pos + nb
        if pos + ln > len(data):
            raise CryptoError("truncated DER")
        out.append((tag, data[pos:pos + ln]))
        pos += ln
    return out


def _der_seq(data: bytes) -> list[tuple[int, bytes]]:
    items = _der_items(data)
    if len(items) != 1 or items[0][0] != 0x30:
        raise CryptoError("expected a single DER SEQUENCE")
    return _der_items(items[0][1])


def _check_alg(alg: bytes) -> None:
    if alg not in (_OID_EC + _OID_SM2, _OID_SM2):  # some tools use the SM2 OID
        raise CryptoError("not an SM2 key (expected curve OID 1.2.156.10197.1.301)")


def _pem(label: str, der: bytes) -> bytes:
    b64 = base64.encodebytes(der).decode().replace("\n", "")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----",
                      ""]).encode()


def _unpem(pem: bytes) -> tuple[str, bytes]:
    m = re.search(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", pem, re.DOTALL)
    if m is None:
        raise CryptoError("no PEM block found")
    try:
        return m[1].decode(), base64.b64decode(b"".join(m[2].split()), validate=True)
    except binascii.Error as exc:
        raise CryptoError(f"bad base64 in PEM: {exc}") from exc


def _point(bits: bytes) -> bytes:
    """BIT STRING body -> 64-byte public key (uncompressed SEC1 only)."""
    if len(bits) != 66 or bits[:2] != b"\x00\x04" or not _on_curve(bits[2:]):
        raise CryptoError("SM2 public key must be an uncompressed point on the curve")
    return bits[2:]


def private_key_to_pem(private: bytes) -> bytes:
    """PKCS#8 ``PRIVATE KEY`` (id-ecPublicKey + SM2 curve), public key included."""
    public = get_backend().sm2_public_from_private(private)
    ec_key = _der(0x30, _der(2, b"\x01") + _der(4, private)
                  + _der(0xA1, _der(3, b"\x00\x04" + public)))
    alg = _der(0x30, _OID_EC + _OID_SM2)
    return _pem("PRIVATE KEY", _der(0x30, _der(2, b"\x00") + alg + _der(4, ec_key)))


def private_key_from_pem(pem: bytes) -> bytes:
    """Accepts PKCS#8 ``PRIVATE KEY`` and SEC1 ``EC``/``SM2 PRIVATE KEY``."""
    label, der = _unpem(pem)
    if label == "PRIVATE KEY":
        items = _der_seq(der)
        if len(items) < 3 or items[1][0] != 0x30 or items[2][0] != 4:
            raise CryptoError("malformed PKCS#8 private key")
        _check_alg(items[1][1])
        der = items[2][1]
    elif label not in ("EC PRIVATE KEY", "SM2 PRIVATE KEY"):  # OpenSSL 3 writes SM2
        raise CryptoError(f"unsupported PEM type {label!r} (no encrypted keys)")
    ec_items = _der_seq(der)
    if len(ec_items) < 2 or ec_items[0] != (2, b"\x01") or ec_items[1][0] != 4:
        raise CryptoError("malformed EC private key")
    for tag, val in ec_items[2:]:
        if tag == 0xA0 and val != _OID_SM2:
            raise CryptoError("EC private key is not on the SM2 curve")
    private = ec_items[1][1].rjust(32, b"\0")
    _check_private(private)
    return private


def public_key_to_pem(public: bytes) -> bytes:
    """SubjectPublicKeyInfo ``PUBLIC KEY``."""
    if not _on_curve(public):
        raise CryptoError("SM2 public key must be 64 bytes x||y on the curve")
    alg = _der(0x30, _OID_EC + _OID_SM2)
    return _pem("PUBLIC KEY", _der(0x30, alg + _der(3, b"\x00\x04" + public)))


def public_key_from_pem(pem: bytes) -> bytes:
    label, der = _unpem(pem)
    if label != "PUBLIC KEY":
        raise CryptoError(f"expected a PUBLIC KEY PEM, got {label!r}")
    items = _der_seq(der)
    if len(items) != 2 or items[0][0] != 0x30 or items[1][0] != 3:
        raise CryptoError("malformed SubjectPublicKeyInfo")
    _check_alg(items[0][1])
    return _point(items[1][1])


def signature_to_der(sig: bytes) -> bytes:
    rs = _rs(sig)
    if rs is None:
        raise CryptoError("SM2 signature must be 64 bytes r||s with 0 < r, s < n")
    return encode_dss_signature(*rs)


def signature_from_der(der: bytes) -> bytes:
    try:
        r, s = decode_dss_signature(der)
    except ValueError as exc:
        raise CryptoError(f"malformed DER signature: {exc}") from exc
    if not (0 < r < 2**256 and 0 < s < 2**256):
        raise CryptoError("DER signature values out of range")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")
