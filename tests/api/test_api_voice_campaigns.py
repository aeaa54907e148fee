"""Call campaigns run by the server through the API, with real SIP calls to a
simulated citizen: bad input refused naming the field with nothing started; a
campaign called to its end with its counts on the ledger; pause, resume and
cancel."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apikit import KS_ADMIN, KS_TRANSPORT, SH_ADMIN, Api, name, problem

from workers.voice.citizen import CitizenProcess, spawn_citizen
from workers.voice.sip import free_udp_port
from workers.voice.tts import missing_tools

pytestmark = pytest.mark.skipif(bool(missing_tools()),
                                reason="needs espeak-ng and sox")

CAMPAIGNS = "/api/voice/campaigns"
QUICK = Path(__file__).parents[1] / "workers" / "voice" / "quick_survey.yaml"
PRESS = {"steps": [{"wait_s": 0.3}, {"dtmf": "1"}], "max_s": 4}
BUSY_NUMBER = "13800000002"


@pytest.fixture(scope="module")
def citizen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CitizenProcess]:
    # SIP ports of this suite's own (the voice suite's are 5300-5400).
    port = free_udp_port(range(5600, 5700))
    c = spawn_citizen({"*": PRESS, BUSY_NUMBER: {"answer": "busy"}},
                      tmp_path_factory.mktemp("citizen"), port, 42000)
    yield c
    c.stop()


def run_body(campaign: str, citizen: CitizenProcess, numbers: list[str],
             **more: Any) -> dict[str, Any]:
    return {"name": campaign, "template": QUICK.read_text(encoding="utf-8"),
            "contacts": "id,number\n" + "".join(f"c{i},{n}\n"
                                                for i, n in enumerate(numbers)),
            "hours": "00:00-24:00", "attempts": 2, "retry_after_s": 0.5,
            "gateway": f"sip:{{number}}@127.0.0.1:{citizen.port}", **more}


def until(api: Api, campaign: str, done: Callable[[dict[str, Any]], bool],
          seconds: float = 120) -> dict[str, Any]:
    """The campaign, polled until ``done`` (a liveness bound, not a speed test)."""
    deadline = time.monotonic() + seconds
    while True:
        r = api.get(f"{CAMPAIGNS}/{campaign}", KS_TRANSPORT)
        assert r.status_code == 200, r.text
        got: dict[str, Any] = r.json()
        assert got["state"] != "failed", got
        if done(got):
            return got
        assert time.monotonic() < deadline, got
        time.sleep(0.2)


def test_bad_input_names_the_field_and_starts_nothing(
        api: Api, citizen: CitizenProcess, data_dir: Path) -> None:
    numbers = ["13800000001"]

    def refused(body: dict[str, Any], status: int, field: str,
                who: tuple[str, ...] = KS_TRANSPORT) -> str:
        # As JSON escapes (a lone surrogate is no UTF-8, but JSON can carry it).
        r = api.client.post(CAMPAIGNS, content=json.dumps(body), headers={
            **api.headers(who), "Content-Type": "application/json"})
        detail = str(problem(r, status, field)["detail"])
        assert body["name"] not in {c["name"] for c in api.get(
            CAMPAIGNS, KS_TRANSPORT).json()}
        assert not (data_dir / "voice" / "campaigns" / body["name"]).exists()
        return detail

    def bad(**change: Any) -> dict[str, Any]:
        return {**run_body(name("bad"), citizen, numbers), **change}

    detail = refused(bad(template="name: x\nversion: 1\nnodes: {}\n"), 422,
                     "template")
    assert "template.yaml" in detail and str(data_dir) not in detail
    refused(bad(template="name: a\ntitle: \x91\n"), 422, "template")
    refused(bad(contacts="id,number\nc1,\udb12\n"), 422, "contacts")  # lone surrogate
    refused(bad(contacts="id,phone\nc1,13800000001\n"), 422, "contacts")
    detail = refused(bad(contacts="id,number\nc1,13800000001\nc2,12ab\n"), 422,
                     "contacts")
    assert "contacts.csv:3" in detail, detail
    refused(bad(do_not_call=["1380000x"]), 422, "do_not_call")
    refused(bad(hours="25:00-26:00"), 422, "hours")
    refused(bad(gateway="sip:robot@127.0.0.1"), 422, "gateway")
    refused(bad(gateway="sip:{number}@{host}"), 422, "gateway")
    detail = refused(bad(hours="25:00-26:00"), 422, "hours")
    assert not detail.startswith("--"), detail  # no command-line option here
    refused(bad(concurrency=8), 422, "concurrency")  # one worker: 4 calls
    refused(bad(name="not a name!"), 422, "name")
    refused(bad(), 403, "role", KS_ADMIN)
    problem(api.get(f"{CAMPAIGNS}/nosuch", KS_TRANSPORT), 404, "name")


def test_a_campaign_runs_on_the_server_and_its_counts_reach_the_ledger(
        api: Api, citizen: CitizenProcess) -> None:
    campaign = name("run")
    numbers = ["13800000001", BUSY_NUMBER, "13800000003", "13800000004"]
    body = run_body(campaign, citizen, numbers, do_not_call=["13800000004"])
    keyed = {**api.headers(KS_TRANSPORT), "Idempotency-Key": name("k")}
    started = api.client.post(CAMPAIGNS, json=body, headers=keyed)
    assert started.status_code == 201, started.text
    assert started.json()["started_by"] == "Kunshan:department/transport"
    replayed = api.client.post(CAMPAIGNS, json=body, headers=keyed)
    assert replayed.status_code == 201 and replayed.headers[
        "Idempotent-Replayed"] == "true"
    assert replayed.json()["started_at"] == started.json()["started_at"]
    other = api.client.post(CAMPAIGNS, json={**body, "attempts": 1}, headers=keyed)
    problem(other, 422, "Idempotency-Key")  # the key, another body
    got = until(api, campaign, lambda c: c["state"] == "finished")
    outcomes = {"satisfied": 2, "busy": 1, "do_not_call": 1}
    assert got["outcomes"] == outcomes and got["status"] == "done"
    assert got["finished"] == 4 and got["completed_tx"]
    again = api.post(CAMPAIGNS, run_body(campaign, citizen, numbers), KS_TRANSPORT)
    problem(again, 409, "name")
    problem(api.get(f"{CAMPAIGNS}/{campaign}", SH_ADMIN), 404, "name")
    assert campaign not in {c["name"] for c in api.get(CAMPAIGNS, SH_ADMIN).json()}
    assert campaign in {c["name"] for c in api.get(CAMPAIGNS, KS_ADMIN).json()}
    api.sync()
    listed = api.get("/api/call-campaigns", KS_ADMIN, department="transport",
                     limit=500).json()["items"]
    [row] = [c for c in listed if c["campaign"] == campaign]
    assert row["status"] == "completed" and row["outcomes"] == outcomes
    assert row["contact_count"] == 4


def test_pause_resume_and_cancel(api: Api, citizen: CitizenProcess) -> None:
    campaign = name("ctl")
    numbers = [f"1370000{i:04d}" for i in range(12)]
    r = api.post(CAMPAIGNS, run_body(campaign, citizen, numbers, concurrency=1),
                 KS_TRANSPORT)
    assert r.status_code == 201, r.text
    until(api, campaign, lambda c: c["finished"] >= 1)
    r = api.post(f"{CAMPAIGNS}/{campaign}/pause", None, KS_TRANSPORT)
    assert r.status_code == 202, r.text
    paused = until(api, campaign,
                   lambda c: c["status"] == "paused" and c["in_flight"] == 0)
    time.sleep(1.5)  # paused: no call starts
    assert until(api, campaign, lambda c: True)["finished"] == paused["finished"]
    api.post(f"{CAMPAIGNS}/{campaign}/resume", None, KS_TRANSPORT)
    until(api, campaign, lambda c: c["finished"] > paused["finished"])
    api.post(f"{CAMPAIGNS}/{campaign}/cancel", None, KS_TRANSPORT)
    got = until(api, campaign, lambda c: c["state"] == "finished")
    assert got["status"] == "cancelled"
    assert got["outcomes"].get("cancelled", 0) >= 1
    assert sum(got["outcomes"].values()) == len(numbers)
    problem(api.post(f"{CAMPAIGNS}/{campaign}/resume", None, KS_TRANSPORT), 409,
            "name")
    problem(api.post(f"{CAMPAIGNS}/{campaign}/stop", None, KS_TRANSPORT), 422,
            "action")


def stopped_campaign(data_dir: Path, citizen: CitizenProcess, campaign: str,
                     numbers: list[str]) -> None:
    """A campaign opened on this node by a process that died before its first
    call: its inputs, journal and (released) lock are left."""
    from workers.voice.runner import StartOptions, begin
    from workers.voice.service import write_inputs

    sip = free_udp_port(range(5700, 5800))
    opts = StartOptions(name=campaign, template=data_dir, contacts=data_dir,
                        city="Kunshan", department="transport", hours="00:00-24:00",
                        attempts=1, sip_port=sip, rtp_port=43000,
                        gateway=f"sip:{{number}}@127.0.0.1:{citizen.port}")
    body = run_body(campaign, citizen, numbers)
    run = begin(write_inputs(data_dir, opts, body["template"], body["contacts"], []),
                data_dir)
    run.journal.close()
    run.held.close()


def test_a_campaign_whose_process_died_is_resumed_or_cancelled_here(
        api: Api, citizen: CitizenProcess, data_dir: Path) -> None:
    resumed, cancelled = name("died"), name("died")
    stopped_campaign(data_dir, citizen, resumed, ["13800000011", "13800000012"])
    stopped_campaign(data_dir, citizen, cancelled, ["13800000013", "13800000014"])
    problem(api.post(f"{CAMPAIGNS}/{resumed}/pause", None, KS_TRANSPORT), 404, "name")
    problem(api.post(f"{CAMPAIGNS}/{resumed}/resume", None, KS_ADMIN), 403, "role")
    r = api.post(f"{CAMPAIGNS}/{resumed}/resume", None, KS_TRANSPORT)
    assert r.status_code == 202, r.text
    got = until(api, resumed, lambda c: c["state"] == "finished")
    assert got["outcomes"] == {"satisfied": 2} and got["completed_tx"]
    rang = len([e for e in citizen.events() if e["event"] == "incoming"])
    r = api.post(f"{CAMPAIGNS}/{cancelled}/cancel", None, KS_TRANSPORT)
    assert r.status_code == 202, r.text
    got = until(api, cancelled, lambda c: c["state"] == "finished")
    assert got["outcomes"] == {"cancelled": 2} and got["status"] == "cancelled"
    assert got["completed_tx"]
    assert len([e for e in citizen.events() if e["event"] == "incoming"]) == rang
    problem(api.post(f"{CAMPAIGNS}/nosuch/resume", None, KS_TRANSPORT), 404, "name")
