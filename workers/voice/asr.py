"""Speech recognisers the robot can use for spoken answers. DTMF never needs
one. No Mandarin model ships with any package here, so none is on by default:
an operator names a model directory (Vosk layout) and the robot loads it;
without one, only templates whose every answer has a DTMF digit can run.

An English grammar (a JSGF file, ``*.gram`` or ``*.jsgf``) instead uses
pocketsphinx's bundled en-US model, which is 16 kHz only: it refuses to
start at the phone's 8 kHz ("Failed to initialize PocketSphinx"), and the
model's upper filter frequency (6.9 kHz) must stay, so each utterance is
resampled to 16 kHz first (band-limited, by FFT)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

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


def upsample_2x(pcm: bytes) -> bytes:
    """16-bit PCM at twice the rate: the spectrum zero-padded (band-limited
    interpolation; nothing above the old Nyquist frequency is invented)."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if not len(x):
        return b""
    y = np.fft.irfft(np.fft.rfft(x), 2 * len(x)) * 2
    return np.clip(np.round(y), -32768, 32767).astype("<i2").tobytes()


class PocketsphinxRecogniser:
    """pocketsphinx (bundled en-US model) restricted to a JSGF grammar; phone
    audio (8 kHz) is resampled to the model's 16 kHz."""

    RATE = 16_000

    def __init__(self, grammar: Path) -> None:
        try:
            from pocketsphinx import Config, Decoder
        except ModuleNotFoundError:
            raise AsrUnavailable(f"--asr-model {grammar}: needs the Python package "
                                 "pocketsphinx (pip install pocketsphinx)") from None
        try:
            self._decoder = Decoder(Config(jsgf=str(grammar), samprate=self.RATE,
                                           loglevel="FATAL"))
        except (RuntimeError, ValueError) as e:
            raise AsrUnavailable(f"--asr-model {grammar}: pocketsphinx refused the "
                                 f"grammar ({e})") from None

    def transcribe(self, pcm: bytes) -> str:
        d = self._decoder  # pcm is at CLOCK_RATE, half the model's RATE
        d.start_utt()
        d.process_raw(upsample_2x(pcm), full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        return str(hyp.hypstr) if hyp is not None else ""


def load_recogniser(model_dir: Path | None) -> Recogniser | None:
    """The operator's recogniser, or None (DTMF only) when none is configured:
    a JSGF grammar file (pocketsphinx, English) or a Vosk model directory."""
    if model_dir is None:
        return None
    if model_dir.suffix in (".gram", ".jsgf") and model_dir.is_file():
        return PocketsphinxRecogniser(model_dir)
    if not model_dir.is_dir():
        raise AsrUnavailable(f"--asr-model {model_dir}: no such directory")
    return VoskRecogniser(model_dir)
