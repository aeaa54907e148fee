"""``EmbeddedLedger``: the Ledger protocol for one identity on an embedded node,
which signs its proposals as a Fabric client would."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from chaincode.merkle import canonical_json
from ledger.committer import VALID, tx_id_for
from ledger.embedded.node import EmbeddedNode
from ledger.embedded.reads import block_summary
from ledger.msp import Identity
from ledger.protocol import (
    CommitError,
    CommittedEvent,
    CommittedTransaction,
    KeyVersion,
    Position,
    Receipt,
    VerifyReport,
)
from network.consortium import load_consortium


class EmbeddedLedger:
    """The Ledger protocol for one identity on an embedded node."""

    def __init__(self, node: EmbeddedNode, identity: Identity) -> None:
        self.node = node
        self.identity = identity

    def _proposal(self, function: str, args: dict[str, Any],
                  nonce: bytes | None = None) -> tuple[dict[str, Any], bytes]:
        nonce = secrets.token_bytes(24) if nonce is None else nonce
        creator = self.identity.creator
        consortium = load_consortium()
        proposal = {
            "tx_id": tx_id_for(nonce, creator), "nonce": nonce.hex(),
            "channel": consortium.channel, "chaincode": consortium.chaincode,
            "function": function, "args": canonical_json(args).decode(),
            "creator": {"msp_id": creator.msp_id,
                        "certificate": creator.id_bytes.decode()},
            "timestamp": datetime.now(UTC).isoformat()}
        return proposal, self.identity.sign(canonical_json(proposal),
                                            self.node.backend)

    def submit(self, function: str, args: dict[str, Any],
               transient: dict[str, bytes] | None = None, *,
               nonce: bytes | None = None) -> Receipt:
        """Endorse, order and commit one command; raises ContractError when the
        contract rejects it (nothing written), CommitError when it committed
        as invalid and SubmitError when ``nonce`` names a transaction the
        ledger already holds."""
        return self.submit_async(function, args, transient, nonce=nonce).result()

    def submit_async(self, function: str, args: dict[str, Any],
                     transient: dict[str, bytes] | None = None, *,
                     nonce: bytes | None = None) -> Future[Receipt]:
        """Endorse now and return without waiting for the commit, like the
        Gateway's submit_async: the future gives the receipt, or raises
        CommitError. A contract rejection is raised here, before ordering."""
        proposal, signature = self._proposal(function, args, nonce)
        committed = self.node.submit(proposal, signature, transient)
        outcome: Future[Receipt] = Future()

        def settle(done: Future[Receipt]) -> None:
            try:
                receipt = done.result()
            except BaseException as e:
                outcome.set_exception(e)
                return
            if receipt.status != VALID:
                outcome.set_exception(CommitError(
                    f"transaction {receipt.tx_id} committed as {receipt.status}",
                    receipt.tx_id, receipt.status))
            else:
                outcome.set_result(receipt)

        committed.add_done_callback(settle)
        return outcome

    def tx_id(self, nonce: bytes) -> str:
        """The id of this identity's transaction with ``nonce``."""
        return tx_id_for(nonce, self.identity.creator)

    def transaction(self, tx_id: str) -> CommittedTransaction | None:
        """The committed transaction ``tx_id`` (any creator's), or None."""
        return self.node.transaction(tx_id)

    def evaluate(self, function: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run a query against committed state; nothing is written."""
        proposal, signature = self._proposal(function, args)
        _, response = self.node.simulate(proposal, signature, None)
        return dict(json.loads(response))

    def events(self, after: Position | None = None,
               follow: bool = False) -> Iterator[CommittedEvent]:
        return self.node.events(after, follow)

    def history(self, key: str) -> list[KeyVersion]:
        return self.node.history(key)

    def block(self, number: int) -> dict[str, Any]:
        return block_summary(self.node.block(number))

    def height(self) -> int:
        return self.node.height()

    def verify(self) -> VerifyReport:
        return self.node.verify()
