"""Open the ledger a command or server was pointed at, behind ``Connection``.

``connect("embedded", data_dir=...)`` opens the embedded node in ``data_dir``
(SQLite, or PostgreSQL at ``dsn``); ``connect("fabric", network=DIR)`` reads a
Fabric network directory written by ``cityunion network up`` (endpoints, TLS
roots, the wallet of CA-enrolled identities).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from chaincode.identity import Role
from ledger.embedded import EmbeddedLedger, EmbeddedNode
from ledger.msp import MembershipError
from ledger.protocol import Connection, LedgerError, VerifyReport
from ledger.verify import verify_blocks

LEDGERS = ("embedded", "fabric")
DEFAULT_DATA_DIR = "./cityunion-data"  # a node's keys, embedded ledger, read models


class EmbeddedConnection:
    """``Connection`` over one embedded node and the wallet in its data dir."""

    kind = "embedded"

    def __init__(self, node: EmbeddedNode) -> None:
        self.node = node

    def client(self, org: str, user: str = "admin") -> EmbeddedLedger:
        return EmbeddedLedger(self.node, self.node.wallet.identity(org, user))

    def find_user(self, org: str, role: str, department: str | None) -> str | None:
        wallet = self.node.wallet
        names = {Role.CENTER_ADMIN.value: ["admin"], Role.CITY_ADMIN.value: ["admin"],
                 Role.TERMINAL.value: ["terminal"], Role.AUDITOR.value: ["auditor"]
                 }.get(role, [str(department), f"department-{department}"])
        for name in names:
            try:
                found = wallet.identity(org, name)
            except MembershipError:
                continue
            if (found.subject.get("role") == role
                    and found.subject.get("department") == department):
                return name
        return None

    def enrol(self, org: str, user: str, role: str, department: str | None) -> None:
        self.node.wallet.enroll(org, user, Role(role), department, self.node.backend)

    def verify(self, start: int = 0, end: int | None = None,
               progress: Callable[[int, int], None] | None = None,
               save_dir: Path | None = None) -> VerifyReport:
        if save_dir is not None:
            raise LedgerError("--save is for Fabric blocks; the embedded ledger's "
                              "own files are its copy (ledger.sqlite)")
        if start == 0 and end is None:  # the whole chain, world state replayed
            return self.node.verify(progress)
        last = self.node.height() - 1 if end is None else end
        return verify_blocks(self.node.store, self.node.backend, start, last)

    def verify_block(self, number: int) -> str | None:
        return verify_blocks(self.node.store, self.node.backend, number, number,
                             transactions=False).error

    def close(self) -> None:
        self.node.close()


def department_user(department: str) -> str:
    """The wallet name of a department's identity."""
    return f"department-{department}"


def ensure_identity(conn: Connection, org: str, role: str,
                    department: str | None) -> str:
    """The wallet user of (org, role, department), enrolling a department's
    identity through the organisation's CA when the wallet has none yet (other
    roles are enrolled when the consortium or network is created)."""
    found = conn.find_user(org, role, department)
    if found is not None:
        return found
    if role != Role.DEPARTMENT.value or not department:
        raise LedgerError(f"the wallet holds no {role} identity of {org}")
    conn.enrol(org, department_user(department), role, department)
    return department_user(department)


def connect(kind: str = "embedded", *, data_dir: Path | None = None,
            dsn: str | None = None, committer: str = "thread",
            network: Path | None = None, read_only: bool = False) -> Connection:
    """Open the chosen ledger; a LedgerError says what is missing."""
    if kind == "embedded":
        if data_dir is None:
            raise LedgerError("the embedded ledger needs a data directory")
        return EmbeddedConnection(EmbeddedNode(data_dir, dsn=dsn, committer=committer,
                                               read_only=read_only))
    if kind == "fabric":
        from ledger.fabric.connection import FabricConnection

        if network is None:
            raise LedgerError("--ledger fabric needs --network DIR (the directory "
                              "`cityunion network up --dir DIR` wrote)")
        return FabricConnection(network)
    raise LedgerError(f"unknown ledger {kind!r} (accepted: {', '.join(LEDGERS)})")
