"""In-band DTMF: every key at 5 dB SNR and after μ-law, twist and short presses,
and no digit at all in speech-like audio or synthesised Mandarin."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from voice_helpers import mu_law, vowel_like, with_noise

from workers.voice.dtmf import DIGITS, DtmfDetector, detect, tone, tones
from workers.voice.tts import PromptCache, missing_tools


def test_every_key_clean() -> None:
    assert detect(tones(DIGITS)) == DIGITS


@pytest.mark.parametrize("seed", range(4))
def test_every_key_at_5_db_snr_after_mu_law(seed: int) -> None:
    rng = np.random.default_rng(50 + seed)  # not the tuning seeds
    digits = "".join(rng.choice(list(DIGITS), 16))
    noisy = mu_law(with_noise(tones(digits, ms=80, gap_ms=60), 5.0, rng))
    assert detect(noisy) == digits


def test_twist_within_limits_and_beyond() -> None:
    assert detect(tone("5", twist_db=4.0)) == "5"
    assert detect(tone("5", twist_db=-6.0)) == "5"
    assert detect(tone("5", twist_db=14.0)) == ""


def test_one_press_is_one_digit_across_chunk_boundaries() -> None:
    pcm = tones("77", ms=200, gap_ms=100).tobytes()
    det, out = DtmfDetector(), []
    for i in range(0, len(pcm), 222):  # odd chunks, as frames arrive
        out += det.feed(pcm[i:i + 222])
    assert out == ["7", "7"]


def test_too_short_or_too_quiet_is_no_digit() -> None:
    assert detect(tone("1", ms=30)) == ""
    assert detect(tone("1", amplitude=150.0)) == ""


def test_unknown_key_is_refused() -> None:
    with pytest.raises(ValueError, match="accepted"):
        tone("E")


@pytest.mark.parametrize("seed", range(3))
def test_no_digit_in_speech_like_audio(seed: int) -> None:
    rng = np.random.default_rng(500 + seed)  # not the tuning seeds
    speech = vowel_like(20.0, rng)
    assert detect(speech) == ""
    assert detect(mu_law(with_noise(speech, 20.0, rng))) == ""


@pytest.mark.skipif(bool(missing_tools()), reason="needs espeak-ng and sox")
def test_no_digit_in_synthesised_mandarin(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path)
    sentences = ["您好，这里是昆山市交通运输局，打扰您一分钟做个回访。",
                 "请问您对公交服务满意吗？满意请按一，不满意请按二。",
                 "一二三四五六七八九零，请按井号键结束。",
                 "感谢您的反馈，我们会改进，再见。"]
    for s in sentences:
        with wave.open(str(cache.path(s))) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        assert detect(mu_law(pcm)) == "", s


def test_digits_mixed_into_speech_are_found() -> None:
    rng = np.random.default_rng(7)
    speech = vowel_like(2.0, rng) // 4  # a voice in the background, -12 dB
    keys = tones("19#", ms=100, gap_ms=200, amplitude=8000.0)
    mixed = speech[:len(keys)].astype(np.int32) + keys
    assert detect(np.clip(mixed, -32768, 32767).astype(np.int16)) == "19#"
