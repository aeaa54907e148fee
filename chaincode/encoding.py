"""The bytes that are hashed and signed: SM3 and canonical JSON, one of each.

Every SM3 digest (Merkle trees, ids, block hashes, SM2's ``e``) and every byte
encoding of a value that is hashed or signed goes through this module, on chain
and off. It lives in ``chaincode`` because the chaincode image carries only that
package; the ledger imports it from here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

_SM3 = hashlib.new("sm3")  # OpenSSL's; copying a fresh state beats a lookup by name


def sm3(data: bytes) -> bytes:
    """The SM3 digest of ``data`` (GB/T 32905)."""
    h = _SM3.copy()
    h.update(data)
    return h.digest()


def sm3_hex(data: bytes) -> str:
    """The SM3 digest of ``data``, as lowercase hex."""
    h = _SM3.copy()
    h.update(data)
    return h.hexdigest()


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False)  # built once: hot path


def canonical_json(value: Any) -> bytes:
    """The one byte encoding that is hashed and signed everywhere: UTF-8 JSON with
    sorted keys and no whitespace."""
    return _CANONICAL.encode(value).encode("utf-8")
