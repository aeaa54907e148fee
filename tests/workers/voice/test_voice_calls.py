"""Real SIP calls on 127.0.0.1: the robot's engine (in this process) calls a
simulated citizen (a process of its own) who acts out one scenario per number;
every template outcome and every engine outcome is reached."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from voice_helpers import CitizenProcess, pick_sip_port, rtp_base_for, start_citizen

from workers.voice.robot import PJSUA_MAX_CALLS, CallEngine, CallResult
from workers.voice.template import load_template
from workers.voice.tts import PromptCache, missing_tools

pytestmark = pytest.mark.skipif(bool(missing_tools()),
                                reason="needs espeak-ng and sox")

QUICK = Path(__file__).with_name("quick_survey.yaml")
AFTER_PROMPT = {"after_prompt": True}
SCENARIOS = {
    "2001": {"steps": [AFTER_PROMPT, {"dtmf": "1"}]},  # RFC 4733
    "2002": {"steps": [AFTER_PROMPT, {"tones": "2"}]},  # in-band
    "2003": {"steps": []},  # answers, says nothing
    "2004": {"steps": [AFTER_PROMPT, AFTER_PROMPT, {"dtmf": "1"}]},  # after a retry
    "2005": {"steps": [AFTER_PROMPT, {"hangup": True}]},
    "2006": {"answer": "never"},
    "2007": {"answer": "busy"},
    "2008": {"steps": [AFTER_PROMPT, {"say": "不满意"}]},  # no recogniser here
    "2009": {"ring_s": 0.5, "steps": [AFTER_PROMPT, {"dtmf": "9"}, AFTER_PROMPT,
                                      {"dtmf": "2"}]},  # wrong key, then a right one
}


@pytest.fixture(scope="module")
def citizen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CitizenProcess]:
    c = start_citizen(SCENARIOS, tmp_path_factory.mktemp("citizen"))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def results(citizen: CitizenProcess, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, CallResult]:
    port = pick_sip_port()
    engine = CallEngine(load_template(QUICK),
                        PromptCache(tmp_path_factory.mktemp("prompts")),
                        port, rtp_base_for(port))
    # Nobody listens there: pjsip ignores the ICMP, the ring timeout ends it.
    nobody = f"sip:2010@127.0.0.1:{pick_sip_port()}"
    try:
        done = engine.run([*((n, citizen.uri(n)) for n in SCENARIOS),
                           ("2010", nobody)],
                          concurrency=PJSUA_MAX_CALLS, timeout_s=90)
    finally:
        engine.close()
    return {r.key: r for r in done}


@pytest.mark.parametrize(("number", "outcome", "answers"), [
    ("2001", "satisfied", {"ask": "agree"}),
    ("2002", "unsatisfied", {"ask": "disagree"}),
    ("2003", "no_response", {}),
    ("2004", "satisfied", {"ask": "agree"}),
    ("2005", "hung_up", {}),
    ("2006", "no_answer", {}),
    ("2007", "busy", {}),
    ("2008", "no_response", {}),
    ("2009", "unsatisfied", {"ask": "disagree"}),
    ("2010", "no_answer", {}),
])
def test_outcome(results: dict[str, CallResult], number: str, outcome: str,
                 answers: dict[str, str]) -> None:
    r = results[number]
    assert (r.outcome, r.answers) == (outcome, answers), r


def test_every_call_was_placed_and_ended(results: dict[str, CallResult],
                                         citizen: CitizenProcess) -> None:
    assert set(results) == {*SCENARIOS, "2010"}
    events = citizen.events()
    for number in SCENARIOS:
        assert {"incoming", "disconnected"} <= {
            e["event"] for e in events if e["number"] == number}, number


def test_dtmf_paths(results: dict[str, CallResult]) -> None:
    assert results["2001"].digits == "1"  # RFC 4733, once (not also in-band)
    assert results["2002"].digits == "2"  # in-band tones, Goertzel
    assert results["2009"].digits == "92"
    texts = [ln.text for ln in results["2009"].transcript]
    assert texts.index("没听清。") > texts.index("DTMF 9")


def test_silence_retries_before_giving_up(results: dict[str, CallResult]) -> None:
    texts = [ln.text for ln in results["2003"].transcript]
    assert texts == ["满意按一，不满意按二。", "silence", "请按键。",
                     "满意按一，不满意按二。", "silence", "再见。"]


def test_speech_without_recogniser_is_no_match(
        results: dict[str, CallResult]) -> None:
    texts = [ln.text for ln in results["2008"].transcript]
    assert "(unrecognised speech)" in texts and "没听清。" in texts


def test_unanswered_and_busy(results: dict[str, CallResult]) -> None:
    assert not results["2006"].answered and results["2006"].sip_status == 487
    assert not results["2007"].answered and results["2007"].sip_status == 486
    for n in ("2001", "2002", "2003"):
        r = results[n]
        assert r.answered and r.setup_ms is not None and r.setup_ms < 500, r
