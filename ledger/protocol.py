"""The Ledger protocol shared by the embedded ledger and the Fabric gateway client.

A ``Ledger`` is bound to one identity, as a Fabric Gateway connection is. Commands
are ``submit``-ted (ordered into blocks, validated, committed); queries are
``evaluate``-d (nothing written). Committed domain events are read in ledger order
from ``events``; auditors use ``history``, ``block`` and ``verify``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from chaincode.errors import ContractError


class Position(NamedTuple):
    """Where an event sits in the ledger: (block number, tx index, event index)."""

    block: int
    tx: int
    event: int


@dataclass(frozen=True)
class CommittedEvent:
    position: Position
    tx_id: str
    type: str
    aggregate_id: str
    version: int
    timestamp: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Receipt:
    tx_id: str
    block_number: int
    status: str  # VALID, or a Fabric validation code name
    result: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class CommittedTransaction:
    """A transaction as the ledger recorded it, found by its id: what it asked
    for (function and canonical JSON arguments) and how it ended (its block, its
    validation status and, when VALID, the response and events of its receipt).
    An idempotent retry is answered from this, so the answer survives the
    process that submitted the transaction."""

    tx_id: str
    block_number: int
    status: str
    function: str
    args: str  # canonical JSON, as submitted
    result: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def receipt(self) -> Receipt:
        return Receipt(self.tx_id, self.block_number, self.status, self.result,
                       self.events if self.status == "VALID" else [])


@dataclass(frozen=True)
class KeyVersion:
    """One version of a key, for auditors."""

    key: str
    block_number: int
    tx_index: int
    tx_id: str
    creator: str
    timestamp: str
    value: str | None
    is_delete: bool


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    blocks: int
    transactions: int
    events: int
    error: str | None = None
    block_number: int | None = None
    tx_id: str | None = None


class LedgerError(Exception):
    """A failure of the ledger itself (not a contract rejection)."""

    def __init__(self, message: str, tx_id: str | None = None) -> None:
        super().__init__(message)
        self.tx_id = tx_id


class EndorseError(LedgerError):
    """The proposal could not be endorsed (bad signature, unknown creator, ...)."""


class SubmitError(LedgerError):
    """The endorsed transaction could not be handed to the orderer."""


class CommitError(LedgerError):
    """The transaction was ordered but committed as invalid (e.g. MVCC conflict)."""

    def __init__(self, message: str, tx_id: str, status: str) -> None:
        super().__init__(message, tx_id)
        self.status = status


class Ledger(Protocol):
    def submit(self, function: str, args: dict[str, Any],
               transient: dict[str, bytes] | None = None, *,
               nonce: bytes | None = None) -> Receipt:
        """Endorse, order and commit one command. ``nonce`` (default: random)
        fixes the transaction id (``tx_id(nonce)``): a second transaction with
        the same id is refused by the ledger, so a retry cannot commit twice."""
        ...

    def tx_id(self, nonce: bytes) -> str:
        """The id a transaction of this identity with ``nonce`` gets."""
        ...

    def transaction(self, tx_id: str) -> CommittedTransaction | None:
        """The committed transaction with this id (valid or not), or None when
        the ledger holds none (yet)."""
        ...

    def evaluate(self, function: str, args: dict[str, Any]) -> dict[str, Any]: ...
    def events(self, after: Position | None = None,
               follow: bool = False) -> Iterator[CommittedEvent]: ...
    def history(self, key: str) -> list[KeyVersion]: ...
    def block(self, number: int) -> dict[str, Any]:
        """One block in a shape common to both ledgers: number, hash,
        previous_hash, data_hash, timestamp, tx_count, signature, transactions
        (tx_id, function, creator_msp, creator, timestamp, validation, signature,
        events: the domain event types), and ``raw``, the ledger's own view."""
        ...

    def height(self) -> int: ...
    def verify(self) -> VerifyReport: ...


class Connection(Protocol):
    """A process's way into one ledger: its wallet, and a ``Ledger`` per identity.

    The embedded node and a Fabric network directory both offer it, so the API,
    CLI, projections and benchmarks never reach past it.
    """

    kind: str  # "embedded" | "fabric"

    def client(self, org: str, user: str = "admin") -> Ledger:
        """The ``Ledger`` of one wallet identity (an organisation's user)."""
        ...

    def find_user(self, org: str, role: str, department: str | None) -> str | None:
        """The wallet user of ``org`` with this role (and department), if any."""
        ...

    def enrol(self, org: str, user: str, role: str, department: str | None) -> None:
        """Issue a new identity into the wallet (the organisation's CA)."""
        ...

    def verify(self, start: int = 0, end: int | None = None,
               progress: Callable[[int, int], None] | None = None,
               save_dir: Path | None = None) -> VerifyReport:
        """Re-check blocks ``start..end`` (default: the whole chain) offline;
        ``progress(block, height)`` per block; ``save_dir`` keeps what was
        checked (Fabric: the raw blocks, to re-check later)."""
        ...

    def verify_block(self, number: int) -> str | None:
        """Header-level check of one block; what failed, or None."""
        ...

    def close(self) -> None: ...


__all__ = ["CommitError", "CommittedEvent", "CommittedTransaction", "Connection",
           "ContractError", "EndorseError", "KeyVersion", "Ledger", "LedgerError",
           "Position", "Receipt", "SubmitError", "VerifyReport"]
