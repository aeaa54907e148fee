"""Speech recognisers the robot can use for spoken answers. DTMF never needs
one. No Mandarin model ships with any package here, so none is on by default:
an operator names a model directory (Vosk layout) and the robot loads it;
without one, only templates whose every answer has a DTMF digit can run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from workers.voice.sip import CLOCK_RATE


class Recogniser(Protocol):
    """Speech to text for one utterance (8 kHz 16-bit mono PCM); '' when it
    heard nothing it knows."""

    def transcribe(self, pcm: bytes) -> str: ...


class AsrUnavailable(RuntimeError):
    pass


class VoskRecogniser:
    """A Vosk (Kaldi) model directory, e.g. vosk-model-small-cn-0.22."""

    def __init__(self, model_dir: Path) -> None:
        try:
            import vosk  # optional: pip install vosk
        except ModuleNotFoundError:
            raise AsrUnavailable(f"--asr-model {model_dir}: needs the Python package "
                                 "vosk (pip install vosk)") from None
        if not (model_dir / "am").is_dir() and not (model_dir / "conf").is_dir():
            raise AsrUnavailable(f"--asr-model {model_dir}: not a Vosk model "
                                 "directory (expected am/ and conf/)")
        vosk.SetLogLevel(-1)
        self._vosk: Any = vosk
        self._model = vosk.Model(str(model_dir))

    def transcribe(self, pcm: bytes) -> str:
        rec = self._vosk.KaldiRecognizer(self._model, CLOCK_RATE)
        rec.AcceptWaveform(pcm)
        return str(json.loads(rec.FinalResult()).get("text", "")).replace(" ", "")


def load_recogniser(model_dir: Path | None) -> Recogniser | None:
    """The operator's recogniser, or None (DTMF only) when none is configured."""
    if model_dir is None:
        return None
    if not model_dir.is_dir():
        raise AsrUnavailable(f"--asr-model {model_dir}: no such directory")
    return VoskRecogniser(model_dir)
