"""The robot's call engine: one SIP endpoint placing N concurrent outbound
calls, each following the template's script (``Dialog``).

Everything runs in the thread that calls ``step`` (pjsua2 callbacks included);
pjmedia's own threads (clock, RTP) only move audio, and hand what a call
receives through a tap (``AudioTap``: a recorder's file, or a queue). Each
call reads RFC 4733 digits (``onDtmfDigit``) and in-band tones
(``DtmfDetector``) alike, hears speech by its energy and hands the utterance
to the recogniser, and keeps its own deadlines: ring timeout (pjsip ignores
ICMP, so an absent phone would otherwise ring for 32 s), listen timeout,
longest call.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pjsua2 as pj

from workers.voice.asr import Recogniser
from workers.voice.dialog import Dialog, IntentMatcher, Line, Turn
from workers.voice.dtmf import DtmfDetector
from workers.voice.recordings import RecordingStore
from workers.voice.sip import AudioTap, Player, SipEndpoint, tap_active_audio
from workers.voice.template import Template
from workers.voice.tts import PromptCache

# pjsua's compile-time call limit in the pjsua2-python wheel (PJSUA_MAX_CALLS,
# 4 since PJSIP 2.11): one endpoint, so one process, holds at most 4 calls;
# more concurrency means more processes (the campaign's call workers).
PJSUA_MAX_CALLS = 4
# pjlib's select ioqueue holds at most 64 sockets (compiled into the wheel) and
# reuses a closed one's slot only 500 ms later (PJ_IOQUEUE_KEY_FREE_DELAY); each
# call opens two (RTP, RTCP). Calls that end at once (busy) could exhaust it,
# which aborts the process (an assertion in pj_ioqueue_register_sock2): start at
# most this many calls in any half second.
CALL_STARTS_PER_HALF_SECOND = 16
PJ_ETOOMANY = 70010
SPEECH_RMS = 500.0  # about -36 dBFS: louder 20 ms frames count as voice
SPEECH_MIN_MS = 200  # shorter bursts are clicks or noise
SPEECH_END_MS = 600  # this much quiet ends an utterance


@dataclass
class CallResult:
    key: str  # the caller's id for this call (a contact id; never on chain)
    uri: str  # holds the number: stays with the caller, never in records
    outcome: str
    sip_status: int = 0
    answered: bool = False
    setup_ms: float | None = None  # INVITE sent to call confirmed
    duration_s: float = 0.0
    answers: dict[str, str] = field(default_factory=dict)
    transcript: list[Line] = field(default_factory=list)
    digits: str = ""
    recording_sm3: str | None = None  # what the citizen said, stored off chain


class RobotCall(pj.Call):  # type: ignore[misc]
    """One outbound call. pjsua2 calls the ``on*`` methods from ``step``."""

    def __init__(self, engine: CallEngine, key: str, uri: str) -> None:
        super().__init__(engine.sip.account)
        self.engine, self.key, self.uri = engine, key, uri
        self.dialog = Dialog(engine.template, engine.matcher)
        self.dialed_at = time.monotonic()
        self.ring_deadline = self.dialed_at + engine.ring_timeout_s
        self.end_deadline = self.dialed_at + engine.template.max_call_s
        self.confirmed_at: float | None = None
        self.listen_deadline: float | None = None
        self.listen_s: float | None = None
        self.queue: list[str] = []
        self.player: Player | None = None
        self.tap: AudioTap | None = None
        self.audio: Any = None
        self.detector = DtmfDetector()
        self.voice_ms = self.quiet_ms = 0
        self.utterance: list[bytes] = []
        self.outcome: str | None = None
        self.disconnected = False
        self.hanging_up = False
        self.status = 0
        self.digits = ""
        self.recorded: list[bytes] | None = [] if engine.recordings else None

    # ---------------------------------------------------------- pjsua2 side
    def onCallState(self, prm: Any) -> None:  # pjsua2 callback
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.confirmed_at is None:
            self.confirmed_at = time.monotonic()
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.status = int(info.lastStatusCode)
            self.disconnected = True

    def onCallMediaState(self, prm: Any) -> None:  # pjsua2 callback
        if self.audio is None:
            tapped = tap_active_audio(self, f"tap-{self.key}")
            if tapped is not None:
                self.audio, self.tap = tapped
                self._turn(self.dialog.start())

    def onDtmfDigit(self, prm: Any) -> None:  # pjsua2 callback
        self._digit(str(prm.digit))

    # --------------------------------------------------------- the script
    def _turn(self, turn: Turn | None) -> None:
        if turn is None:
            return
        self._stop_player()
        self.queue = [str(self.engine.prompts.path(t)) for t in turn.say]
        self.listen_s = turn.listen_s
        self.listen_deadline = None
        self.voice_ms = self.quiet_ms = 0
        self.utterance = []
        if turn.outcome:
            self.outcome = turn.outcome
        self._next_prompt()

    def _next_prompt(self) -> None:
        self._stop_player()
        if self.queue:
            self.player = Player(self.queue.pop(0))
            self.player.startTransmit(self.audio)
        elif self.outcome is not None:
            self._hang_up()
        elif self.listen_s is not None:
            self.listen_deadline = time.monotonic() + self.listen_s

    def _stop_player(self) -> None:
        if self.player is not None:
            with contextlib.suppress(pj.Error):  # the call's media is already gone
                self.player.stopTransmit(self.audio)
            self.player = None

    def _digit(self, d: str) -> None:
        self.digits += d
        if self.dialog.listening:
            self._turn(self.dialog.digit(d))  # barge-in: a key stops the prompt

    def _hang_up(self) -> None:
        if not self.disconnected and not self.hanging_up:
            self.hanging_up = True
            with contextlib.suppress(pj.Error):  # already on its way down
                self.hangup(pj.CallOpParam())

    # ------------------------------------------------------ the engine loop
    def poll(self, now: float) -> None:
        """Advance: prompt ends, received audio, deadlines."""
        if self.disconnected:
            return
        if self.confirmed_at is None:
            if now > self.ring_deadline:
                self.outcome = "no_answer"
                self._hang_up()
            return
        if now > self.end_deadline:  # the longest call, whatever it waits for
            if self.outcome is None:
                self.outcome = self.dialog.outcome or "failed"
            self._hang_up()
            return
        if self.player is not None and self.player.done:
            self._next_prompt()
        if self.tap is not None:
            self._hear(self.tap.drain())
        if (self.listen_deadline is not None and now > self.listen_deadline
                and not self.utterance):
            self._turn(self.dialog.silence())

    def _hear(self, pcm: bytes) -> None:
        if not pcm:
            return
        if self.recorded is not None:
            self.recorded.append(pcm)
        for d in self.detector.feed(pcm):
            self._digit(d)
            self.utterance, self.voice_ms = [], 0  # tones are not speech
        if not self.dialog.listening or self.player is not None:
            return
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        frame = 160
        for i in range(0, len(samples) - frame + 1, frame):
            loud = float(np.sqrt(np.mean(samples[i:i + frame] ** 2))) > SPEECH_RMS
            if loud:
                self.voice_ms += 20
                self.quiet_ms = 0
                self.utterance.append(pcm[2 * i:2 * (i + frame)])
            elif self.utterance:
                self.quiet_ms += 20
                self.utterance.append(pcm[2 * i:2 * (i + frame)])
                if self.quiet_ms >= SPEECH_END_MS:
                    self._utterance_ended()
                    return

    def _utterance_ended(self) -> None:
        audio, voiced = b"".join(self.utterance), self.voice_ms
        self.utterance, self.voice_ms, self.quiet_ms = [], 0, 0
        if voiced < SPEECH_MIN_MS:
            return
        text = self.engine.recogniser.transcribe(audio) if self.engine.recogniser \
            else ""
        self._turn(self.dialog.speech(text))

    def result(self) -> CallResult:
        answered = self.confirmed_at is not None
        if self.outcome is None:
            if not answered:
                self.outcome = ("busy" if self.status in (486, 600, 603)
                                else "no_answer" if self.status in (408, 480, 487)
                                else "failed")
            else:
                self.outcome = self.dialog.hung_up()
        end = time.monotonic()
        recording = None
        if self.recorded and self.engine.recordings is not None:
            recording = self.engine.recordings.put(b"".join(self.recorded))
        return CallResult(
            key=self.key, uri=self.uri, outcome=self.outcome, sip_status=self.status,
            answered=answered,
            setup_ms=(self.confirmed_at - self.dialed_at) * 1000 if answered
            and self.confirmed_at else None,
            duration_s=end - (self.confirmed_at or end),
            answers=dict(self.dialog.answers), transcript=list(self.dialog.transcript),
            digits=self.digits, recording_sm3=recording)

    def release(self) -> None:
        self._stop_player()
        if self.tap is not None and self.audio is not None:
            self.tap.detach(self.audio)
            self.tap.drain()  # a file tap removes its file
        self.tap = None
        self.audio = None


class LinesBusy(Exception):
    """Every call slot of the endpoint is taken; dial again later."""


class _Account(pj.Account):  # type: ignore[misc]
    pass


class CallEngine:
    """Places calls and runs their scripts. Not thread-safe: one thread calls
    ``dial``, ``step`` and ``close``."""

    def __init__(self, template: Template, prompts: PromptCache, sip_port: int,
                 rtp_port: int, recogniser: Recogniser | None = None,
                 matcher: IntentMatcher | None = None,
                 ring_timeout_s: float | None = None,
                 max_calls: int = PJSUA_MAX_CALLS,
                 recordings: RecordingStore | None = None) -> None:
        """``recordings``: where calls are recorded, if the template asks for
        it (``record_audio``)."""
        self.template, self.prompts = template, prompts
        self.recordings = recordings if template.record_audio else None
        self.recogniser, self.matcher = recogniser, matcher
        self.ring_timeout_s = ring_timeout_s or template.ring_timeout_s
        for text in template.prompts():  # synthesise before the first call
            prompts.path(text)
        self.max_calls = min(max_calls, PJSUA_MAX_CALLS)
        self.sip = SipEndpoint("robot", sip_port, rtp_port, _Account(),
                               max_calls=self.max_calls)
        self.calls: dict[str, RobotCall] = {}
        self._starts: collections.deque[float] = collections.deque()

    @property
    def active(self) -> int:
        return len(self.calls)

    def dial(self, key: str, uri: str) -> CallResult | None:
        """Start a call; a result at once only if it could not be placed.
        Raises ``LinesBusy`` while pjsua still holds every call slot (it frees
        a slot a little after the call's DISCONNECTED event), or when calls
        start faster than pjlib frees their sockets."""
        if key in self.calls:
            raise ValueError(f"call {key} is already in progress")
        now = time.monotonic()
        while self._starts and now - self._starts[0] > 0.5:
            self._starts.popleft()
        if len(self._starts) >= CALL_STARTS_PER_HALF_SECOND:
            raise LinesBusy(key)  # sockets still closing: see the constant
        self._starts.append(now)
        call = RobotCall(self, key, uri)
        try:
            call.makeCall(uri, pj.CallOpParam(True))
        except pj.Error as e:
            del call
            if e.status == PJ_ETOOMANY:
                raise LinesBusy(key) from None
            return CallResult(key, uri, "failed", sip_status=int(e.status))
        self.calls[key] = call
        return None

    def step(self, ms: int = 10) -> list[CallResult]:
        """Handle SIP and media events for up to ``ms`` and advance every call;
        returns the calls that ended."""
        self.sip.handle_events(ms)
        now = time.monotonic()
        done = []
        for key, call in list(self.calls.items()):
            call.poll(now)
            if call.disconnected:
                done.append(call.result())
                call.release()
                del self.calls[key]
        if done:
            gc.collect()  # a finished pj.Call must really be gone (see close)
        return done

    def run(self, dials: Iterable[tuple[str, str]], concurrency: int,
            on_result: Callable[[CallResult], None] | None = None,
            timeout_s: float = 600.0) -> list[CallResult]:
        """Call every (key, uri), at most ``concurrency`` at a time."""
        pending, results = list(dials), []
        deadline = time.monotonic() + timeout_s
        while pending or self.calls:
            while pending and self.active < min(concurrency, self.max_calls):
                key, uri = pending[0]
                try:
                    failed = self.dial(key, uri)
                except LinesBusy:
                    break  # try again after the next step
                pending.pop(0)
                if failed:
                    results.append(failed)
                    if on_result:
                        on_result(failed)
            for r in self.step():
                results.append(r)
                if on_result:
                    on_result(r)
            if time.monotonic() > deadline:
                raise TimeoutError(f"calls still running after {timeout_s:.0f} s: "
                                   f"{', '.join(self.calls)}")
        return results

    def close(self) -> None:
        """Hang up, delete every call, then destroy the library."""
        for call in self.calls.values():
            call._hang_up()
        for _ in range(50):
            if not self.calls:
                break
            self.step(10)
        for call in self.calls.values():
            call.release()
        self.calls.clear()
        gc.collect()
        self.sip.close()
