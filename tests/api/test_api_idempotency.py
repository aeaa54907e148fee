"""Idempotent commands (``Idempotency-Key``), on each ledger: a retry gets the
original receipt and commits nothing; the same key with another request is
422; the answer survives a server killed between the commit and its reply; a
key whose transaction committed invalid may be retried; concurrent retries
commit once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from apikit import KS_ADMIN, ROOT, SH_ADMIN, Api, Who, name, new_day, problem
from fastapi.testclient import TestClient
from helpers import card_record, unique_hash
from httpx import Response

from api.app import create_app
from api.deps import REPLAYED_HEADER
from api.schemas import CommandResult
from api.settings import Settings
from chaincode.merkle import merkle_root
from ledger.idempotency import nonce_for
from ledger.protocol import CommitError, Ledger


def keyed(api: Api, path: str, body: dict[str, Any], who: Who, key: str) -> Response:
    return api.client.post(path, json=body, headers={**api.headers(who),
                                                     "Idempotency-Key": key})


def department(code: str | None = None) -> dict[str, Any]:
    code = code or name("d")
    return {"code": code, "name": f"Dept {code}", "duties": ["transport"]}


def ledger_of(api: Api, who: Who) -> Ledger:
    """The ledger client the API submits with for ``who``."""
    principal = api.runtime.tokens.verify(api.token(who))
    return api.runtime.gateway.ledger_for(principal)


def test_retry_returns_the_original_receipt(api: Api) -> None:
    key, body = str(uuid.uuid4()), department()
    first = keyed(api, "/api/departments", body, KS_ADMIN, key)
    assert first.status_code == 201, first.text
    assert REPLAYED_HEADER not in first.headers
    height = api.height()
    again = keyed(api, "/api/departments", dict(reversed(body.items())), KS_ADMIN,
                  key)  # the same request, written another way
    assert again.status_code == 201, again.text
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.json() == first.json()
    assert api.height() == height  # nothing new was committed
    api.sync()
    listed = api.get("/api/departments", KS_ADMIN, limit=500).json()["items"]
    assert [d["code"] for d in listed].count(body["code"]) == 1


def test_same_key_for_another_request_is_refused(api: Api) -> None:
    key, body = str(uuid.uuid4()), department()
    assert keyed(api, "/api/departments", body, KS_ADMIN, key).status_code == 201
    other = problem(keyed(api, "/api/departments", {**body, "name": "Other"},
                          KS_ADMIN, key), 422, "Idempotency-Key")
    assert "another request" in other["detail"]
    problem(keyed(api, "/api/departments", department(), KS_ADMIN, key), 422,
            "Idempotency-Key")
    # another operation under the same key is another request too
    problem(keyed(api, "/api/identifiers", {
        "kind": "person", "category": "identity", "scheme": "cn-id",
        "natural_key_hash": unique_hash()}, KS_ADMIN, key), 422, "Idempotency-Key")


def test_keys_belong_to_an_identity(api: Api) -> None:
    """Two identities may use one key: each gets its own transaction."""
    key, code = str(uuid.uuid4()), name("d")
    a = keyed(api, "/api/departments", department(code), KS_ADMIN, key)
    b = keyed(api, "/api/departments", department(code), SH_ADMIN, key)
    assert a.status_code == b.status_code == 201, (a.text, b.text)
    assert REPLAYED_HEADER not in b.headers
    assert a.json()["tx_id"] != b.json()["tx_id"]


def test_bad_keys_are_refused(api: Api) -> None:
    for bad in ("", "k" * 256, "with space", "ключ"):
        r = api.client.post("/api/departments", json=department(), headers={
            **api.headers(KS_ADMIN), "Idempotency-Key": bad.encode()})
        problem(r, 422, "Idempotency-Key")


def test_answer_lost_after_commit(api: Api) -> None:
    """The command committed but its answer never left (the connection or the
    server died): the retry learns the result from the ledger."""
    key, body = str(uuid.uuid4()), department()
    receipt = ledger_of(api, KS_ADMIN).submit("RegisterDepartment", body,
                                              nonce=nonce_for(key, 0))
    r = keyed(api, "/api/departments", body, KS_ADMIN, key)
    assert r.status_code == 201, r.text
    assert r.headers[REPLAYED_HEADER] == "true"
    assert r.json() == CommandResult.of(receipt).model_dump(mode="json")


KILLED = """
import sys, time
from pathlib import Path
from fastapi.testclient import TestClient
import api.deps
from api.app import create_app
from api.settings import Settings

data_dir, ledger, network, marker, key, body = sys.argv[1:7]

def stall(receipt):  # committed: the answer is never made
    Path(marker).write_text(receipt.tx_id)
    time.sleep(300)

api.deps.CommandResult.of = stall
settings = Settings(data_dir=Path(data_dir), ledger=ledger, network=network or None,
                    follow=False)
