"""Recordings off chain: SM4-encrypted, named by SM3, checked on read; a call
of a template with ``record_audio`` stores what the citizen sent."""

from __future__ import annotations

import stat
import wave
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from voice_helpers import pick_sip_port, rtp_base_for, start_citizen

from chaincode.encoding import sm3_hex
from ledger.crypto.errors import CryptoError
from workers.voice.dialers import EngineSpec, LocalDialer
from workers.voice.dtmf import detect, tones
from workers.voice.recordings import RecordingStore, load_or_make_key
from workers.voice.robot import CallResult
from workers.voice.template import parse_template
from workers.voice.tts import missing_tools

QUICK = Path(__file__).with_name("quick_survey.yaml")


def _pcm(wav: bytes) -> bytes:
    with wave.open(BytesIO(wav)) as w:
        return w.readframes(w.getnframes())


def test_encrypted_round_trip_and_tamper(tmp_path: Path) -> None:
    key = load_or_make_key(tmp_path / "k")
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert load_or_make_key(tmp_path / "k") == key
    store = RecordingStore(tmp_path / "rec", key)
    pcm = tones("123", ms=100).tobytes()
    digest = store.put(pcm)
    path = tmp_path / "rec" / f"{digest}.wav.sm4"
    blob = path.read_bytes()
    assert sm3_hex(blob) == digest
    assert pcm[1000:1064] not in blob and b"RIFF" not in blob
    assert _pcm(store.get(digest)) == pcm
    path.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(ValueError, match="does not match its SM3"):
        store.get(digest)
    other = RecordingStore(tmp_path / "rec", bytes(16))
    path.write_bytes(blob)
    with pytest.raises(CryptoError, match="wrong key"):
        other.get(digest)


def test_clear_store_when_not_encrypted(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path, None)
    digest = store.put(b"\x01\x00" * 800)
    assert (tmp_path / f"{digest}.wav").read_bytes()[:4] == b"RIFF"


@pytest.mark.skipif(bool(missing_tools()), reason="needs espeak-ng and sox")
def test_call_is_recorded_encrypted(tmp_path: Path) -> None:
    template = parse_template(QUICK.read_text(encoding="utf-8").replace(
        "max_call_s: 40", "max_call_s: 40\nrecord_audio: true"))
    citizen = start_citizen({"*": {"steps": [{"after_prompt": True},
                                             {"tones": "2"}]}}, tmp_path / "c")
    key = load_or_make_key(tmp_path / "key")
    port = pick_sip_port()
    try:
        dialer = LocalDialer(EngineSpec(template, str(tmp_path / "prompts"), port,
                                        rtp_base_for(port),
                                        recording_dir=str(tmp_path / "rec"),
                                        recording_key=key.hex()))
        results: list[CallResult] = []
        try:
            dialer.dial("r1", citizen.uri("1"))
            for _ in range(400):
                results += dialer.poll(0.05)
                if results:
                    break
        finally:
            dialer.close()
    finally:
        citizen.stop()
    (r,) = results
    assert r.outcome == "unsatisfied" and r.recording_sm3
    wav = RecordingStore(tmp_path / "rec", key).get(r.recording_sm3)
    heard = np.frombuffer(_pcm(wav), dtype="<i2")
    assert detect(heard) == "2"  # the citizen's key press is in the recording
