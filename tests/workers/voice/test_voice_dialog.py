"""The call script as a state machine: every path of the example template."""

from __future__ import annotations

from voice_helpers import bus_survey

from workers.voice.dialog import Dialog
from workers.voice.intent import RuleMatcher

ASK = "请问您对公交服务满意吗？满意请按一，不满意请按二，不想参加请按九。"


def test_greeting_and_question_play_back_to_back() -> None:
    d = Dialog(bus_survey())
    turn = d.start()
    assert turn.say[1] == ASK and turn.listen_s == 5 and turn.outcome is None
    assert d.listening


def test_dtmf_choice_ends_with_its_outcome() -> None:
    d = Dialog(bus_survey())
    d.start()
    turn = d.digit("2")
    assert turn is not None and turn.outcome == "unsatisfied"
    assert d.answers == {"ask": "disagree"}
    assert d.digit("1") is None  # after the end, keys change nothing
    assert d.hung_up() == "unsatisfied"  # hanging up after the end keeps it


def test_silence_retries_then_gives_up() -> None:
    d = Dialog(bus_survey())
    d.start()
    again = d.silence()
    assert again is not None and again.say == ("抱歉，没有听到您的回答。", ASK)
    final = d.silence()
    assert final is not None and final.outcome == "no_response"


def test_silence_then_answer() -> None:
    d = Dialog(bus_survey())
    d.start()
    d.silence()
    turn = d.digit("1")
    assert turn is not None and turn.outcome == "satisfied"


def test_wrong_key_is_a_no_match() -> None:
    d = Dialog(bus_survey())
    d.start()
    turn = d.digit("5")
    assert turn is not None and turn.say[0] == "抱歉，没有听清。"
    turn = d.digit("7")
    assert turn is not None and turn.outcome == "no_response"


def test_speech_without_a_recogniser_is_a_no_match() -> None:
    d = Dialog(bus_survey())
    d.start()
    turn = d.speech("")
    assert turn is not None and turn.listen_s and "(unrecognised speech)" in [
        ln.text for ln in d.transcript]


def test_recognised_speech_chooses_by_intent() -> None:
    d = Dialog(bus_survey(), RuleMatcher())
    d.start()
    turn = d.speech("我现在没空")
    assert turn is not None and turn.outcome == "refused"


def test_hang_up_before_the_end() -> None:
    d = Dialog(bus_survey())
    d.start()
    assert d.hung_up() == "hung_up"
    assert d.transcript[-1].text == "citizen hung up"
