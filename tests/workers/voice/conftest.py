"""Fixtures of the voice tests: a simulated citizen in a process of its own."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from workers.voice.citizen import CitizenProcess, spawn_citizen
from workers.voice.sip import free_udp_port

# This suite's own ranges (SIP 5300-5400, RTP 40000-41000), away from the
# other suites that share the machine; each SIP port has a slot of ten RTP
# ports (robot: lower half, citizen: upper half of its slot + 500).
SIP_PORTS = range(5300, 5400)
RTP_BASE = 40000


def pick_sip_port(count: int = 1) -> int:
    """A free port whose next ``count - 1`` ports are free too (Ray call
    workers take consecutive ports)."""
    ports = list(SIP_PORTS)[:len(SIP_PORTS) - count + 1]
    random.shuffle(ports)
    for port in ports:
        try:
            if all(free_udp_port([p]) == p for p in range(port, port + count)):
                return port
        except OSError:
            continue
    raise OSError("no free SIP ports")


def rtp_base_for(sip_port: int) -> int:
    return RTP_BASE + (sip_port - SIP_PORTS.start) * 10


def start_citizen(scenarios: dict[str, Any], workdir: Path) -> CitizenProcess:
    """A citizen process answering per ``scenarios``, once it listens."""
    for attempt in range(5):  # a port can be taken between probe and bind
        port = pick_sip_port()
        try:
            return spawn_citizen(scenarios, workdir / f"try{attempt}", port,
                                 rtp_base_for(port) + 500)
        except RuntimeError:
            continue
    raise RuntimeError("the simulated citizen did not start")
