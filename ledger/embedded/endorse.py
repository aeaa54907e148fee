"""Endorsement: the stub the contract runs against, the simulation of a signed
proposal over committed state, and the transaction body built from its result.

The node checks the creator's certificate chain and signature, runs the contract
on an ``EmbeddedStub`` that records reads (with versions), range scans and writes,
and builds everything of the transaction body but its validation status, which
only the committer knows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from chaincode.encoding import canonical_json
from chaincode.errors import ContractError
from chaincode.stub import Creator, Invoke, KeyModification
from ledger import crypto
from ledger.committer import Endorsed
from ledger.msp import Membership, MembershipError
from ledger.protocol import EndorseError
from ledger.store import Store, Version


class EmbeddedStub:
    """The ``Stub`` over committed state, recording the read and write sets."""

    def __init__(self, store: Store, proposal: dict[str, Any],
                 transient: dict[str, bytes] | None) -> None:
        self.store = store
        self.proposal = proposal
        self.transient = transient or {}
        self.reads: dict[str, Version | None] = {}
        self.ranges: list[tuple[str, str, list[tuple[str, Version]]]] = []
        self.writes: dict[str, str | None] = {}
        self.event: tuple[str, bytes] | None = None
        self.proposal_text = ""  # the signed bytes, set once they are checked

    def get_args(self) -> list[bytes]:
        return [self.proposal["function"].encode(), self.proposal["args"].encode()]

    def get_state(self, key: str) -> bytes | None:
        found = self.store.get_state(key)
        self.reads.setdefault(key, found[1] if found else None)
        return found[0].encode() if found else None

    def get_multiple_states(self, keys: list[str]) -> list[bytes | None]:
        found = self.store.get_states(keys)
        out: list[bytes | None] = []
        for key in keys:
            hit = found.get(key)
            self.reads.setdefault(key, hit[1] if hit else None)
            out.append(hit[0].encode() if hit else None)
        return out

    def put_state(self, key: str, value: bytes) -> None:
        if not key:
            raise ContractError("empty key")
        self.writes[key] = value.decode("utf-8")

    def del_state(self, key: str) -> None:
        self.writes[key] = None

    def get_state_by_range(self, start: str, end: str) -> Iterator[tuple[str, bytes]]:
        rows = self.store.range(start, end)
        self.ranges.append((start, end, [(k, v) for k, _, v in rows]))
        for key, value, _ in rows:
            yield key, value.encode()

    def get_history_for_key(self, key: str) -> Iterator[KeyModification]:
        for _block, _tx, value, body in self.store.history(key):
            proposal = json.loads(body)["proposal"]
            yield KeyModification(proposal["tx_id"], (value or "").encode(),
                                  datetime.fromisoformat(proposal["timestamp"]),
                                  value is None)

    def get_creator(self) -> Creator:
        c = self.proposal["creator"]
        return Creator(c["msp_id"], c["certificate"].encode())

    def get_tx_id(self) -> str:
        return str(self.proposal["tx_id"])

    def get_tx_timestamp(self) -> datetime:
        return datetime.fromisoformat(self.proposal["timestamp"])

    def get_transient(self) -> dict[str, bytes]:
        return dict(self.transient)

    def set_event(self, name: str, payload: bytes) -> None:
        self.event = (name, payload)  # as on Fabric, only the last one survives


_DECODER = json.JSONDecoder()


def split_events(payload: bytes) -> tuple[list[dict[str, Any]], list[str]]:
    """The chaincode event's list of domain events, parsed, and each one's own
    text: the contract writes canonical JSON (no whitespace), so the span the
    decoder consumed for an element is that element's canonical JSON."""
    text = payload.decode()
    events: list[dict[str, Any]] = []
    texts: list[str] = []
    try:
        pos = 1
        while text[pos] != "]":
            event, end = _DECODER.raw_decode(text, pos)
            events.append(event)
            texts.append(text[pos:end])
            pos = end + 1 if text[end] == "," else end
    except (ValueError, IndexError):
        pass
    if f"[{','.join(texts)}]" != text:  # not compact: parse and encode each one
        events = json.loads(text)
        texts = [canonical_json(ev).decode() for ev in events]
    return events, texts


class Endorser:
    """Checks proposals against the consortium's membership and simulates them."""

    def __init__(self, store: Store, membership: Membership,
                 backend: crypto.Backend) -> None:
        self.store = store
        self.membership = membership
        self.backend = backend

    def check(self, proposal: dict[str, Any], signature: bytes) -> bytes:
        """The proposal's signed bytes, once its creator and signature check."""
        creator = Creator(proposal["creator"]["msp_id"],
                          proposal["creator"]["certificate"].encode())
        try:
            public = self.membership.public_key_of(creator)
        except MembershipError as e:
            raise EndorseError(f"creator rejected: {e}", proposal["tx_id"]) from e
        signed = canonical_json(proposal)
        if not self.backend.sm2_verify(public, signed, signature):
            raise EndorseError("proposal signature does not verify",
                               proposal["tx_id"])
        return signed

    def simulate(self, invoke: Invoke, proposal: dict[str, Any], signature: bytes,
                 transient: dict[str, bytes] | None) -> tuple[EmbeddedStub, bytes]:
        """Check the creator and run the contract ``invoke``; raises
        ContractError or EndorseError."""
        signed = self.check(proposal, signature)
        stub = EmbeddedStub(self.store, proposal, transient)
        stub.proposal_text = signed.decode()
        return stub, invoke(stub)


def endorsement(stub: EmbeddedStub, response: bytes, signature: bytes
                ) -> tuple[Endorsed, list[dict[str, Any]]]:
    """The simulated transaction for the committer, and its domain events.

    The tx body is canonical JSON with keys proposal < result < signature <
    validation; every part but the status is known now, so it is built here,
    beside endorsement, and the committer only appends the status.
    """
    events, event_texts = split_events(stub.event[1] if stub.event else b"[]")
    result = (f'{{"events":[{",".join(event_texts)}],"reads":'
              + canonical_json(sorted([k, list(v) if v else None]
                                      for k, v in stub.reads.items())).decode()
              + f',"response":{response.decode()},"writes":'
              + canonical_json([[k, v] for k, v in stub.writes.items()]).decode()
              + "}")
    endorsed = Endorsed(
        stub.proposal["tx_id"],
        f'{{"proposal":{stub.proposal_text},"result":{result},"signature":'
        f'"{signature.hex()}","validation":"',
        stub.reads, stub.ranges, stub.writes,
        [(ev["type"], text) for ev, text in zip(events, event_texts, strict=True)])
    return endorsed, events
