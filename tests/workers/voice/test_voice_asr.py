"""The recogniser plug-in: none by default (DTMF only); a model directory an
operator names is checked, and what is missing is said."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from workers.voice.asr import AsrUnavailable, load_recogniser


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
