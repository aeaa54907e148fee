"""A simulated citizen: a SIP user agent in a process of its own that answers
the robot's calls and acts out a scenario chosen by the dialled number.

    python -m workers.voice.citizen --port 5310 --rtp-port 40600 \\
        --scenarios scenarios.json [--log calls.jsonl] \\
        [--jitter-buffer keep|adaptive]

``scenarios.json`` maps a number (the user part of the dialled URI) to a
scenario; ``"*"`` is the default. A scenario::

    {"answer": "yes" | "busy" | "never", "ring_s": 0.2, "keep_audio": false,
     "max_s": 20,
     "steps": [{"after_prompt": true}, {"dtmf": "1"}, {"tones": "2"},
               {"say": "我很满意"}, {"wait_s": 1.0}, {"hangup": true}]}

``dtmf`` sends RFC 4733 events, ``tones`` plays the keys in-band, ``say``
plays a recorded (synthesised) answer, ``after_prompt`` waits until the robot
has spoken and then been quiet for 0.8 s. After the steps the citizen stays on
the line, silent, until the robot hangs up. ``keep_audio`` saves what each
call heard as a WAV next to the log (for benchmarks); ``max_s`` hangs up that
long after answering (a robot that died never hangs up). ``--jitter-buffer``
picks how the phone buffers what it receives (``sip.JITTER_BUFFERS``: ours,
which keeps every frame, or pjsua's adaptive default). Prints ``ready`` once
it listens; stops on SIGTERM or SIGINT, hanging up and cleaning up first.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pjsua2 as pj

from workers.voice.dtmf import tones
from workers.voice.sip import (
    JITTER_BUFFER,
    JITTER_BUFFERS,
    AudioTap,
    JitterBuffer,
    Player,
    SipEndpoint,
    raise_priority,
    tap_active_audio,
)
from workers.voice.tts import PromptCache

QUIET_AFTER_PROMPT_S = 0.8
LOUD_RMS = 300.0


class CitizenCall(pj.Call):  # type: ignore[misc]
    def __init__(self, ua: Citizen, call_id: int) -> None:
        super().__init__(ua.sip.account, call_id)
        self.ua = ua
        info = self.getInfo()
        self.number = info.localUri.split("sip:", 1)[-1].split("@", 1)[0]
        self.scenario: dict[str, Any] = ua.scenarios.get(
            self.number, ua.scenarios.get("*", {}))
        self.steps: list[dict[str, Any]] = list(self.scenario.get("steps", []))
        self.answer_at: float | None = None
        self.hangup_at: float | None = None
        self.audio: Any = None
        self.tap: AudioTap | None = None
        self.player: Player | None = None
        self.heard_voice = False
        self.quiet_since: float | None = None
        self.step_started: float | None = None
        self.disconnected = False
        # What the citizen heard, kept when the scenario says so (benchmarks
        # compare it with the robot's prompt).
        self.heard: list[bytes] | None = [] if self.scenario.get("keep_audio") \
            else None
        self.stats: dict[str, float] = {}  # the receive side, for benchmarks
        self.stats_at = 0.0

    def onCallState(self, prm: Any) -> None:  # pjsua2 callback
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True
            self.ua.log(self.number, "disconnected", status=info.lastStatusCode)

    def onCallMediaState(self, prm: Any) -> None:  # pjsua2 callback
        if self.audio is None:
            tapped = tap_active_audio(self, f"ear-{self.number}")
            if tapped is not None:
                self.audio, self.tap = tapped

    def _answer(self, code: int) -> None:
        prm = pj.CallOpParam()
        prm.statusCode = code
        self.answer(prm)

    def start(self) -> None:
        mode = self.scenario.get("answer", "yes")
        self.ua.log(self.number, "incoming", mode=mode)
        if mode == "busy":
            self._answer(486)
            return
        self._answer(180)
        if mode == "yes":
            self.answer_at = time.monotonic() + float(self.scenario.get("ring_s", 0))

    def poll(self, now: float) -> None:
        if self.disconnected:
            return
        if self.answer_at is not None and now >= self.answer_at:
            self.answer_at = None
            self._answer(200)
            self.ua.log(self.number, "answered")
            if "max_s" in self.scenario:
                self.hangup_at = now + float(self.scenario["max_s"])
        if self.hangup_at is not None and now >= self.hangup_at:
            self.hangup_at = None
            self.ua.log(self.number, "max_s")
            with contextlib.suppress(pj.Error):
                self.hangup(pj.CallOpParam())
        if self.tap is None:
            return
        if self.heard is not None and now >= self.stats_at:
            self.stats_at = now + 0.5
            self.stats = stream_stats(self)
        pcm = self.tap.drain()
        if self.heard is not None and pcm:
            self.heard.append(pcm)
        if pcm:
            rms = float(np.sqrt(np.mean(np.frombuffer(pcm, "<i2").astype(
                np.float64) ** 2)))
            if rms > LOUD_RMS:
                self.heard_voice, self.quiet_since = True, None
            elif self.quiet_since is None:
                self.quiet_since = now
        if self.player is not None:
            if not self.player.done:
                return
            self.player.stopTransmit(self.audio)
            self.player = None
        if not self.steps:
            return
        step = self.steps[0]
        if self.step_started is None:
            self.step_started = now
        if "after_prompt" in step:
            if not (self.heard_voice and self.quiet_since is not None
                    and now - self.quiet_since >= QUIET_AFTER_PROMPT_S):
                return
            self.heard_voice = False  # the next after_prompt waits for new speech
        elif "wait_s" in step:
            if now - self.step_started < float(step["wait_s"]):
                return
        elif "dtmf" in step:
            self.dialDtmf(str(step["dtmf"]))  # RFC 4733 (pjsua's default method)
        elif "tones" in step:
            self._play(self.ua.tones_wav(str(step["tones"])))
        elif "say" in step:
            self._play(str(self.ua.prompts.path(str(step["say"]))))
        elif "hangup" in step:
            self.hangup(pj.CallOpParam())
        self.ua.log(self.number, "step", **step)
        self.steps.pop(0)
        self.step_started = None

    def _play(self, path: str) -> None:
        self.player = Player(path)
        self.player.startTransmit(self.audio)

    def release(self) -> None:
        if self.player is not None and self.audio is not None:
            with contextlib.suppress(pj.Error):
                self.player.stopTransmit(self.audio)
        if self.tap is not None and self.audio is not None:
            self.tap.detach(self.audio)  # a file tap flushes its last audio
        if self.tap is not None:
            rest = self.tap.drain()
            if self.heard is not None:
                self.heard.append(rest)
                self.ua.keep(self.number, b"".join(self.heard))
                self.ua.log(self.number, "stream", **self.stats, tap=self.tap.kind,
                            late_ticks=self.tap.late_ticks,
                            longest_gap_ms=round(self.tap.longest_gap_s * 1000, 1))
                self.heard = None
        self.player = self.tap = self.audio = None


def stream_stats(call: Any) -> dict[str, float]:
    """What the call's receive side saw so far: RTP packets, their loss and
    jitter, and the jitter buffer (frames discarded, played empty, lost)."""
    try:
        st = call.getStreamStat(0)
    except pj.Error:
        return {}
    rx, jb = st.rtcp.rxStat, st.jbuf
    return {"rx_pkt": rx.pkt, "rx_loss": rx.loss, "rx_discard": rx.discard,
            "rx_jitter_ms_max": rx.jitterUsec.max / 1000,
            "jb_discard": jb.discard, "jb_empty": jb.empty, "jb_lost": jb.lost,
            "jb_prefetch": jb.prefetch, "jb_delay_ms_avg": jb.avgDelayMsec,
            "jb_delay_ms_max": jb.maxDelayMsec}


class _Account(pj.Account):  # type: ignore[misc]
    def __init__(self, ua: Citizen) -> None:
        super().__init__()
        self.ua = ua

    def onIncomingCall(self, prm: Any) -> None:  # pjsua2 callback
        call = CitizenCall(self.ua, prm.callId)
        self.ua.calls.append(call)
        call.start()


class Citizen:
    def __init__(self, port: int, rtp_port: int, scenarios: dict[str, Any],
                 workdir: Path, log_path: Path | None = None,
                 jitter_buffer: JitterBuffer = JITTER_BUFFER) -> None:
        self.scenarios = scenarios
        self.workdir = workdir
        self.prompts = PromptCache(workdir / "answers")
        self.calls: list[CitizenCall] = []
        self._log = log_path.open("a", encoding="utf-8") if log_path else None
        self._tones: dict[str, str] = {}
        self._kept = 0
        self.sip = SipEndpoint("citizen", port, rtp_port, _Account(self),
                               jitter_buffer=jitter_buffer)

    def log(self, number: str, event: str, **data: Any) -> None:
        if self._log:
            self._log.write(json.dumps({"t": time.time(), "number": number,
                                        "event": event, **data},
                                       ensure_ascii=False) + "\n")
            self._log.flush()

    def keep(self, number: str, pcm: bytes) -> None:
        """Save what a call heard as ``<log dir>/<number>-<n>.wav``."""
        if self._log is None:
            return
        self._kept += 1
        path = Path(self._log.name).with_name(f"{number}-{self._kept}.wav")
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(pcm)
        self.log(number, "kept", path=str(path))

    def tones_wav(self, digits: str) -> str:
        if digits not in self._tones:
            path = self.workdir / f"tones-{len(self._tones)}.wav"
            with wave.open(str(path), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes(tones(digits, ms=120, gap_ms=100).tobytes())
            self._tones[digits] = str(path)
        return self._tones[digits]

    def step(self) -> None:
        self.sip.handle_events(10)
        now = time.monotonic()
        for call in list(self.calls):
            try:
                call.poll(now)
            except pj.Error as e:
                # One call's failure (a key sent on a call whose far end died
                # without a BYE) ends that call, not the citizen and every
                # other call it holds.
                self.log(call.number, "error", reason=e.info())
                call.steps.clear()
                with contextlib.suppress(pj.Error):
                    call.hangup(pj.CallOpParam())
            if call.disconnected:
                call.release()
                self.calls.remove(call)
        gc.collect(0)

    def close(self) -> None:
        for call in self.calls:
            call.release()
        self.calls.clear()
        gc.collect()
        self.sip.close()
        if self._log:
            self._log.close()


class CitizenProcess:
    """A citizen started by ``spawn_citizen``: its port, log and stop."""

    def __init__(self, proc: subprocess.Popen[str], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def uri(self, number: str) -> str:
        return f"sip:{number}@127.0.0.1:{self.port}"

    def events(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(ln) for ln in self.log.read_text().splitlines() if ln]

    def stop(self) -> None:
        """SIGTERM (it hangs up and cleans up), then SIGKILL after 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def spawn_citizen(scenarios: dict[str, Any], workdir: Path, port: int,
                  rtp_port: int, max_seconds: float = 300.0,
                  jitter_buffer: str = "keep") -> CitizenProcess:
    """Start a citizen process and return once it listens (or raise).
    ``jitter_buffer``: a name in ``sip.JITTER_BUFFERS``."""
    if jitter_buffer not in JITTER_BUFFERS:
        raise ValueError(f"jitter_buffer={jitter_buffer!r}: one of "
                         f"{', '.join(JITTER_BUFFERS)}")
    workdir.mkdir(parents=True, exist_ok=True)
    spec, log = workdir / "scenarios.json", workdir / "citizen.jsonl"
    spec.write_text(json.dumps(scenarios, ensure_ascii=False), encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "workers.voice.citizen", "--port", str(port),
         "--rtp-port", str(rtp_port), "--scenarios", str(spec), "--log", str(log),
         "--max-seconds", str(max_seconds), "--jitter-buffer", jitter_buffer],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    ready = threading.Event()

    def read(stream: Any) -> None:  # also keeps a full pipe from blocking it
        for line in stream:
            if line.strip() == "ready":
                ready.set()

    threading.Thread(target=read, args=(proc.stdout,), daemon=True).start()
    deadline = time.monotonic() + 20
    while not ready.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            CitizenProcess(proc, port, log).stop()
            raise RuntimeError(f"the simulated citizen on port {port} did not start")
    return CitizenProcess(proc, port, log)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workers.voice.citizen",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True, help="SIP UDP port")
    p.add_argument("--rtp-port", type=int, required=True, help="first RTP port")
    p.add_argument("--scenarios", type=Path, required=True)
    p.add_argument("--log", type=Path)
    p.add_argument("--max-seconds", type=float, default=600.0,
                   help="stop by itself after this long (default 600)")
    p.add_argument("--jitter-buffer", choices=JITTER_BUFFERS, default="keep",
                   help="how the phone buffers received audio: keep (every "
                        "frame; the default) or adaptive (pjsua's default)")
    args = p.parse_args(argv)
    scenarios = json.loads(args.scenarios.read_text(encoding="utf-8"))
    stop = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # It stands in for a phone on a machine of its own: what loads this one
    # should delay it no more than it delays the robot's call workers.
    raise_priority()
    with tempfile.TemporaryDirectory(prefix="citizen-") as tmp:
        ua = Citizen(args.port, args.rtp_port, scenarios, Path(tmp), args.log,
                     JITTER_BUFFERS[args.jitter_buffer])
        print("ready", flush=True)
        end = time.monotonic() + args.max_seconds
        try:
            while not stop and time.monotonic() < end:
                ua.step()
        finally:
            ua.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
