"""Text to speech with espeak-ng (voice ``cmn-latn-pinyin``, which reads Chinese
characters as Mandarin), resampled by sox to what a phone line carries: 8 kHz
mono 16-bit WAV. Prompts are cached by the SM3 of voice and text, so a
campaign synthesises each prompt once."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from chaincode.encoding import sm3_hex

VOICE = "cmn-latn-pinyin"
SPEED = 150  # words per minute; espeak's default 175 is hurried on a phone
# Silence before each prompt: the far end's jitter buffer fills at the start of
# a call, and swallowed the first 20 ms of speech (bench.voice: frame 0 of most
# calls) before there was any.
LEAD_IN_S = 0.1


class TtsError(RuntimeError):
    pass


def missing_tools() -> list[str]:
    return [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]


class PromptCache:
    """WAV files of prompts under ``directory``, made on first use."""

    def __init__(self, directory: Path, voice: str = VOICE,
                 speed: int = SPEED) -> None:
        self.directory, self.voice, self.speed = directory, voice, speed

    def key(self, text: str) -> str:
        return sm3_hex(f"{self.voice}|{self.speed}|{LEAD_IN_S}|{text}".encode())

    def path(self, text: str) -> Path:
        """The prompt's 8 kHz WAV, synthesised if it is not cached yet."""
        out = self.directory / f"{self.key(text)}.wav"
        if out.exists():
            return out
        if missing := missing_tools():
            raise TtsError(f"text to speech needs {' and '.join(missing)} "
                           "(apt-get install espeak-ng sox)")
        self.directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.directory) as tmp:
            raw, part = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
            self._run(["espeak-ng", "-v", self.voice, "-s", str(self.speed),
                       "-w", str(raw), "--", text])
            # -G: guard against clipping while resampling.
            self._run(["sox", "-G", str(raw), "-r", "8000", "-c", "1", "-b", "16",
                       "-e", "signed-integer", str(part), "pad", str(LEAD_IN_S)])
            os.replace(part, out)  # atomic: concurrent callers see whole files
        return out

    @staticmethod
    def _run(cmd: list[str]) -> None:
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=30)
        except subprocess.CalledProcessError as e:
            raise TtsError(f"{cmd[0]} failed: {e.stderr.decode(errors='replace')}"
                           ) from None
        except subprocess.TimeoutExpired:
            raise TtsError(f"{cmd[0]} took longer than 30 s") from None
