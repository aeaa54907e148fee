"""Chinese national cryptography (SM2 / SM3 / SM4) behind one small interface.

Three interchangeable backends implement :class:`Backend`:

* ``native`` (:mod:`ledger.crypto.native`): Tongsuo (``tongsuopy``) for SM2,
  OpenSSL SM3 and ``cryptography``'s SM4. Fast; the default whenever ``tongsuopy``
  imports.
* ``gmsm`` (:mod:`ledger.crypto.gmsm`): SM2 from the Go library
  github.com/emmansun/gmsm, SM3 and SM4 as ``native``. The fastest SM2; available
  once ``cityunion crypto build`` has built it, never picked by default (its Go
  runtime does not survive fork()): ask for it, or use :func:`fastest_verifier`.
* ``gmssl`` (:mod:`ledger.crypto.gmssl`): the pure-Python ``gmssl`` package, kept
  as an independent reference.

Pick one with ``get_backend(name)`` or the ``CITYUNION_CRYPTO`` environment
variable. Keys, Z_A and signatures are in :mod:`ledger.crypto.sm2`, the SM4 blob
scheme in :mod:`ledger.crypto.sm4`, PEM in :mod:`ledger.crypto.pem`; this module
gathers what callers use (``crypto.get_backend()``, ``crypto.sm3_hex``, ...).
SM3 itself is :mod:`chaincode.encoding`'s, whatever backend is selected.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Protocol

from chaincode.encoding import sm3, sm3_hex
from ledger.crypto import pem
from ledger.crypto.errors import CryptoError
from ledger.crypto.gmsm import GmsmBackend
from ledger.crypto.gmssl import GmsslBackend
from ledger.crypto.native import NativeBackend
from ledger.crypto.pem import private_key_from_pem, public_key_from_pem
from ledger.crypto.pem import public_key_to_pem as public_key_to_pem
from ledger.crypto.sm2 import (
    DEFAULT_USER_ID,
    SM2_CURVE,
    Curve,
    signature_from_der,
    signature_to_der,
    sm2_za,
)

__all__ = [
    "DEFAULT_USER_ID", "ENV_VAR", "SM2_CURVE", "Backend", "CryptoError", "Curve",
    "available_backends", "fastest_verifier", "get_backend", "private_key_from_pem",
    "private_key_to_pem", "public_key_from_pem", "public_key_to_pem",
    "signature_from_der", "signature_to_der", "sm2_za", "sm3", "sm3_hex",
]

ENV_VAR = "CITYUNION_CRYPTO"


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


_FACTORIES: dict[str, Callable[[], Backend]] = {
    "native": NativeBackend, "gmsm": GmsmBackend, "gmssl": GmsslBackend}
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


def fastest_verifier() -> Backend:
    """The backend to verify many SM2 signatures with (city QR codes at a terminal):
    ``gmsm`` when its library is built, else :func:`get_backend`'s choice.

    Keys, user ids and signatures mean the same to every backend, so this changes
    speed only. gmsm starts a Go runtime on its first call, after which this
    process must not fork() (see :mod:`ledger.crypto.gmsm`)."""
    return get_backend("gmsm" if "gmsm" in _available() else None)


def private_key_to_pem(private: bytes) -> bytes:
    """PKCS#8 ``PRIVATE KEY`` (id-ecPublicKey + SM2 curve), public key included."""
    public = get_backend().sm2_public_from_private(private)
    return pem.private_key_to_pem(private, public)
