"""How faithfully a call carried a prompt: what the far end heard, aligned to
what was played, compared second by second, with lost frames counted. Used by
``bench.voice``."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def _align(ref: npt.NDArray[np.float64], heard: npt.NDArray[np.float64]) -> int:
    """The lag of ``heard`` where ``ref`` fits best (FFT cross-correlation)."""
    n = 1 << int(np.ceil(np.log2(len(heard) + len(ref))))
    xc = np.fft.irfft(np.fft.rfft(heard, n) * np.conj(np.fft.rfft(ref, n)), n)
    return int(np.argmax(xc[:max(1, len(heard) - len(ref) + 1)]))


def _corr(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


def compare(prompt: npt.NDArray[np.float64], heard: npt.NDArray[np.float64],
            chunk_s: float = 1.0) -> dict[str, float]:
    """How well ``heard`` carries ``prompt``: aligned as a whole, then each
    second re-aligned within ±100 ms (a jitter buffer may shift the audio a
    frame or two); the correlation per second, and the prompt's voiced 20 ms
    frames that were heard as silence (drop-outs)."""
    if len(heard) < len(prompt):
        heard = np.concatenate([heard, np.zeros(len(prompt) - len(heard))])
    lag = _align(prompt, heard)
    step, slack = int(chunk_s * 8000), 800
    corrs, dropouts, voiced_total = [], 0, 0
    for start in range(0, len(prompt) - step + 1, step):
        ref = prompt[start:start + step]
        if np.sqrt(np.mean(ref**2)) < 300:
            continue  # a pause in the prompt: nothing to compare
        lo = max(0, lag + start - slack)
        window = heard[lo:lag + start + step + slack]
        if len(window) < step:
            corrs.append(0.0)
            continue
        at = _align(ref, window)
        seg = window[at:at + step]
        corrs.append(_corr(seg, ref))
        r = ref.reshape(-1, 160)
        h = seg.reshape(-1, 160)
        voiced = np.sqrt(np.mean(r**2, axis=1)) > 300
        silent = np.sqrt(np.mean(h**2, axis=1)) < 30
        dropouts += int(np.sum(voiced & silent))
        voiced_total += int(np.sum(voiced))
    return {"correlation_whole": _corr(heard[lag:lag + len(prompt)], prompt),
            "correlation_min_second": min(corrs) if corrs else 0.0,
            "correlation_median_second": float(np.median(corrs)) if corrs else 0.0,
            "dropout_frames": dropouts, "voiced_frames": voiced_total}