with TestClient(create_app(settings)) as client:
    _, token = client.app.state.runtime.tokens.issue("Kunshan", "city_admin")
    client.post("/api/departments", content=body, headers={
        "Authorization": f"Bearer {token}", "Idempotency-Key": key,
        "content-type": "application/json"})
"""


@contextmanager
def app_on(settings: Settings) -> Iterator[tuple[TestClient, str]]:
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        yield client, runtime.tokens.issue("Kunshan", "city_admin")[1]


def test_server_killed_between_commit_and_answer(api: Api, tmp_path: Path) -> None:
    """A server process is killed (SIGKILL) after the ledger committed the
    command and before it answered; a new server answers the retry with that
    transaction's receipt and commits nothing more."""
    shared = api.runtime.settings
    settings = Settings(data_dir=tmp_path / "node", ledger=shared.ledger,
                        network=shared.network, follow=False)
    key, body = str(uuid.uuid4()), json.dumps(department())
    marker = tmp_path / "committed"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(settings.data_dir), settings.ledger,
         str(settings.network or ""), str(marker), key, body], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() or not marker.read_text():
            assert child.poll() is None, "the server ended before committing"
            assert time.monotonic() < deadline, "the command never committed"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    tx_id = marker.read_text()

    with app_on(settings) as (client, token):
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key,
                   "content-type": "application/json"}
        r = client.post("/api/departments", content=body, headers=headers)
        assert r.status_code == 201, r.text
        assert r.headers[REPLAYED_HEADER] == "true"
        assert r.json()["tx_id"] == tx_id and r.json()["status"] == "VALID"
        [event] = r.json()["events"]
        assert event["type"] == "DepartmentRegistered"
        assert event["data"]["code"] == json.loads(body)["code"]


def test_retry_after_an_invalid_commit_runs_again(api: Api) -> None:
    """A keyed command that committed invalid (an MVCC conflict: 409, submit
    again) has not spent its key: the retry commits a new attempt, and a
    retry of that is answered with the new attempt's receipt."""
    records = [card_record(name("r"), "Shanghai"), card_record(name("r"), "Shanghai")]
    batch = api.ok("/api/card-batches", {"business_day": new_day(),
                                         "records": records}, KS_ADMIN)
    batch_id = batch["result"]["id"]
    ids = [r["record_id"] for r in records]
    key = str(uuid.uuid4())
    ledger = ledger_of(api, SH_ADMIN)
    node = getattr(api.runtime.gateway.connection, "node", None)
    slow = node.block_timeout if node is not None else 0.0
    if node is not None:  # one block for both: the second reads stale state
        node.block_timeout = 0.3
    try:
        winner = ledger.submit_async(  # type: ignore[attr-defined]
            "ConfirmTransactions", {"batch_id": batch_id, "record_ids": ids[:1]})
        loser = ledger.submit_async(  # type: ignore[attr-defined]
            "ConfirmTransactions", {"batch_id": batch_id, "record_ids": ids[1:]},
            nonce=nonce_for(key, 0))
        winner.result()
        try:
            loser.result()
            pytest.skip("the two confirmations did not conflict this time")
        except CommitError as e:
            assert e.status == "MVCC_READ_CONFLICT"
    finally:
        if node is not None:
            node.block_timeout = slow
    api._committed = max(api._committed, ledger.height() - 1)

    r = keyed(api, f"/api/card-batches/{batch_id}/confirm",
              {"record_ids": ids[1:]}, SH_ADMIN, key)
    assert r.status_code == 200, r.text
    assert REPLAYED_HEADER not in r.headers
    assert r.json()["tx_id"] == ledger.tx_id(nonce_for(key, 1))
    again = keyed(api, f"/api/card-batches/{batch_id}/confirm",
                  {"record_ids": ids[1:]}, SH_ADMIN, key)
    assert again.status_code == 200 and again.json() == r.json()
    assert again.headers[REPLAYED_HEADER] == "true"


def test_concurrent_retries_commit_once(api: Api) -> None:
    key, body = str(uuid.uuid4()), department()
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: keyed(api, "/api/departments", body,
                                                KS_ADMIN, key), range(4)))
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert len({a.json()["tx_id"] for a in answers}) == 1
    assert {a.json()["block_number"] for a in answers} == {
        answers[0].json()["block_number"]}
    assert sum(REPLAYED_HEADER in a.headers for a in answers) == 3
    assert all(a.json() == answers[0].json() for a in answers)


def test_merkle_root_made_by_the_api_is_part_of_the_request(api: Api) -> None:
    """A batch retried without its root (the API computes it) is the same
    request as one that names that root."""
    records = [card_record(name("r"), "Shanghai")]
    key, day = str(uuid.uuid4()), new_day()
    first = keyed(api, "/api/card-batches", {"business_day": day,
                                             "records": records}, KS_ADMIN, key)
    assert first.status_code == 201, first.text
    again = keyed(api, "/api/card-batches", {"business_day": day, "records": records,
                                             "merkle_root": merkle_root(records)},
                  KS_ADMIN, key)
    assert again.status_code == 201 and again.json() == first.json()
