"""The call-quality comparison (bench.voice): a faithful copy scores 1 with no
drop-outs; lost frames and a frame slip are counted, not hidden."""

from __future__ import annotations

import numpy as np
from voice_helpers import mu_law, vowel_like

from workers.voice.quality import compare


def test_faithful_copy_with_delay() -> None:
    prompt = vowel_like(6.0, np.random.default_rng(1)).astype(np.float64)
    heard = np.concatenate([np.zeros(1234), mu_law(prompt.astype(np.int16))
                            .astype(np.float64), np.zeros(500)])
    got = compare(prompt, heard)
    assert got["correlation_whole"] > 0.99
    assert got["correlation_min_second"] > 0.99
    assert got["dropout_frames"] == 0 and got["voiced_frames"] > 100


def test_lost_frames_are_counted() -> None:
    prompt = vowel_like(6.0, np.random.default_rng(2)).astype(np.float64)
    heard = prompt.copy()
    voiced = [i for i in range(0, len(prompt) - 160, 160)
              if np.sqrt(np.mean(prompt[i:i + 160] ** 2)) > 300]
    for i in voiced[10:13]:
        heard[i:i + 160] = 0.0  # three frames lost
    got = compare(prompt, heard)
    assert got["dropout_frames"] == 3
    assert got["correlation_min_second"] < 0.99


def test_a_frame_slip_lowers_the_whole_but_not_each_second() -> None:
    prompt = vowel_like(6.0, np.random.default_rng(3)).astype(np.float64)
    heard = np.concatenate([prompt[:24000], prompt[24160:]])  # 20 ms dropped
    got = compare(prompt, heard)
    assert got["correlation_whole"] < 0.9
    assert got["correlation_median_second"] > 0.99
