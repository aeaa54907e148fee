"""The recogniser plug-in: none by default (DTMF only); a model directory an
operator names is checked, and what is missing is said; an English grammar
runs pocketsphinx on phone audio (8 kHz μ-law), resampled to its 16 kHz."""

from __future__ import annotations

import importlib.util
import wave
from pathlib import Path

import numpy as np
import pytest
from voice_helpers import mu_law

from workers.voice.asr import AsrUnavailable, load_recogniser, upsample_2x
from workers.voice.tts import PromptCache, missing_tools


def test_no_model_means_dtmf_only() -> None:
    assert load_recogniser(None) is None


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(AsrUnavailable, match="no such directory"):
        load_recogniser(tmp_path / "nope")


def test_model_directory_needs_vosk_and_its_layout(tmp_path: Path) -> None:
    if importlib.util.find_spec("vosk") is None:
        with pytest.raises(AsrUnavailable, match=r"pip install vosk"):
            load_recogniser(tmp_path)
    else:
        with pytest.raises(AsrUnavailable, match="not a Vosk model directory"):
            load_recogniser(tmp_path)


GRAMMAR = ("#JSGF V1.0;\ngrammar answer;\n"
           "public <answer> = yes | no | yes please | no thanks | call me later;\n")


def _phone_pcm(path: Path) -> bytes:
    """A synthesised answer as the robot hears it: 8 kHz, through μ-law."""
    with wave.open(str(path)) as w:
        assert w.getframerate() == 8000
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return mu_law(pcm).tobytes()


def test_upsampling_keeps_the_tone() -> None:
    t8 = np.arange(8000) / 8000
    tone = (8000 * np.sin(2 * np.pi * 1000 * t8)).astype("<i2")
    up = np.frombuffer(upsample_2x(tone.tobytes()), "<i2").astype(np.float64)
    t16 = np.arange(16000) / 16000
    assert len(up) == 16000
    assert np.max(np.abs(up - 8000 * np.sin(2 * np.pi * 1000 * t16))) < 2
    assert upsample_2x(b"") == b""


def test_pocketsphinx_hears_english_answers_at_the_phone_rate(
        tmp_path: Path) -> None:
    pytest.importorskip("pocketsphinx")
    if missing_tools():
        pytest.skip("needs espeak-ng and sox")
    from pocketsphinx import Config, Decoder

    grammar = tmp_path / "answer.gram"
    grammar.write_text(GRAMMAR, encoding="ascii")
    # The bundled model does not start at 8 kHz: hence the resampling.
    with pytest.raises(RuntimeError):
        Decoder(Config(jsgf=str(grammar), samprate=8000, loglevel="FATAL"))
    recogniser = load_recogniser(grammar)
    assert recogniser is not None
    phrases = exact = 0
    for voice in ("en-us", "en-gb", "en-us+f3", "en-gb-x-rp"):
        answers = PromptCache(tmp_path / voice, voice=voice)
        for text in ("yes", "no", "yes please", "no thanks", "call me later"):
            heard = recogniser.transcribe(_phone_pcm(answers.path(text)))
            phrases += heard.split()[:1] == text.split()[:1]  # yes, no, call
            exact += heard == text
    print(f"pocketsphinx at 8 kHz via 16 kHz: {phrases}/20 answers, "
          f"{exact}/20 word for word")
    # Measured: 19/20 and 16/20 ("no thanks" is the hard one: its fricatives
    # are above the phone's 4 kHz).
    assert phrases >= 18 and exact >= 15
    assert recogniser.transcribe(b"\0\0" * 8000) == ""  # a second of silence


def test_a_bad_grammar_is_named(tmp_path: Path) -> None:
    pytest.importorskip("pocketsphinx")
    grammar = tmp_path / "broken.gram"
    grammar.write_text("not a grammar", encoding="ascii")
    with pytest.raises(AsrUnavailable, match=r"--asr-model .*broken\.gram"):
        load_recogniser(grammar)
