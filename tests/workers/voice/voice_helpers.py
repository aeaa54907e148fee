"""What the voice tests share: the example template, signal generators, SIP
ports of this suite's own and the simulated citizen. (Not in conftest.py: test
modules import these, and a flat ``conftest`` name clashes with tests/.)"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from workers.voice.citizen import CitizenProcess, spawn_citizen
from workers.voice.sip import MEDIA_NICE, free_udp_port
from workers.voice.template import Template, load_template

ROOT = Path(__file__).resolve().parents[3]
BUS_SURVEY = ROOT / "workers" / "voice" / "templates" / "bus_survey.yaml"


def bus_survey() -> Template:
    return load_template(BUS_SURVEY)


def mu_law(x: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """Through a G.711 μ-law channel and back (8-bit companded quantisation)."""
    mu = 255.0
    v = x.astype(np.float64) / 32768.0
    y = np.sign(v) * np.log1p(mu * np.abs(v)) / np.log1p(mu)
    q = np.round(y * 127.0) / 127.0
    out = np.sign(q) * np.expm1(np.abs(q) * np.log1p(mu)) / mu
    return np.clip(out * 32768.0, -32768, 32767).astype(np.int16)


def with_noise(x: npt.NDArray[np.int16], snr_db: float,
               rng: np.random.Generator) -> npt.NDArray[np.int16]:
    """White noise added at ``snr_db`` relative to the signal's mean power."""
    sig = x.astype(np.float64)
    power = np.mean(sig[sig != 0] ** 2)
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), len(sig))
    return np.clip(sig + noise, -32768, 32767).astype(np.int16)


def vowel_like(seconds: float, rng: np.random.Generator) -> npt.NDArray[np.int16]:
    """Speech-like audio: glottal pulse trains with gliding pitch (90-300 Hz)
    through changing formants, syllables of 120-300 ms with short pauses. Rich
    in harmonics that fall on DTMF frequencies, the usual cause of talk-off."""
    rate, out = 8000, list[npt.NDArray[np.float64]]()
    total = int(seconds * rate)
    while sum(p.size for p in out) < total:
        n = int(rng.uniform(0.12, 0.30) * rate)
        f0 = np.linspace(rng.uniform(90, 300), rng.uniform(90, 300), n)
        phase = np.cumsum(2 * np.pi * f0 / rate)
        src = np.zeros(n)
        for h in range(1, 30):  # harmonics up to the 4 kHz band edge
            amp = 1.0 / h
            src += amp * np.sin(h * phase) * (h * f0 < 3900)
        # Two formants as resonant gains on the harmonic series.
        spectrum = np.fft.rfft(src)
        freqs = np.fft.rfftfreq(n, 1 / rate)
        gain = np.zeros_like(freqs)
        for fc, bw in ((rng.uniform(300, 900), 120), (rng.uniform(900, 2500), 200)):
            gain += 1.0 / (1.0 + ((freqs - fc) / bw) ** 2)
        syl = np.fft.irfft(spectrum * gain, n)
        syl *= np.hanning(n) * (8000.0 / (np.max(np.abs(syl)) + 1e-9))
        out += [syl, np.zeros(int(rng.uniform(0.03, 0.12) * rate))]
    return np.concatenate(out)[:total].astype(np.int16)


# This suite's own ranges (SIP 5300-5400, RTP 40000-41000), away from the
# other suites that share the machine; each SIP port has a slot of ten RTP
# ports in the lower half (robot) and one in the upper half (citizen); pjsua
# moves on to the next free port when one is taken.
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


def start_citizen(scenarios: dict[str, Any], workdir: Path,
                  jitter_buffer: str = "keep") -> CitizenProcess:
    """A citizen process answering per ``scenarios``, once it listens."""
    for attempt in range(5):  # a port can be taken between probe and bind
        port = pick_sip_port()
        try:
            return spawn_citizen(scenarios, workdir / f"try{attempt}", port,
                                 40500 + (rtp_base_for(port) - RTP_BASE) % 500,
                                 jitter_buffer=jitter_buffer)
        except RuntimeError:
            continue
    raise RuntimeError("the simulated citizen did not start")


def register_transport(data: Path) -> None:
    """An embedded ledger in ``data`` where Kunshan's transport department is
    registered, so its identity may start campaigns."""
    from ledger.connect import connect

    conn = connect("embedded", data_dir=data)
    try:
        conn.client("Kunshan", "admin").submit("RegisterDepartment", {
            "code": "transport", "name": "Transport", "duties": ["transport"]})
    finally:
        conn.close()


# Root (as in CI) may raise it; anyone else keeps the niceness they inherit.
EXPECTED_NICE = MEDIA_NICE if os.geteuid() == 0 else os.getpriority(os.PRIO_PROCESS, 0)
PJSUA_THREADS = {"media", "clock", "ev_thread"}


def pjsua_thread_niceness(pid: int) -> set[int]:
    """The niceness of ``pid``'s pjsua threads (its media clock, which always
    runs, and its media and event threads, which run while it has calls);
    empty if it has no media clock."""
    out: dict[str, set[int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        name = (task / "comm").read_text().strip()
        if name in PJSUA_THREADS:
            # stat: "pid (comm) state ..."; niceness is field 19.
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out.setdefault(name, set()).add(int(fields[16]))
    return set().union(*out.values()) if "clock" in out else set()
