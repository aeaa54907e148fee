"""Commands that commit at most once per idempotency key, on any ``Ledger``.

A client names a command with a key; retrying with the same key and the same
command gets the receipt of the one transaction it committed, even when the
process that submitted it died between the commit and the answer. No table is
kept for this: the key fixes the transaction's nonce, so its id
(``tx_id = H(nonce, creator)``, as Fabric computes it) is the same on every
retry of the same identity, and the ledger itself

- refuses a second transaction with that id (Fabric: the endorsing peer at
  endorsement, or the validator as ``DUPLICATE_TXID`` when both were in flight;
  embedded: the committer as ``DUPLICATE_TXID``), and
- answers ``transaction(tx_id)`` with the first one: its function and arguments
  (to tell a retry from another command under the same key) and its receipt.

A key whose transaction committed invalid (an MVCC conflict, answered 409
"submit again") must not be spent by it: the nonce also counts attempts, and a
retry walks attempt 0, 1, ... to the first one the ledger does not hold.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from chaincode.encoding import canonical_json
from chaincode.errors import ContractError
from ledger.protocol import (
    CommitError,
    CommittedTransaction,
    Ledger,
    LedgerError,
    Receipt,
)

VALID = "VALID"
DUPLICATE_TXID = "DUPLICATE_TXID"
NONCE_BYTES = 24
# Transactions of one key that may commit invalid before the key is spent.
MAX_ATTEMPTS = 8
_DOMAIN = b"cityunion idempotency-key v1\0"


class KeyReused(Exception):
    """The key already names another command (other function or arguments)."""

    def __init__(self, tx_id: str, function: str) -> None:
        super().__init__(f"this idempotency key was used for another request "
                         f"({function}, transaction {tx_id})")
        self.tx_id = tx_id
        self.function = function


class StartedKeys:
    """Idempotency keys of work a server starts off the ledger (a video
    watch, a call campaign): (who, key) -> the request body and the id of
    what it started. The same key with another body is ``KeyReused``."""

    def __init__(self, kind: str, other: str) -> None:
        self.kind, self.other = kind, other  # "watch", "a watch of ..."
        self._keys: dict[tuple[str, str], tuple[bytes, str]] = {}
        self._lock = threading.Lock()

    def find(self, who: str, key: str, body: bytes) -> str | None:
        """The id ``who`` started with ``key``, or None if none is known."""
        with self._lock:
            known = self._keys.get((who, key))
        if known is None:
            return None
        if known[0] != body:
            raise KeyReused(f"{self.kind} {known[1]}", self.other)
        return known[1]

    def remember(self, who: str, key: str, body: bytes, started: str) -> None:
        with self._lock:
            self._keys[(who, key)] = (body, started)


class AttemptsExhausted(Exception):
    """Every attempt the key allows committed invalid."""

    def __init__(self, tx_id: str, status: str) -> None:
        super().__init__(f"the {MAX_ATTEMPTS} attempts this idempotency key "
                         f"allows all committed invalid (the last, {tx_id}, as "
                         f"{status}); submit again with a new key")
        self.tx_id = tx_id
        self.status = status


@dataclass(frozen=True)
class Outcome:
    """What a keyed command got: its receipt, new or replayed."""

    receipt: Receipt
    replayed: bool  # the receipt of an earlier request with this key


def nonce_for(key: str, attempt: int) -> bytes:
    """The nonce of the key's ``attempt``-th transaction (the creator is not in
    it: the transaction id adds it, so keys are scoped to the identity)."""
    return hashlib.sha256(_DOMAIN + key.encode() + b"\0"
                          + attempt.to_bytes(2, "big")).digest()[:NONCE_BYTES]


class Idempotent:
    """Submits keyed commands; one at a time per (identity, key) in this process,
    so that a retry arriving while its original is in flight waits for it and
    is answered with its receipt."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._busy: dict[tuple[str, str], tuple[threading.Lock, int]] = {}

    @contextmanager
    def _one_at_a_time(self, scope: str, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._busy.get((scope, key), (threading.Lock(), 0))
            self._busy[(scope, key)] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._busy[(scope, key)]
                if users == 1:
                    del self._busy[(scope, key)]
                else:
                    self._busy[(scope, key)] = (lock, users - 1)

    def submit(self, ledger: Ledger, scope: str, key: str, function: str,
               args: dict[str, Any]) -> Outcome:
        """Submit ``function(args)`` under ``key`` as ``ledger``'s identity
        (``scope`` names that identity), or answer with the receipt of the
        transaction the key already committed. Raises KeyReused when the key
        names another command, AttemptsExhausted when all its attempts
        committed invalid, and otherwise what ``ledger.submit`` raises."""
        wanted = canonical_json(args).decode()
        with self._one_at_a_time(scope, key):
            last: CommittedTransaction | None = None
            for attempt in range(MAX_ATTEMPTS):
                nonce = nonce_for(key, attempt)
                tx_id = ledger.tx_id(nonce)
                # The first attempt is submitted straight away (a new key costs
                # nothing more); a later one only after its predecessor was
                # found invalid, so it is looked up first.
                found = ledger.transaction(tx_id) if attempt else None
                if found is None:
                    try:
                        return Outcome(ledger.submit(function, args, nonce=nonce),
                                       False)
                    except CommitError as e:
                        if e.status != DUPLICATE_TXID:
                            raise  # this attempt itself committed invalid: 409
                        found = ledger.transaction(tx_id)
                        if found is None:
                            raise
                    except (ContractError, LedgerError):
                        # refused as a duplicate, or re-run against the state
                        # the original changed: the ledger knows which
                        found = ledger.transaction(tx_id)
                        if found is None:
                            raise
                if not _same(found, function, wanted):
                    raise KeyReused(found.tx_id, found.function)
                if found.status == VALID:
                    return Outcome(found.receipt(), True)
                last = found
            assert last is not None
            raise AttemptsExhausted(last.tx_id, last.status)


def _same(found: CommittedTransaction, function: str, args: str) -> bool:
    return found.function == function and found.args == args


__all__ = ["MAX_ATTEMPTS", "AttemptsExhausted", "Idempotent", "KeyReused",
           "Outcome", "nonce_for"]
