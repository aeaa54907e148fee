"""The ``Stub`` protocol: what the contract may ask of the ledger during a transaction.

It mirrors Fabric's chaincode shim (``ChaincodeStubInterface``) so that the contract
runs unchanged on the embedded ledger and on Fabric peers. As in Fabric, reads see the
committed world state, never the transaction's own pending writes, and every read is
recorded for MVCC validation at commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Creator:
    """The submitter: MSP id (one per organisation) and its certificate bytes."""

    msp_id: str
    id_bytes: bytes


@dataclass(frozen=True)
class KeyModification:
    """One version of a key, as ``GetHistoryForKey`` returns it."""

    tx_id: str
    value: bytes
    timestamp: datetime
    is_delete: bool


class Stub(Protocol):
    def get_args(self) -> list[bytes]: ...
    def get_state(self, key: str) -> bytes | None: ...
    def get_multiple_states(self, keys: list[str]) -> list[bytes | None]:
        """Several keys in one round trip (Fabric 3.1's GetMultipleStates)."""
        ...
    def put_state(self, key: str, value: bytes) -> None: ...
    def del_state(self, key: str) -> None: ...
    def get_state_by_range(
        self, start: str, end: str
    ) -> Iterator[tuple[str, bytes]]: ...
    def get_history_for_key(self, key: str) -> Iterator[KeyModification]: ...
    def get_creator(self) -> Creator: ...
    def get_tx_id(self) -> str: ...
    def get_tx_timestamp(self) -> datetime: ...
    def get_transient(self) -> dict[str, bytes]: ...
    def set_event(self, name: str, payload: bytes) -> None: ...


Invoke = Callable[[Stub], bytes]
"""The chaincode as a ledger runs it: a transaction's stub in, the response out."""


def prefix_range(prefix: str) -> tuple[str, str]:
    """Start and end keys of a range scan covering every key under ``prefix``.

    Keys are ASCII with ``~`` separators, so ``\\x7f`` sorts after all of them.
    """
    return prefix, prefix + "\x7f"
