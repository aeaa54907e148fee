"""The API's way into the ledger: this node's wallet, one identity per token.

The API server is the city's node and gateway: it holds the wallet, and a
command is submitted with the wallet identity matching the token's (city, role,
department), enrolled when the token was issued (``cityunion token issue``). So
authority is checked twice: here (the contract's declared roles, 403 and nothing
submitted) and again by the chaincode from the identity's certificate.

A command with an idempotency key commits at most once per key and identity
(``ledger.idempotency``): its retries are answered from the ledger.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from api.problems import Problem
from api.settings import Settings
from api.tokens import Principal
from chaincode.contract import COMMANDS
from chaincode.identity import Role
from ledger.connect import connect
from ledger.idempotency import Idempotent, Outcome
from ledger.protocol import Connection, Ledger, LedgerError, VerifyReport
from network.consortium import load_consortium

log = logging.getLogger(__name__)


class LedgerUnavailable(LedgerError):
    """The chosen ledger cannot be used in this build."""


def allowed_roles(function: str) -> frozenset[Role]:
    """The roles the contract lets call a command."""
    return COMMANDS[function][1]


class Gateway:
    """Submits commands as the caller's identity; reads for auditors."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._ledgers: dict[tuple[str, Role, str | None], Ledger] = {}
        self._lock = threading.Lock()
        self._idempotent = Idempotent()
        self.reader = connection.client(load_consortium().center.name, "auditor")

    @classmethod
    def open(cls, settings: Settings) -> Gateway:
        return cls(connect(settings.ledger, data_dir=settings.data_dir,
                           dsn=settings.ledger_dsn, committer=settings.committer,
                           network=settings.network))

    def close(self) -> None:
        self.connection.close()

    def _user(self, p: Principal) -> str:
        """The wallet identity of the token's (city, role, department); it is
        enrolled when the token is issued, never inside a request."""
        found = self.connection.find_user(p.city, p.role.value, p.department)
        if found is None:
            raise Problem(403, "no-identity",
                          f"this node's wallet holds no identity of {p.label}: "
                          "issue the token with `cityunion token issue`, which "
                          "enrols it", "Authorization")
        return found

    def ledger_for(self, p: Principal) -> Ledger:
        key = (p.city, p.role, p.department)
        with self._lock:
            if key not in self._ledgers:
                self._ledgers[key] = self.connection.client(p.city, self._user(p))
            return self._ledgers[key]

    def submit(self, p: Principal, function: str, args: dict[str, Any],
               key: str | None = None) -> Outcome:
        """Check the token's role against the contract's, then submit as the
        token's identity. A refused role is a 403 and nothing is submitted.
        With an idempotency ``key``, a command the key already committed is not
        submitted again: the outcome is that transaction's receipt, replayed
        (``KeyReused`` when the key named another command)."""
        roles = allowed_roles(function)
        if p.role not in roles:
            accepted = ", ".join(sorted(r.value for r in roles))
            raise Problem(403, "forbidden-role",
                          f"{function} may be called by {accepted}; this token's "
                          f"role is {p.role.value}", "role", accepted)
        ledger = self.ledger_for(p)
        if key is None:
            outcome = Outcome(ledger.submit(function, args), replayed=False)
        else:
            outcome = self._idempotent.submit(ledger, p.label, key, function, args)
        receipt = outcome.receipt
        log.info("%s by %s: tx %s in block %d%s", function, p.label, receipt.tx_id,
                 receipt.block_number, " (replayed)" if outcome.replayed else "")
        return outcome

    def verify(self, start: int, end: int) -> VerifyReport:
        """Re-check blocks ``start..end``: hashes, links, signatures, events."""
        return self.connection.verify(start, end)

    def verify_block(self, number: int) -> str | None:
        """Header-level check for the blocks read model: link, hash, signature."""
        return self.connection.verify_block(number)
