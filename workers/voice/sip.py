"""PJSIP (pjsua2) set-up shared by the robot and the simulated citizen.

Settings that hold on loopback (measured, see WORKER_NOTES): no sound device
(a null device clocks the conference bridge), no worker threads (our loop calls
``libHandleEvents`` so every callback runs in the thread that owns the calls),
SIP and RTP bound to one address, no ICE, only PCMU/8000 offered (the
default Speex codec distorts in-band DTMF tones), and a jitter buffer that
never throws received audio away (``JITTER_BUFFER``).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import queue
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

import pjsua2 as pj

HOST = "127.0.0.1"
CLOCK_RATE = 8000
FRAME_MS = 20
LATE_TICK_S = 0.06  # three frames' time


@dataclass(frozen=True)
class JitterBuffer:
    """How a call's receive side buffers RTP (pjmedia's jitter buffer, ms).

    pjsua's default adapts its delay down to the arrival burst and, to get
    there, discards frames now and then ("progressive" discard): 10 ms of
    speech each time, in the middle of a word. On loopback its delay shrinks
    to one packet, so a late tick of the sender's clock leaves it empty, it
    refills to a larger delay, and the discard then cuts speech to shrink
    back: those were the drop-outs ``bench.voice`` counted (all the calls of
    one robot process lost 10 ms at the same moment). ``discard=False``
    keeps every frame (the delay shrinks again only in a pause, when RTP
    stops); a 40 ms floor rides out the sender's late ticks.
    """

    init_ms: int = 40
    min_prefetch_ms: int = 40
    max_prefetch_ms: int = 200
    capacity_ms: int = 500
    discard: bool = False


JITTER_BUFFER = JitterBuffer()
# By name, for the simulated citizen and the benchmark: ours, and pjsua's own
# default (-1: pjmedia picks; adaptive, progressive discard) to compare with.
JITTER_BUFFERS = {"keep": JITTER_BUFFER,
                  "adaptive": JitterBuffer(-1, -1, -1, -1, discard=True)}
# pjmedia_jb_discard_algo: PJMEDIA_JB_DISCARD_NONE, _PROGRESSIVE.
_DISCARD_NONE, _DISCARD_PROGRESSIVE = 0, 2


# Calls are real time; the work they share machines with (video analytics, a
# build) is not. A process that carries calls asks the kernel to run it first:
# with two busy loops on the two cores, call set-up p99 was 190-560 ms at equal
# niceness and 7-27 ms with this (bench.voice --calls 20 --busy 2).
MEDIA_NICE = -10
_log = logging.getLogger(__name__)


def raise_priority(nice: int = MEDIA_NICE) -> int:
    """Run this thread, and the threads it starts from now on (pjmedia's
    clock among them), at niceness ``nice`` where the process may (root, or
    CAP_SYS_NICE); returns the niceness it runs at. Call it before the SIP
    endpoint is made, in a process that does nothing but calls (on Linux
    ``setpriority`` on pid 0 sets the calling thread only)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except PermissionError:
        _log.warning("calls run at normal priority (niceness %d needs root or "
                     "CAP_SYS_NICE): other work on this machine can delay "
                     "their audio", nice)
    return os.getpriority(os.PRIO_PROCESS, 0)


def _set_jitter_buffer(med: Any, jb: JitterBuffer) -> None:
    med.jbInit, med.jbMinPre = jb.init_ms, jb.min_prefetch_ms
    med.jbMaxPre, med.jbMax = jb.max_prefetch_ms, jb.capacity_ms
    # The wheel's SWIG wrapper takes the discard algorithm only as a pointer
    # to the C enum, and has no constructor for one: write the value through
    # the pointer its getter returns, then set that. The getter's copy has no
    # destructor either: disowned, its 4 bytes stay allocated, unwarned.
    algo = med.jbDiscardAlgo
    algo.disown()
    ctypes.c_int.from_address(int(algo)).value = (
        _DISCARD_PROGRESSIVE if jb.discard else _DISCARD_NONE)
    med.jbDiscardAlgo = algo


