"""The API's way into the ledger: this node's wallet, one identity per token.

The API server is the city's node and gateway: it holds the wallet, and a
command is submitted with the wallet identity matching the token's (city, role,
department) — a department not yet in the wallet is enrolled on first use. So
authority is checked twice: here (the contract's declared roles, 403 and nothing
submitted) and again by the chaincode from the identity's certificate.
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
from ledger.embedded import EmbeddedLedger, EmbeddedNode
from ledger.msp import Identity, MembershipError
from ledger.protocol import LedgerError, Receipt, VerifyReport
from ledger.verify import verify_blocks
from network.consortium import load_consortium

log = logging.getLogger(__name__)
WALLET_NAMES = {Role.CENTER_ADMIN: "admin", Role.CITY_ADMIN: "admin",
                Role.TERMINAL: "terminal", Role.AUDITOR: "auditor"}


class LedgerUnavailable(LedgerError):
    """The chosen ledger cannot be used in this build."""


def allowed_roles(function: str) -> frozenset[Role]:
    """The roles the contract lets call a command."""
    return COMMANDS[function][1]


class Gateway:
    """Submits commands as the caller's identity; reads for auditors."""

    def __init__(self, node: EmbeddedNode) -> None:
        self.node = node
        self._ledgers: dict[tuple[str, Role, str | None], EmbeddedLedger] = {}
        self._lock = threading.Lock()
        self.reader = EmbeddedLedger(
            node, node.wallet.identity(load_consortium().center.name, "auditor"))

    @classmethod
    def open(cls, settings: Settings) -> Gateway:
        if settings.ledger == "fabric":
            raise LedgerUnavailable(
                "the Fabric ledger is not available in this build (its binaries "
                "cannot be obtained here); use --ledger embedded")
        return cls(EmbeddedNode(settings.data_dir, dsn=settings.ledger_dsn,
                                committer=settings.committer))

    def close(self) -> None:
        self.node.close()

    def _identity(self, p: Principal) -> Identity:
        wallet = self.node.wallet
        if p.role is not Role.DEPARTMENT:
            return wallet.identity(p.city, WALLET_NAMES[p.role])
        candidates = (str(p.department), f"department-{p.department}")
        for name in candidates:
            try:
                found = wallet.identity(p.city, name)
            except MembershipError:
                continue
            if (found.subject.get("role") == Role.DEPARTMENT.value
                    and found.subject.get("department") == p.department):
                return found
        return wallet.enroll(p.city, candidates[1], Role.DEPARTMENT, p.department,
                             self.node.backend)

    def ledger_for(self, p: Principal) -> EmbeddedLedger:
        key = (p.city, p.role, p.department)
        with self._lock:
            if key not in self._ledgers:
                self._ledgers[key] = EmbeddedLedger(self.node, self._identity(p))
            return self._ledgers[key]

    def submit(self, p: Principal, function: str, args: dict[str, Any]) -> Receipt:
        """Check the token's role against the contract's, then submit as the
        token's identity. A refused role is a 403 and nothing is submitted."""
        roles = allowed_roles(function)
        if p.role not in roles:
            accepted = ", ".join(sorted(r.value for r in roles))
            raise Problem(403, "forbidden-role",
                          f"{function} may be called by {accepted}; this token's "
                          f"role is {p.role.value}", "role", accepted)
        receipt = self.ledger_for(p).submit(function, args)
        log.info("%s by %s: tx %s in block %d", function, p.label, receipt.tx_id,
                 receipt.block_number)
        return receipt

    def verify(self, start: int, end: int) -> VerifyReport:
        """Re-check blocks ``start..end``: hashes, links, signatures, events."""
        return verify_blocks(self.node.store, self.node.backend, start, end)

    def verify_block(self, number: int) -> str | None:
        """Header-level check for the blocks read model: link, hash, signature."""
        report = verify_blocks(self.node.store, self.node.backend, number, number,
                               transactions=False)
        return report.error
