"""SM3 Merkle tree over cross-city card transaction records.

Leaves and inner nodes are domain-separated (0x00 / 0x01, as RFC 6962 does) and an
odd node is promoted unchanged, so no two different record lists share a root.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from chaincode.encoding import canonical_json, sm3


def merkle_root(records: Iterable[Mapping[str, Any]]) -> str:
    """Hex SM3 Merkle root of the records' canonical JSON, in the given order."""
    return merkle_root_of(canonical_json(r) for r in records)


def merkle_root_of(leaves: Iterable[bytes]) -> str:
    """Hex SM3 Merkle root over leaf byte strings, in the given order."""
    level = [sm3(b"\x00" + leaf) for leaf in leaves]
    if not level:
        return sm3(b"").hex()
    while len(level) > 1:
        nxt = [sm3(b"\x01" + level[i] + level[i + 1])
               for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()
