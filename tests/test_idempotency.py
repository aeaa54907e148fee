"""Keyed commands on the embedded ledger (``ledger.idempotency``): the nonce a
key fixes, the duplicate the ledger refuses, the committed transaction it
answers with, and the attempts a key has when its transactions commit
invalid. (tests/api/test_api_idempotency.py runs the API's on both ledgers.)"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest
from helpers import Clients, batch_args, card_record

from ledger.embedded import EmbeddedLedger, EmbeddedNode
from ledger.idempotency import (
    MAX_ATTEMPTS,
    AttemptsExhausted,
    Idempotent,
    KeyReused,
    nonce_for,
)
from ledger.protocol import CommitError, Receipt, SubmitError


def department(code: str = "transport", name: str = "Transport") -> dict[str, Any]:
    return {"code": code, "name": name, "duties": ["transport"]}


def test_a_key_fixes_the_transaction_id(ids: Clients[EmbeddedLedger]) -> None:
    ks, sh = ids("Kunshan"), ids("Shanghai")
    assert nonce_for("k", 0) == nonce_for("k", 0) != nonce_for("k", 1)
    assert len(nonce_for("k", 0)) == 24
    assert ks.tx_id(nonce_for("k", 0)) != sh.tx_id(nonce_for("k", 0))
    receipt = ks.submit("RegisterDepartment", department(), nonce=nonce_for("k", 0))
    assert receipt.tx_id == ks.tx_id(nonce_for("k", 0))


def test_the_ledger_answers_with_the_committed_transaction(
        ids: Clients[EmbeddedLedger]) -> None:
    ks = ids("Kunshan")
    assert ks.transaction("ab" * 32) is None
    receipt = ks.submit("RegisterDepartment", department(), nonce=nonce_for("k", 0))
    found = ks.transaction(receipt.tx_id)
    assert found is not None
    assert (found.function, found.args) == (
        "RegisterDepartment", '{"code":"transport","duties":["transport"],'
        '"name":"Transport"}')
    assert found.receipt() == receipt
    with pytest.raises(SubmitError, match="duplicate"):
        ks.submit("RegisterDepartment", department("other"), nonce=nonce_for("k", 0))


def test_a_retry_is_answered_from_the_ledger(ids: Clients[EmbeddedLedger]) -> None:
    ks, keys = ids("Kunshan"), Idempotent()
    first = keys.submit(ks, "ks", "k", "RegisterDepartment", department())
    height = ks.height()
    again = Idempotent().submit(ks, "ks", "k", "RegisterDepartment", department())
    assert (first.replayed, again.replayed) == (False, True)
    assert again.receipt == first.receipt and ks.height() == height
    with pytest.raises(KeyReused) as refused:
        keys.submit(ks, "ks", "k", "RegisterDepartment", department(name="Other"))
    assert refused.value.tx_id == first.receipt.tx_id


def _conflicting(node: EmbeddedNode, ids: Clients[EmbeddedLedger], key: str,
                 attempts: int) -> tuple[EmbeddedLedger, dict[str, Any]]:
    """Shanghai's ledger, and confirmation arguments (record r2 of a batch) that
    ``attempts`` keyed transactions committed invalid: each read the batch in
    the block where another confirmation (of r1) changed it first."""
    batch_id = ids("Kunshan").submit("ReportTransactionBatch", batch_args(
        [card_record("r1", "Shanghai"), card_record("r2", "Shanghai")])).result["id"]
    sh = ids("Shanghai")
    confirm = {"batch_id": batch_id, "record_ids": ["r2"]}
    slow, node.block_timeout = node.block_timeout, 0.3
    try:
        winner = sh.submit_async("ConfirmTransactions",
                                 {"batch_id": batch_id, "record_ids": ["r1"]})
        losers: list[Future[Receipt]] = [
            sh.submit_async("ConfirmTransactions", confirm, nonce=nonce_for(key, n))
            for n in range(attempts)]
        for loser in losers:
            with pytest.raises(CommitError, match="MVCC_READ_CONFLICT"):
                loser.result()
        winner.result()
    finally:
        node.block_timeout = slow
    return sh, confirm


def test_an_invalid_commit_does_not_spend_the_key(
        node: EmbeddedNode, ids: Clients[EmbeddedLedger]) -> None:
    sh, confirm = _conflicting(node, ids, "k", 2)
    # attempts 0 and 1 committed invalid: the retry commits attempt 2
    done = Idempotent().submit(sh, "sh", "k", "ConfirmTransactions", confirm)
    assert not done.replayed and done.receipt.status == "VALID"
    assert done.receipt.tx_id == sh.tx_id(nonce_for("k", 2))
    again = Idempotent().submit(sh, "sh", "k", "ConfirmTransactions", confirm)
    assert again.replayed and again.receipt == done.receipt
    with pytest.raises(KeyReused):  # attempt 0 named another request
        Idempotent().submit(sh, "sh", "k", "ConfirmTransactions",
                            {**confirm, "record_ids": ["r1"]})


def test_a_key_has_a_bounded_number_of_attempts(
        node: EmbeddedNode, ids: Clients[EmbeddedLedger]) -> None:
    sh, confirm = _conflicting(node, ids, "k", MAX_ATTEMPTS)
    with pytest.raises(AttemptsExhausted) as spent:
        Idempotent().submit(sh, "sh", "k", "ConfirmTransactions", confirm)
    assert spent.value.tx_id == sh.tx_id(nonce_for("k", MAX_ATTEMPTS - 1))
    assert spent.value.status == "MVCC_READ_CONFLICT"
