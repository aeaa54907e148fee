"""Offline verification of an embedded chain, from its own genesis block.

Checks, block by block: header numbering and the SM3 link to the previous block,
the header hash, the node's SM2 signature, the data hash over the transactions;
for each transaction its creator's certificate chain (center → institution →
user), its SM2 signature and tx id; that the stored events are exactly those of
the valid transactions; finally that world state and key history equal a replay
of the valid write sets. The first failure is reported with its block and tx.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from chaincode.encoding import canonical_json
from chaincode.stub import Creator
from ledger import crypto
from ledger.committer import GENESIS_PREVIOUS, VALID, data_hash, tx_id_for
from ledger.msp import Membership, MembershipError
from ledger.protocol import VerifyReport
from ledger.store import Store


class _Bad(Exception):
    def __init__(self, message: str, block: int, tx_id: str | None = None) -> None:
        super().__init__(message)
        self.block = block
        self.tx_id = tx_id


def _check_tx(body: dict[str, Any], tx_id: str, number: int,
              membership: Membership, backend: crypto.Backend) -> None:
    proposal = body["proposal"]
    creator = Creator(proposal["creator"]["msp_id"],
                      proposal["creator"]["certificate"].encode())
    if proposal["tx_id"] != tx_id or tx_id_for(bytes.fromhex(proposal["nonce"]),
                                               creator) != tx_id:
        raise _Bad("tx id does not match its nonce and creator", number, tx_id)
    try:
        public = membership.public_key_of(creator)
    except MembershipError as e:
        raise _Bad(f"creator not trusted: {e}", number, tx_id) from e
    if not backend.sm2_verify(public, canonical_json(proposal),
                              bytes.fromhex(body["signature"])):
        raise _Bad("transaction signature does not verify", number, tx_id)


def _first_difference(expected: list[Any], stored: list[Any]) -> Any:
    """The first entry where two lists differ (from the longer one when one is a
    prefix of the other), so a report names the row that was changed or lost."""
    for e, s in zip(expected, stored, strict=False):
        if e != s:
            return e
    return (expected if len(expected) > len(stored) else stored)[
        min(len(expected), len(stored))]


class _Trust:
    """The genesis block's trust anchors: membership and the node's public key."""

    def __init__(self, genesis_body: dict[str, Any], backend: crypto.Backend) -> None:
        self.membership = Membership(genesis_body["config"], backend)
        node = genesis_body["config"]["node"]
        self.node_public = self.membership.public_key_of(
            Creator(node["msp_id"], node["certificate"].encode()))


_TRUSTED: dict[tuple[str, str], _Trust] = {}


def _trust_of(genesis_body: str, backend: crypto.Backend) -> _Trust:
    """Trust anchors of a genesis block, built once (five SM2 verifications)."""
    key = (genesis_body, backend.name)
    if key not in _TRUSTED:
        if len(_TRUSTED) >= 8:
            _TRUSTED.clear()
        _TRUSTED[key] = _Trust(json.loads(genesis_body), backend)
    return _TRUSTED[key]


def _check_block(store: Store, backend: crypto.Backend, number: int, previous: str,
                 trust: _Trust | None, counts: dict[str, int],
                 transactions: bool = True) -> tuple[str, list[dict[str, Any]],
                                                     _Trust]:
    """Check one block against the previous block's hash; raises ``_Bad``.

    Returns the block's hash, its transaction bodies and the trust anchors (read
    from the block itself when it is the genesis block). ``transactions=False``
    checks the header, the link, the data hash and the node signature only.
    """
    found = store.block(number)
    if found is None:
        raise _Bad("block is missing", number)
    header_text, block_hash, signature, raw_txs = found
    try:
        header = json.loads(header_text)
        bodies = [json.loads(b) for b in raw_txs]
    except ValueError as e:
        raise _Bad(f"block is not valid JSON: {e}", number) from e
    if header.get("number") != number:
        raise _Bad("block number in header is wrong", number)
    if header.get("previous_hash") != previous:
        raise _Bad("previous-block hash does not match", number)
    if crypto.sm3_hex(header_text.encode()) != block_hash:
        raise _Bad("block hash does not match its header", number)
    if header.get("data_hash") != data_hash(raw_txs) or \
            header.get("tx_count") != len(raw_txs):
        raise _Bad("data hash does not match the transactions", number)
    if number == 0:
        trust = _Trust(bodies[0], backend)
    assert trust is not None
    if not backend.sm2_verify(trust.node_public, bytes.fromhex(block_hash),
                              bytes.fromhex(signature)):
        raise _Bad("node signature of the block does not verify", number)
    if number == 0 or not transactions:
        return block_hash, bodies, trust
    stored_tx_ids = store.tx_ids_of_block(number)
    expected_events = []
    for index, body in enumerate(bodies):
        tx_id = stored_tx_ids[index]
        _check_tx(body, tx_id, number, trust.membership, backend)
        counts["tx"] += 1
        if body["validation"] != VALID:
            continue
        for i, ev in enumerate(body["result"]["events"]):
            expected_events.append((index, i, tx_id, ev["type"],
                                    canonical_json(ev).decode()))
    stored = [tuple(e) for e in store.events_of_block(number)]
    if stored != expected_events:
        bad = _first_difference(expected_events, stored)
        raise _Bad("recorded events differ from the transaction's events",
                   number, str(bad[2]))
    counts["events"] += len(expected_events)
    return block_hash, bodies, trust


def verify_blocks(store: Store, backend: crypto.Backend, start: int, end: int,
                  transactions: bool = True) -> VerifyReport:
    """Re-check blocks ``start..end`` (inclusive) and their link to block
    ``start - 1``; trust comes from the genesis block. Unlike ``verify_chain``
    this does not replay world state, so any range is cheap to check.
    ``transactions=False`` checks headers, links and node signatures only."""
    counts = {"tx": 0, "events": 0}
    number = start
    try:
        height = store.height()
        if not 0 <= start <= end < height:
            raise _Bad(f"block range {start}..{end} is outside the chain "
                       f"(0..{height - 1})", start)
        trust: _Trust | None = None
        previous = GENESIS_PREVIOUS
        if start > 0:
            genesis = store.block(0)
            if genesis is None:
                raise _Bad("the ledger has no genesis block", 0)
            trust = _trust_of(genesis[3][0], backend)
            before = store.block(start - 1)
            if before is None:
                raise _Bad("block is missing", start - 1)
            previous = before[1]
        for number in range(start, end + 1):
            previous, _, trust = _check_block(store, backend, number, previous,
                                              trust, counts, transactions)
    except _Bad as bad:
        return VerifyReport(False, end - start + 1, counts["tx"], counts["events"],
                            str(bad), bad.block, bad.tx_id)
    except (KeyError, TypeError, ValueError, IndexError, MembershipError) as e:
        return VerifyReport(False, end - start + 1, counts["tx"], counts["events"],
                            f"block is malformed: {e!r}", number)
    return VerifyReport(True, end - start + 1, counts["tx"], counts["events"])


def verify_chain(store: Store, backend: crypto.Backend,
                 progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Re-check the whole chain; ``progress(block, height)`` is called per block."""
    height = store.height()
    counts = {"tx": 0, "events": 0}
    state: dict[str, tuple[str, int, int]] = {}
    history: dict[str, list[tuple[int, int, str | None]]] = {}
    number = 0
    try:
        if height == 0:
            raise _Bad("the ledger has no genesis block", 0)
        previous = GENESIS_PREVIOUS
        trust: _Trust | None = None
        for number in range(height):
            previous, bodies, trust = _check_block(store, backend, number, previous,
                                                   trust, counts)
            for index, body in enumerate(bodies):
                if number == 0 or body["validation"] != VALID:
                    continue
                for key, value in body["result"]["writes"]:
                    history.setdefault(key, []).append((number, index, value))
                    if value is None:
                        state.pop(key, None)
                    else:
                        state[key] = (value, number, index)
            if progress:
                progress(number, height)
        for key, value, block, tx in store.all_state():
            if state.pop(key, None) != (value, block, tx):
                raise _Bad(f"world state of key {key!r} differs from the chain",
                           int(block))
        if state:
            key = next(iter(state))
            raise _Bad(f"world state lacks key {key!r}", state[key][1])
        stored_history: dict[str, list[tuple[int, int, str | None]]] = {}
        for key, block, tx, value in store.all_history():
            stored_history.setdefault(key, []).append((block, tx, value))
        for key in sorted(set(history) | set(stored_history)):
            if history.get(key) != stored_history.get(key):
                bad_version = _first_difference(history.get(key, []),
                                                stored_history.get(key, []))
                raise _Bad(f"history of key {key!r} differs from the chain",
                           bad_version[0])
    except _Bad as bad:
        return VerifyReport(False, height, counts["tx"], counts["events"], str(bad),
                            bad.block, bad.tx_id)
    except (KeyError, TypeError, ValueError, IndexError, MembershipError) as e:
        return VerifyReport(False, height, counts["tx"], counts["events"],
                            f"block is malformed: {e!r}", number)
    return VerifyReport(True, height, counts["tx"], counts["events"])
