"""Call recordings, off chain: content-addressed files named by the SM3 of
what is stored, SM4-encrypted (``ledger.crypto``'s blob scheme) under a key
kept next to the campaign, never on chain. Deleting the key forgets every
recording of the campaign; the SM3 still proves which file a record meant.
"""

from __future__ import annotations

import io
import os
import secrets
import wave
from pathlib import Path

from chaincode.encoding import sm3_hex
from workers.voice.sip import CLOCK_RATE


def load_or_make_key(path: Path, size: int = 16) -> bytes:
    """The ``size``-byte key in ``path`` (16: SM4), made (mode 0600) if there
    is none."""
    if path.exists():
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
        if len(key) != size:
            raise ValueError(f"{path}: the key is {size} bytes ({2 * size} hex "
                             "digits)")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key.hex() + "\n")
    return key


def wav_bytes(pcm: bytes) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(CLOCK_RATE)
        w.writeframes(pcm)
    return buf.getvalue()


class RecordingStore:
    """``put`` stores 8 kHz PCM as WAV (encrypted when a key is given) and
    returns its SM3; ``get`` gives the WAV back."""

    def __init__(self, directory: Path, key: bytes | None) -> None:
        self.directory, self.key = directory, key

    def _suffix(self) -> str:
        return ".wav.sm4" if self.key else ".wav"

    def put(self, pcm: bytes) -> str:
        data = wav_bytes(pcm)
        if self.key:
            from ledger.crypto import get_backend

            data = get_backend().sm4_encrypt(self.key, data)
        digest = sm3_hex(data)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{digest}{self._suffix()}"
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return digest

    def get(self, digest: str) -> bytes:
        data = (self.directory / f"{digest}{self._suffix()}").read_bytes()
        if sm3_hex(data) != digest:
            raise ValueError(f"recording {digest}: its content does not match its "
                             "SM3 (altered or damaged)")
        if self.key:
            from ledger.crypto import get_backend

            return get_backend().sm4_decrypt(self.key, data)
        return data
