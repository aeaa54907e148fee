"""PJSIP (pjsua2) set-up shared by the robot and the simulated citizen.

Settings that hold on loopback (measured, see WORKER_NOTES): no sound device
(a null device clocks the conference bridge), no worker threads (our loop calls
``libHandleEvents`` so every callback runs in the thread that owns the calls),
SIP and RTP bound to one address, no ICE, and only PCMU/8000 offered (the
default Speex codec distorts in-band DTMF tones).
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pjsua2 as pj

HOST = "127.0.0.1"
CLOCK_RATE = 8000
FRAME_MS = 20
LATE_TICK_S = 0.06  # three frames' time


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
                 log_level: int = 0) -> None:
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


class AudioTap(pj.AudioMediaPort):  # type: ignore[misc]
    """Receives a call's audio. ``onFrameReceived`` runs on pjmedia's clock
    thread, so it only copies the frame to a queue; analysis happens in the
    loop that owns the call."""

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

    def drain(self) -> bytes:
        chunks = []
        while True:
            try:
                chunks.append(self.frames.get_nowait())
            except queue.Empty:
                return b"".join(chunks)


def tap_active_audio(call: Any, name: str) -> tuple[Any, AudioTap] | None:
    """In ``onCallMediaState``: the call's active audio and a tap receiving
    it, or None while no audio is active."""
    info = call.getInfo()  # held: its media vector dies with it (SWIG)
    for i, media in enumerate(info.media):
        if (media.type == pj.PJMEDIA_TYPE_AUDIO
                and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE):
            audio = call.getAudioMedia(i)
            tap = AudioTap(name)
            audio.startTransmit(tap)
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
