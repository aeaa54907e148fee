"""The ``gmsm`` backend: SM2 from github.com/emmansun/gmsm (Go with amd64
assembly; several times Tongsuo's verify rate), SM3 and SM4 from OpenSSL as in
``native``. For verifying many signatures, e.g. city QR codes at terminals; see
:func:`ledger.crypto.fastest_verifier`.

SM2 goes through ``libcusm.so``, our Go wrapper (``ledger/crypto/cusm``) that
``cityunion crypto build`` builds into a cache (:mod:`ledger.crypto.gmsm_build`).
The backend is available when the library of the current sources is built;
constructing it only checks that the file exists.

The library is loaded on first SM2 use, not on import or construction, because
loading it starts the Go runtime, threads included, and a process that forks
after that has a child whose Go runtime is gone. So: fork before the first gmsm
call (or start workers with multiprocessing's "spawn" or "forkserver"). A child
forked after the load gets a CryptoError from gmsm rather than a hang.

Calls release the GIL (ctypes), so threads verify in parallel.
"""

from __future__ import annotations

import ctypes
import functools
import os
import secrets
import threading

from ledger.crypto import gmsm_build
from ledger.crypto.errors import CryptoError
from ledger.crypto.sm2 import DEFAULT_USER_ID, SM2_CURVE, check_private, check_user_id
from ledger.crypto.sm4 import OpenSslSm4Blobs

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_forked = False  # a child forked after the load: its Go runtime is unusable


def _after_fork_in_child() -> None:
    global _forked
    _forked = _lib is not None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _load(path: str) -> ctypes.CDLL:
    global _lib
    with _lock:
        if _lib is None:
            lib = ctypes.CDLL(path)
            uchar_p, size = ctypes.c_char_p, ctypes.c_size_t
            lib.cusm_public.argtypes = [uchar_p, uchar_p]
            lib.cusm_sign.argtypes = [uchar_p, uchar_p, size, uchar_p, size, uchar_p]
            lib.cusm_verify.argtypes = [uchar_p, uchar_p, size, uchar_p, size, uchar_p]
            for fn in (lib.cusm_public, lib.cusm_sign, lib.cusm_verify):
                fn.restype = ctypes.c_int
            _lib = lib
        return _lib


class GmsmBackend(OpenSslSm4Blobs):
    name = "gmsm"

    def __init__(self) -> None:
        path = gmsm_build.library_path()
        if not path.exists():
            raise ImportError("the gmsm library is not built (no "
                              f"{path}); run `cityunion crypto build`")
        self._path = str(path)
        self._public = functools.lru_cache(maxsize=4096)(self._derive_public)

    def _sm2(self) -> ctypes.CDLL:
        if _forked:
            raise CryptoError("gmsm was loaded before this process forked; its Go "
                              "runtime does not survive fork(): use another backend "
                              "in the child, or start it with 'spawn'")
        return _lib if _lib is not None else _load(self._path)

    def _derive_public(self, private: bytes) -> bytes:
        check_private(private)
        out = ctypes.create_string_buffer(64)
        if self._sm2().cusm_public(private, out) != 1:
            raise CryptoError("gmsm could not derive the SM2 public key")
        return out.raw

    def sm2_generate(self) -> tuple[bytes, bytes]:
        private = (secrets.randbelow(SM2_CURVE.n - 2) + 1).to_bytes(32, "big")
        return private, self._public(private)

    def sm2_public_from_private(self, private: bytes) -> bytes:
        return self._public(private)  # type: ignore[no-any-return]

    def sm2_sign(self, private: bytes, message: bytes,
                 user_id: bytes = DEFAULT_USER_ID) -> bytes:
        check_private(private)
        check_user_id(user_id)
        out = ctypes.create_string_buffer(64)
        if self._sm2().cusm_sign(private, user_id, len(user_id), message,
                                 len(message), out) != 1:
            raise CryptoError("gmsm SM2 signing failed")
        return out.raw

    def sm2_verify(self, public: bytes, message: bytes, signature: bytes,
                   user_id: bytes = DEFAULT_USER_ID) -> bool:
        # The library reads exactly 64 bytes of each and rejects the rest itself:
        # points off the curve, r or s zero or not below n, r + s = n.
        if len(public) != 64 or len(signature) != 64:
            return False
        check_user_id(user_id)  # a caller's error, raised as by the other backends
        return bool(self._sm2().cusm_verify(public, user_id, len(user_id), message,
                                            len(message), signature) == 1)
