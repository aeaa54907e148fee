"""What the voice tests share: the example template and signal generators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from workers.voice.template import Template, load_template

ROOT = Path(__file__).resolve().parents[3]
BUS_SURVEY = ROOT / "workers" / "voice" / "templates" / "bus_survey.yaml"


def bus_survey() -> Template:
    return load_template(BUS_SURVEY)


def mu_law(x: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """Through a G.711 μ-law channel and back (8-bit companded quantisation)."""
    mu = 255.0
    v = x.astype(np.float64) / 32768.0
    y = np.sign(v) * np.log1p(mu * np.abs(v)) / np.log1p(mu)
    q = np.round(y * 127.0) / 127.0
    out = np.sign(q) * np.expm1(np.abs(q) * np.log1p(mu)) / mu
    return np.clip(out * 32768.0, -32768, 32767).astype(np.int16)


def with_noise(x: npt.NDArray[np.int16], snr_db: float,
               rng: np.random.Generator) -> npt.NDArray[np.int16]:
    """White noise added at ``snr_db`` relative to the signal's mean power."""
    sig = x.astype(np.float64)
    power = np.mean(sig[sig != 0] ** 2)
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), len(sig))
    return np.clip(sig + noise, -32768, 32767).astype(np.int16)


def vowel_like(seconds: float, rng: np.random.Generator) -> npt.NDArray[np.int16]:
    """Speech-like audio: glottal pulse trains with gliding pitch (90-300 Hz)
    through changing formants, syllables of 120-300 ms with short pauses. Rich
    in harmonics that fall on DTMF frequencies, the usual cause of talk-off."""
    rate, out = 8000, list[npt.NDArray[np.float64]]()
    total = int(seconds * rate)
    while sum(p.size for p in out) < total:
        n = int(rng.uniform(0.12, 0.30) * rate)
        f0 = np.linspace(rng.uniform(90, 300), rng.uniform(90, 300), n)
        phase = np.cumsum(2 * np.pi * f0 / rate)
        src = np.zeros(n)
        for h in range(1, 30):  # harmonics up to the 4 kHz band edge
            amp = 1.0 / h
            src += amp * np.sin(h * phase) * (h * f0 < 3900)
        # Two formants as resonant gains on the harmonic series.
        spectrum = np.fft.rfft(src)
        freqs = np.fft.rfftfreq(n, 1 / rate)
        gain = np.zeros_like(freqs)
        for fc, bw in ((rng.uniform(300, 900), 120), (rng.uniform(900, 2500), 200)):
            gain += 1.0 / (1.0 + ((freqs - fc) / bw) ** 2)
        syl = np.fft.irfft(spectrum * gain, n)
        syl *= np.hanning(n) * (8000.0 / (np.max(np.abs(syl)) + 1e-9))
        out += [syl, np.zeros(int(rng.uniform(0.03, 0.12) * rate))]
    return np.concatenate(out)[:total].astype(np.int16)
