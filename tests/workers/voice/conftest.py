"""Fixtures of the voice tests: a simulated citizen in a process of its own."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from workers.voice.sip import free_udp_port

# This suite's own ranges (SIP 5300-5400, RTP 40000-41000), away from the
# other suites that share the machine.
SIP_PORTS = range(5300, 5400)
RTP_BASE = 40000


def pick_sip_port() -> int:
    ports = list(SIP_PORTS)
    random.shuffle(ports)
    return free_udp_port(ports)


def rtp_base_for(sip_port: int) -> int:
    return RTP_BASE + (sip_port - SIP_PORTS.start) * 10


class CitizenProcess:
    def __init__(self, proc: subprocess.Popen[str], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def uri(self, number: str) -> str:
        return f"sip:{number}@127.0.0.1:{self.port}"

    def events(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(ln) for ln in self.log.read_text().splitlines() if ln]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_citizen(scenarios: dict[str, Any], workdir: Path) -> CitizenProcess:
    """A citizen process answering per ``scenarios``, once it listens."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec, log = workdir / "scenarios.json", workdir / "citizen.jsonl"
    spec.write_text(json.dumps(scenarios, ensure_ascii=False), encoding="utf-8")
    for _ in range(5):  # a port can be taken between the probe and the bind
        port = pick_sip_port()
        # the citizen's RTP ports: upper half of this port's slot of ten
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "workers.voice.citizen", "--port", str(port),
             "--rtp-port", str(rtp_base_for(port) + 500), "--scenarios", str(spec),
             "--log", str(log), "--max-seconds", "300"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 20
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "ready" or time.monotonic() > deadline:
                break
        if proc.poll() is None:
            # keep draining its output so that a full pipe never blocks it
            import threading
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return CitizenProcess(proc, port, log)
    raise RuntimeError("the simulated citizen did not start")


@pytest.fixture
def citizen_factory(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]],
                                                          CitizenProcess]]:
    started: list[CitizenProcess] = []

    def make(scenarios: dict[str, Any]) -> CitizenProcess:
        c = start_citizen(scenarios, tmp_path / f"citizen{len(started)}")
        started.append(c)
        return c

    yield make
    for c in started:
        c.stop()
