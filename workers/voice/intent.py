"""Intent matching for spoken answers: the template's patterns first, then
keywords (jieba tokens, longest match, a negated keyword does not count), then
the nearest example (token and character-bigram cosine) above a threshold.

Recognised text reaches here only from a speech recogniser; DTMF never does.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import Counter

from workers.voice.template import Answer

NEGATORS = ("不", "没", "别", "非", "未")
# Below this cosine an example is too far to decide anything (calibrated on
# tests/workers/voice/test_intent.py's paraphrases).
EXAMPLE_THRESHOLD = 0.34
_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)
_jieba_lock = threading.Lock()


def normalise(text: str) -> str:
    """NFKC (full-width to half-width), lower case, no punctuation or spaces."""
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text).lower())


def _tokens(text: str, keywords: set[str]) -> list[str]:
    import jieba  # imported late: building its dictionary takes about a second

    with _jieba_lock:  # jieba's dictionary is global and not thread-safe
        for k in keywords:
            jieba.add_word(k, freq=50_000)  # keep keywords whole when segmenting
        return [t for t in jieba.lcut(text, HMM=True) if t.strip()]


def _features(text: str, tokens: list[str]) -> Counter[str]:
    return Counter([*tokens, *(text[i:i + 2] for i in range(len(text) - 1))])


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    dot = sum(v * b[k] for k, v in a.items())
    na = math.sqrt(sum(v * v for v in a.values()))
    nb = math.sqrt(sum(v * v for v in b.values()))
    return dot / (na * nb) if na and nb else 0.0


class RuleMatcher:
    """Matches recognised text against a question's answers."""

    def __init__(self, example_threshold: float = EXAMPLE_THRESHOLD) -> None:
        self.example_threshold = example_threshold

    def match(self, text: str, answers: list[Answer]) -> Answer | None:
        return self.explain(text, answers)[0]

    def explain(self, text: str, answers: list[Answer]
                ) -> tuple[Answer | None, str]:
        """The answer and which rule chose it (pattern, keyword, example)."""
        t = normalise(text)
        if not t:
            return None, "empty"
        for a in answers:
            if any(re.search(p, t) for p in a.patterns):
                return a, "pattern"
        keywords = {normalise(k): i for i, a in enumerate(answers)
                    for k in a.keywords}
        hits = self._keyword_hits(t, keywords)
        if hits:
            best = max(hits, key=lambda i: (hits[i], -i))
            return answers[best], "keyword"
        tokens = _tokens(t, set(keywords))
        feats = _features(t, tokens)
        scored = [(_cosine(feats, _features(normalise(e), _tokens(
            normalise(e), set(keywords)))), i)
            for i, a in enumerate(answers) for e in a.examples]
        if scored:
            score, i = max(scored)
            if score >= self.example_threshold:
                return answers[i], "example"
        return None, "none"

    @staticmethod
    def _keyword_hits(text: str, keywords: dict[str, int]) -> dict[int, int]:
        # Longest keywords claim their characters first, so that 不满意 is not
        # also read as 满意; a keyword right after a negator does not count.
        claimed = [False] * len(text)
        hits: Counter[int] = Counter()
        for k in sorted(keywords, key=len, reverse=True):
            for m in re.finditer(re.escape(k), text):
                span = range(m.start(), m.end())
                if any(claimed[i] for i in span):
                    continue
                for i in span:
                    claimed[i] = True
                before = text[max(0, m.start() - 2):m.start()]
                if any(n in before for n in NEGATORS) and not k.startswith(
                        NEGATORS):
                    continue
                hits[keywords[k]] += len(k)
        return dict(hits)
