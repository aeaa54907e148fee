"""How faithfully a call carried a prompt: what the far end heard, aligned to
what was played, compared second by second and frame by frame. Used by
``bench.voice``.

Drop-outs are counted on a frame-by-frame alignment, not a fixed one. Each
20 ms prompt frame gets its own lag (within ±``BAND`` samples of the
whole-prompt lag), chosen by dynamic programming: a voiced frame whose heard
audio at its lag does not correlate with it (``MATCH``) costs one drop-out;
the lag may change for free where the prompt is silent (pjmedia sends no RTP
for frames of exact digital silence, and the far end's jitter buffer then
moves the audio after them, by 10 or 20 ms on loopback), and changes inside
speech (two voiced frames in a row) cost one frame each: a shorter lag means
audio was removed (drop-outs, ``removed_ms``), a longer one that something was
put in (``inserted_frames``, ``inserted_ms``). pjmedia's G.711 jitter buffer
works in 10 ms frames, so on real calls such changes come in 10 ms steps
(an adaptive buffer discarding or concealing a frame). A fixed alignment
reads a voiced frame beside a silence so moved as lost.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FRAME = 160  # 20 ms at 8 kHz
VOICED_RMS = 300.0  # a prompt frame louder than this carries speech
SILENT_RMS = 30.0  # heard audio quieter than this carries nothing
MATCH = 0.9  # correlation at which heard audio carries a prompt frame
BAND = 1200  # samples the alignment may drift from the whole-prompt lag

_DROP = 1_000_000  # cost of a voiced prompt frame not heard
_SLIP = 1  # cost of a lag change in silence (prefers the fewest)


def _align(ref: npt.NDArray[np.float64], heard: npt.NDArray[np.float64]) -> int:
    """The lag of ``heard`` where ``ref`` fits best (FFT cross-correlation)."""
    n = 1 << int(np.ceil(np.log2(len(heard) + len(ref))))
    xc = np.fft.irfft(np.fft.rfft(heard, n) * np.conj(np.fft.rfft(ref, n)), n)
    return int(np.argmax(xc[:max(1, len(heard) - len(ref) + 1)]))


def _corr(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


def frame_match(prompt: npt.NDArray[np.float64], heard: npt.NDArray[np.float64],
                lag: int) -> dict[str, int]:
    """Align each prompt frame to ``heard`` (which holds the prompt from
    sample ``lag`` on) and count voiced prompt frames not heard
    (``dropout_frames``: ``missed_frames`` whose audio is not heard at their
lag, plus audio removed inside speech, a part of a frame counted whole) and
frames put into speech (``inserted_frames``)."""
    n = len(prompt) // FRAME
    ref = prompt[:n * FRAME].reshape(n, FRAME)
    voiced = np.sqrt(np.mean(ref ** 2, axis=1)) > VOICED_RMS
    pad = BAND + FRAME
    h = np.concatenate([np.zeros(pad), heard, np.zeros(pad + len(prompt))])
    energy = np.concatenate([[0.0], np.cumsum(h ** 2)])
    width = 2 * BAND + 1
    # hit[k, j]: heard audio at lag (lag - BAND + j) carries prompt frame k.
    hit = np.ones((n, width), dtype=bool)
    for f in np.flatnonzero(voiced):
        at = pad + lag + int(f) * FRAME - BAND
        dots = np.correlate(h[at:at + width + FRAME - 1], ref[f], "valid")
        norms = np.sqrt(np.maximum(energy[at + FRAME:at + FRAME + width]
                                   - energy[at:at + width], 0.0))
        hit[f] = ((dots >= MATCH * norms * np.linalg.norm(ref[f]))
                  & (norms >= SILENT_RMS * np.sqrt(FRAME)))
    miss_cost = np.where(hit, 0, _DROP)
    cost = miss_cost[0].astype(np.int64)
    moved = np.zeros((n, width), dtype=bool)  # lag changed before frame k
    came = np.zeros(n, dtype=np.int64)  # from where, when it changed
    for k in range(1, n):
        change = _DROP if voiced[k - 1] and voiced[k] else _SLIP
        came[k] = int(np.argmin(cost))
        alt = cost[came[k]] + change
        moved[k] = alt < cost
        cost = np.minimum(cost, alt) + miss_cost[k]
    j = int(np.argmin(cost))
    missed: set[int] = set()
    events: list[tuple[int, int]] = []  # (frame, lag change in samples)
    for k in range(n - 1, -1, -1):
        if not hit[k, j]:
            missed.add(k)
        if k and moved[k, j]:
            j_prev = int(came[k])
            if voiced[k - 1] and voiced[k]:
                events.append((k, j - j_prev))
            j = j_prev
    # A change inside speech explains the frames it cuts through: those are
    # not counted again as missed. Audio left out counts a frame per 20 ms
    # (a part counts whole); audio put in counts apart.
    removed = inserted = removed_frames = inserted_frames = 0
    for k, change in events:
        frames = -(-abs(change) // FRAME)
        cut = missed & {k - 1, k}
        missed -= cut
        if change < 0:  # later audio came early: some was left out
            removed += -change
            removed_frames += max(frames, len(cut))
        else:
            inserted += change
            inserted_frames += frames
    return {"dropout_frames": len(missed) + removed_frames,
            "missed_frames": len(missed), "removed_ms": removed * 1000 // 8000,
            "inserted_frames": inserted_frames,
            "inserted_ms": inserted * 1000 // 8000,
            "voiced_frames": int(np.sum(voiced))}


def compare(prompt: npt.NDArray[np.float64], heard: npt.NDArray[np.float64],
            chunk_s: float = 1.0) -> dict[str, float]:
    """How well ``heard`` carries ``prompt``: aligned as a whole, then each
    second re-aligned within ±100 ms (a jitter buffer may shift the audio a
    frame or two) for its correlation; drop-outs and inserted frames from the
    frame-by-frame alignment (``frame_match``)."""
    if len(heard) < len(prompt):
        heard = np.concatenate([heard, np.zeros(len(prompt) - len(heard))])
    lag = _align(prompt, heard)
    step, slack = int(chunk_s * 8000), 800
    corrs = []
    for start in range(0, len(prompt) - step + 1, step):
        ref = prompt[start:start + step]
        if np.sqrt(np.mean(ref**2)) < VOICED_RMS:
            continue  # a pause in the prompt: nothing to compare
        lo = max(0, lag + start - slack)
        window = heard[lo:lag + start + step + slack]
        if len(window) < step:
            corrs.append(0.0)
            continue
        at = _align(ref, window)
        corrs.append(_corr(window[at:at + step], ref))
    return {"correlation_whole": _corr(heard[lag:lag + len(prompt)], prompt),
            "correlation_min_second": min(corrs) if corrs else 0.0,
            "correlation_median_second": float(np.median(corrs)) if corrs else 0.0,
            **frame_match(prompt, heard, lag)}
