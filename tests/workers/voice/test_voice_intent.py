"""Intent matching on paraphrases written for this test (not the template's own
keywords or examples): accuracy is reported and must stay above a floor."""

from __future__ import annotations

import time

import pytest
from voice_helpers import bus_survey

from workers.voice.intent import RuleMatcher, normalise

ANSWERS = bus_survey().nodes["ask"].answers

# (what a citizen might say, the intent meant; None: no answer to the question)
PARAPHRASES: list[tuple[str, str | None]] = [
    ("满意", "agree"),
    ("很满意，司机态度也好", "agree"),
    ("对，我觉得挺好的", "agree"),
    ("嗯嗯，还可以吧", "agree"),
    ("是的", "agree"),
    ("非常不错，车也干净", "agree"),
    ("还算满意吧", "agree"),
    ("总体来说可以", "agree"),
    ("不满意", "disagree"),
    ("太差了，等了半个小时", "disagree"),
    ("不太满意，车太挤", "disagree"),
    ("服务很差", "disagree"),
    ("一点都不好", "disagree"),
    ("公交经常晚点，很烦", "disagree"),
    ("司机开得太猛了，不满意", "disagree"),
    ("不怎么满意", "disagree"),
    ("我没空，别打了", "refuse"),
    ("现在不方便，没时间", "refuse"),
    ("我在开会，很忙", "refuse"),
    ("不想参加这个调查", "refuse"),
    ("别再打电话了", "refuse"),
    ("今天天气怎么样", None),
    ("你是谁啊", None),
    ("喂？喂？", None),
]


def test_normalise() -> None:
    assert normalise("  满意！ＯＫ, 好的。") == "满意ok好的"


def test_negated_keyword_does_not_count() -> None:
    m = RuleMatcher()
    assert m.explain("不满意", ANSWERS)[0] is ANSWERS[1]
    assert m.explain("不太满意", ANSWERS)[0] is ANSWERS[1]


def test_pattern_comes_first() -> None:
    answer, rule = RuleMatcher().explain("是，不过有点挤", ANSWERS)
    assert (answer, rule) == (ANSWERS[0], "pattern")


def test_paraphrase_accuracy(capsys: pytest.CaptureFixture[str]) -> None:
    m = RuleMatcher()
    m.match("预热", ANSWERS)  # jieba builds its dictionary once
    wrong, start = [], time.perf_counter()
    for text, intent in PARAPHRASES:
        got = m.match(text, ANSWERS)
        if (got.intent if got else None) != intent:
            wrong.append((text, intent, got.intent if got else None))
    per_call_us = (time.perf_counter() - start) / len(PARAPHRASES) * 1e6
    accuracy = 1 - len(wrong) / len(PARAPHRASES)
    with capsys.disabled():
        print(f"\nintent accuracy {accuracy:.3f} "
              f"({len(PARAPHRASES) - len(wrong)}/{len(PARAPHRASES)}), "
              f"{per_call_us:.0f} µs a sentence; wrong: {wrong}")
    assert accuracy >= 0.8, wrong
