"""``Connection`` over a Fabric network directory written by ``network up``.

Clients are ``FabricLedger`` objects, one per wallet identity, sharing one gRPC
channel per peer. New department identities are registered and enrolled through
the organisation's Fabric CA, with their role attributes, as the launcher enrols
the standard users.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

from chaincode.identity import Role
from ledger.fabric.blocks import deliver_blocks, verify_chain
from ledger.fabric.gateway import FabricLedger, FabricNetwork
from ledger.protocol import LedgerError, VerifyReport
from network.consortium import load_consortium


class FabricConnection:
    """The wallet and peers of one network directory."""

    kind = "fabric"

    def __init__(self, directory: Path) -> None:
        try:
            self.network = FabricNetwork.load(Path(directory))
        except ValueError as e:
            raise LedgerError(str(e)) from None
        self.directory = Path(directory)
        self._clients: dict[tuple[str, str], FabricLedger] = {}
        self._lock = threading.Lock()

    def client(self, org: str, user: str = "admin") -> FabricLedger:
        with self._lock:
            if (org, user) not in self._clients:
                try:
                    identity = self.network.identity(org, user)
                except ValueError as e:
                    raise LedgerError(str(e)) from None
                self._clients[org, user] = FabricLedger(self.network, identity)
            return self._clients[org, user]

    def find_user(self, org: str, role: str, department: str | None) -> str | None:
        for entry in sorted((self.network.wallet / org).glob("*/identity.json")):
            meta = json.loads(entry.read_text())
            if meta.get("role") == role and meta.get("department") == department:
                return entry.parent.name
        return None

    def enrol(self, org: str, user: str, role: str, department: str | None) -> None:
        from network.ca import Enroller, User
        from network.launcher import Network

        net = Network(self.directory)
        organisation = load_consortium().by_name(org)
        if organisation is None:
            raise LedgerError(f"unknown organisation {org!r}")
        Enroller(net.layout, net.layout.ca_of(organisation), net.bin).enrol(
            (User(user, Role(role), department),))

    def _auditor(self) -> FabricLedger:
        return self.client(load_consortium().center.name, "auditor")

    def verify(self, start: int = 0, end: int | None = None,
               progress: Callable[[int, int], None] | None = None,
               save_dir: Path | None = None) -> VerifyReport:
        """Fetch blocks 0..end through the Deliver service and check them offline
        (trust comes from the genesis block, so checking starts there)."""
        auditor = self._auditor()
        height = auditor.height()
        last = height - 1 if end is None else end
        if not 0 <= start <= last < height:
            return VerifyReport(False, 0, 0, 0, f"block range {start}..{last} is "
                                f"outside the chain (0..{height - 1})", start)
        blocks = deliver_blocks(self.network.connect(auditor.peer.org),
                                auditor.identity, self.network.channel, 0, last)
        def each(n: int) -> None:
            if progress is not None:
                progress(n, last + 1)

        return verify_chain(blocks, save_dir, each)

    def verify_block(self, number: int) -> str | None:
        """The block's header links to its predecessor's header hash (hashes,
        signatures and policies are ``verify``'s, from block 0)."""
        auditor = self._auditor()
        block = auditor.block(number)
        if number > 0 and auditor.block(number - 1)["hash"] != block["previous_hash"]:
            return f"block {number}: previous_hash does not match block {number - 1}"
        return None

    def close(self) -> None:
        self.network.close()
