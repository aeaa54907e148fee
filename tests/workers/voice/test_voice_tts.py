"""Prompts: 8 kHz mono 16-bit WAV, cached by the SM3 of voice and text."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from workers.voice.tts import PromptCache, missing_tools

pytestmark = pytest.mark.skipif(bool(missing_tools()),
                                reason="needs espeak-ng and sox")


def test_prompt_is_phone_audio_and_cached(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path)
    p = cache.path("您好，这里是城市服务热线。")
    with wave.open(str(p)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert 1.0 < w.getnframes() / 8000 < 10.0
    mtime = p.stat().st_mtime_ns
    assert cache.path("您好，这里是城市服务热线。") == p
    assert p.stat().st_mtime_ns == mtime  # not synthesised again
    assert cache.path("再见。") != p
    assert p.name == cache.key("您好，这里是城市服务热线。") + ".wav"
