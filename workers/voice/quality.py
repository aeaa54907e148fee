"""How faithfully a call carried a prompt: what the far end heard, aligned to
what was played, compared second by second and frame by frame. Used by
``bench.voice``.

Drop-outs are counted on a frame-by-frame alignment, not a fixed one: the
prompt's 20 ms frames are matched, in order, to the heard 20 ms frames (an
edit-distance alignment in a band of ±``BAND`` frames around the whole-prompt
lag). A heard frame matches a prompt frame when their waveforms correlate (at
the best of ±``SUB`` samples). Frames of silence may be stretched or shrunk
for free: pjmedia sends no RTP for a frame of exact digital silence, so the
far end's jitter buffer can move the audio after it by a frame, and a fixed
alignment then reads the voiced frame next to the silence as lost. A voiced
prompt frame counts as dropped when the best alignment leaves it out (a frame
removed) or pairs it with a heard frame that does not carry it (zeroed,
concealed, noise). Heard frames the alignment had to put in the middle of
speech (a concealed frame that pushed the rest back) are counted apart.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FRAME = 160  # 20 ms at 8 kHz
VOICED_RMS = 300.0  # a prompt frame louder than this carries speech
SILENT_RMS = 30.0  # a heard frame quieter than this carries nothing
MATCH = 0.9  # correlation at which a heard frame carries a prompt frame
BAND = 6  # frames the alignment may drift from the whole-prompt lag
SUB = 2  # samples of sub-frame slack per frame

_DROP = 1_000_000  # cost of a voiced prompt frame not heard
_STEP = 1  # cost of a non-diagonal move (prefers the straight path)


def _align(ref: npt.NDArray[np.float64], heard: npt.NDArray[np.float64]) -> int:
    """The lag of ``heard`` where ``ref`` fits best (FFT cross-correlation)."""
    n = 1 << int(np.ceil(np.log2(len(heard) + len(ref))))
    xc = np.fft.irfft(np.fft.rfft(heard, n) * np.conj(np.fft.rfft(ref, n)), n)
    return int(np.argmax(xc[:max(1, len(heard) - len(ref) + 1)]))


def _corr(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


def _rms(frames: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.sqrt(np.mean(frames ** 2, axis=-1))


def frame_match(prompt: npt.NDArray[np.float64], heard: npt.NDArray[np.float64],
                lag: int) -> dict[str, int]:
    """Align the prompt's frames to the heard frames (``heard`` holds the
    prompt from sample ``lag`` on) and count voiced prompt frames that were
    not heard (``dropout_frames``) and heard frames inserted into speech
    (``inserted_frames``)."""
    n = len(prompt) // FRAME
    ref = prompt[:n * FRAME].reshape(n, FRAME)
    voiced = _rms(ref) > VOICED_RMS
    ref_norm = np.linalg.norm(ref, axis=1)
    pad = (BAND + 1) * FRAME + SUB
    padded = np.concatenate([np.zeros(pad), heard, np.zeros(pad + len(prompt))])
    offsets = range(-BAND, BAND + 1)
    width = len(offsets)
    # match[k, d]: does heard frame k + d (from the lag) carry prompt frame k?
    match = np.zeros((n, width), dtype=bool)
    quiet = np.zeros((n, width), dtype=bool)
    base = pad + lag + np.arange(n)[:, None] * FRAME + np.arange(FRAME)[None, :]
    for w, d in enumerate(offsets):
        best = np.full(n, -1.0)
        for s in range(-SUB, SUB + 1):
            seg = padded[base + d * FRAME + s]
            c = np.sum(seg * ref, axis=1) / (np.linalg.norm(seg, axis=1)
                                             * ref_norm + 1e-9)
            best = np.maximum(best, c)
            if s == 0:
                quiet[:, w] = _rms(seg) < SILENT_RMS
        match[:, w] = best >= MATCH
    # cost[k, w]: the first k prompt frames aligned to the heard frames before
    # k + offsets[w]. Moves: pair (k, k + d), skip a prompt frame (d - 1),
    # skip a heard frame (d + 1, same k).
    inf = np.iinfo(np.int64).max // 4
    cost = np.full((n + 1, width), inf, dtype=np.int64)
    move = np.zeros((n + 1, width), dtype=np.int8)  # 0 pair, 1 skip p, 2 skip h
    for w, d in enumerate(offsets):
        cost[0, w] = abs(d) * _STEP  # where the heard audio starts
    for k in range(n):
        pair_cost = np.where(voiced[k] & ~match[k], _DROP, 0)
        skip_cost = (_DROP if voiced[k] else 0) + _STEP
        row = cost[k] + pair_cost
        mv = np.zeros(width, dtype=np.int8)
        skip = np.full(width, inf, dtype=np.int64)
        skip[:-1] = cost[k, 1:] + skip_cost  # prompt frame k left out: d - 1
        better = skip < row
        row = np.where(better, skip, row)
        mv[better] = 1
        for w in range(1, width):  # heard frames put in before prompt frame k+1
            if row[w - 1] + _STEP < row[w]:
                row[w] = row[w - 1] + _STEP
                mv[w] = 2
        cost[k + 1], move[k + 1] = row, mv
    w = int(np.argmin(cost[n]))
    dropped = inserted = 0
    k = n
    while k > 0:
        m = move[k, w]
        if m == 2:  # heard frame k - 1 + offsets[w - 1] put in
            if (k < n and voiced[k - 1] and voiced[k]
                    and not quiet[k - 1, w]):
                inserted += 1
            w -= 1
            continue
        k -= 1
        if m == 1:
            dropped += int(voiced[k])
            w += 1
        else:
            dropped += int(voiced[k] and not match[k, w])
    return {"dropout_frames": dropped, "inserted_frames": inserted,
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
