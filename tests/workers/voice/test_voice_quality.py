"""The call-quality comparison (bench.voice): a faithful copy scores 1 with no
drop-outs, even shifted by a few samples, through μ-law, or with a frame of
silence slipped in or out (what a jitter buffer does around digital silence);
a voiced frame zeroed or removed is counted, not hidden."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from voice_helpers import mu_law, vowel_like

from workers.voice.quality import FRAME, VOICED_RMS, compare


def _prompt(seed: int) -> npt.NDArray[np.float64]:
    # 100 ms of lead-in silence, like the robot's prompts; frames line up.
    return np.concatenate([np.zeros(800), vowel_like(6.0, np.random.default_rng(
        seed)).astype(np.float64)])


def _ulaw(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return mu_law(np.clip(x, -32768, 32767).astype(np.int16)).astype(np.float64)


def _voiced_runs(prompt: npt.NDArray[np.float64]) -> list[int]:
    """Voiced frames whose neighbours are voiced too (mid-syllable)."""
    rms = np.sqrt(np.mean(prompt[:len(prompt) // FRAME * FRAME]
                          .reshape(-1, FRAME) ** 2, axis=1))
    v = rms > VOICED_RMS
    return [k for k in range(2, len(v) - 2) if v[k - 2:k + 3].all()]


@pytest.mark.parametrize("shift", [0, 1, 3, 7, 1234])
def test_faithful_copy_shifted_and_through_mu_law(shift: int) -> None:
    prompt = _prompt(1)
    heard = np.concatenate([np.zeros(shift), _ulaw(prompt), np.zeros(500)])
    got = compare(prompt, heard)
    assert got["correlation_whole"] > 0.99
    assert got["correlation_min_second"] > 0.99
    assert got["voiced_frames"] > 100
    assert got["dropout_frames"] == 0 and got["inserted_frames"] == 0


def test_mu_law_twice_is_no_drop() -> None:
    prompt = _prompt(4)
    got = compare(prompt, _ulaw(_ulaw(prompt) * 0.5))
    assert got["dropout_frames"] == 0


@pytest.mark.parametrize(("seed", "slip"), [(5, FRAME), (12, FRAME), (14, 80)])
def test_silence_slipping_a_frame_is_no_drop(seed: int, slip: int) -> None:
    """espeak leaves frames of exact digital silence right beside voiced ones;
    pjmedia sends no RTP for them, so the far end may play one twice or not at
    all. The voiced frames beside them were all heard."""
    prompt = _prompt(seed)
    mid = _voiced_runs(prompt)
    a, b = mid[10], mid[60]
    prompt[a * FRAME:(a + 1) * FRAME] = 0.0  # voiced, silent, voiced
    prompt[b * FRAME:(b + 1) * FRAME] = 0.0
    heard = np.concatenate([prompt[:a * FRAME], np.zeros(slip),
                            prompt[a * FRAME:b * FRAME],
                            prompt[b * FRAME + slip:]])
    got = compare(prompt, _ulaw(heard))
    assert got["dropout_frames"] == 0 and got["inserted_frames"] == 0


def test_10ms_left_out_of_speech_is_counted() -> None:
    """pjmedia's jitter buffer discards G.711 audio 10 ms at a time."""
    prompt = _prompt(15)
    k = _voiced_runs(prompt)[40]
    heard = np.concatenate([prompt[:k * FRAME + 40], prompt[k * FRAME + 120:]])
    got = compare(prompt, _ulaw(heard))
    assert got["dropout_frames"] == 1 and got["removed_ms"] == 10


def test_a_voiced_frame_doubled_is_an_insertion_not_a_drop() -> None:
    prompt = _prompt(13)
    k = _voiced_runs(prompt)[25]
    heard = np.concatenate([prompt[:(k + 1) * FRAME], prompt[k * FRAME:]])
    got = compare(prompt, _ulaw(heard))
    assert got["dropout_frames"] == 0
    assert got["inserted_frames"] == 1 and got["inserted_ms"] == 20


@pytest.mark.parametrize("seed", [2, 6, 7])
def test_zeroed_frames_are_counted(seed: int) -> None:
    prompt = _prompt(seed)
    heard = prompt.copy()
    mid = _voiced_runs(prompt)
    for k in (mid[10], mid[40], mid[41]):
        heard[k * FRAME:(k + 1) * FRAME] = 0.0
    got = compare(prompt, _ulaw(heard))
    assert got["dropout_frames"] == 3
    assert got["correlation_min_second"] < 0.99


@pytest.mark.parametrize("seed", [3, 8, 9])
def test_a_removed_voiced_frame_is_counted(seed: int) -> None:
    prompt = _prompt(seed)
    k = _voiced_runs(prompt)[30]
    heard = np.concatenate([prompt[:k * FRAME], prompt[(k + 1) * FRAME:]])
    got = compare(prompt, _ulaw(heard))
    assert got["dropout_frames"] == 1
    assert got["correlation_whole"] < 0.9  # the rest comes a frame early
    assert got["correlation_median_second"] > 0.99


def test_a_shifted_copy_with_one_frame_zeroed() -> None:
    prompt = _prompt(10)
    k = _voiced_runs(prompt)[20]
    heard = _ulaw(prompt)
    heard[k * FRAME:(k + 1) * FRAME] = 0.0
    heard = np.concatenate([np.zeros(37), heard])  # not on a frame boundary
    assert compare(prompt, heard)["dropout_frames"] == 1


def test_noise_in_place_of_a_frame_is_counted() -> None:
    prompt = _prompt(11)
    k = _voiced_runs(prompt)[15]
    heard = prompt.copy()
    heard[k * FRAME:(k + 1) * FRAME] = np.random.default_rng(0).normal(
        0, 2000, FRAME)
    assert compare(prompt, _ulaw(heard))["dropout_frames"] == 1