def free_udp_port(candidates: Iterable[int]) -> int:
    """The first of ``candidates`` no process has bound on ``HOST`` (UDP)."""
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    raise OSError("no free UDP port among the candidates")


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """File descriptor 1 to /dev/null for a while (C code writes there; a
    command's stdout is for its result)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class SipEndpoint:
    """One pjsua2 library instance with a UDP transport and one account.

    ``account_factory`` makes the ``pj.Account`` subclass (the citizen's
    answers incoming calls). Call ``close`` once every ``pj.Call`` is deleted.
    """

    def __init__(self, user: str, sip_port: int, rtp_port: int,
                 account: pj.Account, max_calls: int = 4,
                 log_level: int = 0,
                 jitter_buffer: JitterBuffer = JITTER_BUFFER) -> None:
        self.ep = pj.Endpoint()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = max_calls
        cfg.uaConfig.userAgent = f"cityunion-{user}"
        cfg.logConfig.level = log_level
        cfg.logConfig.consoleLevel = log_level
        cfg.medConfig.clockRate = CLOCK_RATE
        cfg.medConfig.sndClockRate = CLOCK_RATE
        cfg.medConfig.channelCount = 1
        cfg.medConfig.audioFramePtime = FRAME_MS
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        cfg.medConfig.maxMediaPorts = max(254, 4 * max_calls + 8)
        _set_jitter_buffer(cfg.medConfig, jitter_buffer)
        with _quiet_stdout():  # pjlib logs its start-up before any setting holds
            self.ep.libCreate()
            self.ep.libInit(cfg)
        tcfg = pj.TransportConfig()
        tcfg.port = sip_port
        tcfg.boundAddress = HOST
        tcfg.publicAddress = HOST
        self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        self.ep.libStart()
        self.ep.audDevManager().setNullDev()
        for codec in self.ep.codecEnum2():
            self.ep.codecSetPriority(codec.codecId, 0)
        self.ep.codecSetPriority("PCMU/8000", 255)
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{user}@{HOST}:{sip_port}"
        mt = acfg.mediaConfig.transportConfig
        mt.port = rtp_port
        mt.portRange = 1000
        mt.boundAddress = HOST
        mt.publicAddress = HOST
        acfg.natConfig.iceEnabled = False
        acfg.natConfig.sdpNatRewriteUse = 0
        acfg.natConfig.contactRewriteUse = 0
        acfg.natConfig.viaRewriteUse = 0
        self.account = account
        self.account.create(acfg)
        self.sip_port = sip_port

    def handle_events(self, ms: int = 10) -> None:
        self.ep.libHandleEvents(ms)

    def close(self) -> None:
        """Hang up whatever is left and destroy the library. Every ``pj.Call``
        must be deleted before (pjsua asserts at exit otherwise)."""
        try:
            self.ep.hangupAllCalls()
            for _ in range(20):
                self.ep.libHandleEvents(10)
        finally:
            self.account.shutdown()
            del self.account
            gc.collect()
            self.ep.libDestroy()


def pcm_format() -> Any:
    fmt = pj.MediaFormatAudio()
    fmt.init(pj.PJMEDIA_FORMAT_PCM, CLOCK_RATE, 1, FRAME_MS * 1000, 16)
    return fmt


# How a call's received audio reaches Python (``CITYUNION_VOICE_TAP``):
# "file" (the default): a pjsua recorder, all C, writes it to a WAV file that
#   ``drain`` reads as it grows; nothing of Python runs on pjmedia's clock
#   thread, so a busy interpreter (the GIL) cannot stall the conference bridge
#   and with it every call's transmission. The price is latency: the recorder
#   flushes 4 KiB at a time, so audio arrives 0.25-0.5 s late.
# "port": an ``AudioMediaPort`` whose Python callback runs on the clock thread
#   every 20 ms (no added latency; measures late clock ticks).
TAP_ENV = "CITYUNION_VOICE_TAP"
# Where the recorder's files go: memory (tmpfs) where there is one, so the
# clock thread's writes never wait on a disk's writeback (the file is
# unlinked at once; a 20 s call holds 320 KiB until it ends).
TAP_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None
TAP_KINDS = ("file", "port")


def tap_kind() -> str:
    kind = os.environ.get(TAP_ENV, "file")
    if kind not in TAP_KINDS:
        raise ValueError(f"{TAP_ENV}={kind!r}: one of {', '.join(TAP_KINDS)}")
    return kind


class PortTap(pj.AudioMediaPort):  # type: ignore[misc]
    """Receives a call's audio. ``onFrameReceived`` runs on pjmedia's clock
    thread, so it only copies the frame to a queue; analysis happens in the
    loop that owns the call."""

    kind = "port"

    def __init__(self, name: str) -> None:
        super().__init__()
        self.frames: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self.createPort(name, pcm_format())
        # How steadily the clock thread ticked (bench.voice reports it): frames
        # that came LATE_TICK_S or more after the one before, the longest gap.
        self.late_ticks = 0
        self.longest_gap_s = 0.0
        self._last = 0.0

    def onFrameReceived(self, frame: Any) -> None:  # pjsua2 callback
        now = time.monotonic()
        if self._last:
            gap = now - self._last
            self.late_ticks += gap >= LATE_TICK_S
            self.longest_gap_s = max(self.longest_gap_s, gap)
        self._last = now
        if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO:
            self.frames.put(bytes(frame.buf))

    def attach(self, audio: Any) -> None:
        audio.startTransmit(self)

    def detach(self, audio: Any) -> None:
        with contextlib.suppress(pj.Error):  # the call's media is already gone
            audio.stopTransmit(self)

    def drain(self) -> bytes:
        chunks = []
        while True:
            try:
                chunks.append(self.frames.get_nowait())
            except queue.Empty:
                return b"".join(chunks)


class FileTap:
    """Receives a call's audio through a pjsua WAV recorder (no Python on the
    clock thread); ``drain`` returns what the file gained since, in whole
    20 ms frames. The file is unlinked as soon as both ends have it open (no
    file is left behind, even by a killed process). ``detach`` destroys the
    recorder, which flushes, so a last ``drain`` gets the rest."""

    kind = "file"
    late_ticks = 0  # not measured: no callback sees the clock
    longest_gap_s = 0.0

    def __init__(self, name: str) -> None:
        fd, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".wav", dir=TAP_DIR)
        os.close(fd)
        try:
            self.recorder: Any = pj.AudioMediaRecorder()
            self.recorder.createRecorder(path)
            self._file = open(path, "rb")  # noqa: SIM115 (closed by drain)
        finally:
            os.unlink(path)
        self._header = True
        self._pending = b""

    def attach(self, audio: Any) -> None:
        audio.startTransmit(self.recorder)

    def detach(self, audio: Any) -> None:
        if self.recorder is None:
            return
        with contextlib.suppress(pj.Error):
            audio.stopTransmit(self.recorder)
        self.recorder = None  # destroyed: the rest of the audio is flushed

    def drain(self) -> bytes:
        if self._file.closed:
            return b""
        data = self._pending + self._file.read()
        done = self.recorder is None
        if done:
            self._file.close()
        if self._header:
            if len(data) < WAV_HEADER:
                self._pending = data
                return b""
            data, self._header = data[WAV_HEADER:], False
        if done:
            self._pending = b""
            return data
        whole = len(data) - len(data) % (2 * FRAME_SAMPLES)
        self._pending = data[whole:]
        return data[:whole]


AudioTap: TypeAlias = PortTap | FileTap
WAV_HEADER = 44  # pjmedia's WAV writer: RIFF, fmt (16 bytes), data
FRAME_SAMPLES = CLOCK_RATE * FRAME_MS // 1000


def tap_active_audio(call: Any, name: str) -> tuple[Any, AudioTap] | None:
    """In ``onCallMediaState``: the call's active audio and a tap receiving
    it (of ``tap_kind()``), or None while no audio is active."""
    info = call.getInfo()  # held: its media vector dies with it (SWIG)
    for i, media in enumerate(info.media):
        if (media.type == pj.PJMEDIA_TYPE_AUDIO
                and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE):
            audio = call.getAudioMedia(i)
            tap: AudioTap = FileTap(name) if tap_kind() == "file" else PortTap(name)
            tap.attach(audio)
            return audio, tap
    return None


class Player(pj.AudioMediaPlayer):  # type: ignore[misc]
    """A WAV file played once into a call; ``done`` turns true at its end
    (set in the callback; the owner reacts in its own loop)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.done = False
        self.createPlayer(path, pj.PJMEDIA_FILE_NO_LOOP)

    def onEof2(self) -> None:  # pjsua2 callback
        self.done = True
