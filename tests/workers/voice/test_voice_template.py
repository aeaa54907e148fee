"""Call-script templates: the example validates; every kind of mistake is named
by line and field; the SM3 hash follows content, not formatting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from voice_helpers import BUS_SURVEY, bus_survey

from workers.voice.template import TemplateError, parse_template, template_schema

TEXT = BUS_SURVEY.read_text(encoding="utf-8")


def test_example_template_is_valid() -> None:
    t = bus_survey()
    assert t.name == "bus-survey" and t.version == 1
    assert not t.needs_speech  # every answer has a DTMF digit
    assert "感谢您的支持，再见。" in set(t.prompts())
    assert len(t.sm3) == 64


def test_hash_follows_content_not_formatting() -> None:
    as_json = json.dumps(yaml.safe_load(TEXT), ensure_ascii=False, indent=1)
    assert parse_template(as_json).sm3 == bus_survey().sm3  # JSON is accepted
    assert parse_template("# a comment\n" + TEXT).sm3 == bus_survey().sm3
    changed = TEXT.replace("version: 1", "version: 2")
    assert parse_template(changed).sm3 != bus_survey().sm3
    reworded = TEXT.replace("感谢您的支持", "谢谢您的支持")
    assert parse_template(reworded).sm3 != bus_survey().sm3


def _line_of(text: str, fragment: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if fragment in ln)


# (change, field named, message fragment, the line named: its text; None: the
# file's changed line)
@pytest.mark.parametrize(("old", "new", "field", "says", "at"), [
    ("next: thanks", "next: thank", "nodes.ask.answers.0.next", "no node 'thank'",
     None),
    ("outcome: refused", "outcome: declined", "nodes.bye.outcome",
     "not among outcomes", None),
    ('dtmf: "2"', 'dtmf: "1"', "nodes.ask", "share a DTMF digit", "  ask:"),
    ('dtmf: "9"', 'dtmf: "12"', "nodes.ask.answers.2.dtmf", "should match", None),
    ("intent: refuse", "intent: yes", "nodes.ask.answers.2.intent", "got True",
     None),
    ("timeout_s: 5", "timeout_s: 50", "nodes.ask.timeout_s", "30", None),
    ("    next: ask", "    nxet: ask", "nodes.greet.nxet", "accepted: say", None),
    ("start: greet", "start: hello", "start", "no node 'hello'", None),
    ("name: bus-survey", "name: bus survey", "name", "should match", None),
    ("outcomes: [satisfied,", "outcomes: [busy, satisfied,", "outcomes",
     "engine itself", None),
    ("{max: 1, say: 抱歉，没有听清。}", "{max: 9}", "nodes.ask.on_no_match.max",
     "less than or equal to 5", "on_no_match: {max: 9}"),
    ("    outcome: satisfied", "    outcome: satisfied\n    next: bye",
     "nodes.thanks", "exactly one of answers, next, outcome", "  thanks:"),
    ('patterns: ["^(是|对|嗯)"]', 'patterns: ["(是"]', "nodes.ask.answers.0",
     "not a regular expression", "intent: agree"),
])
def test_mistake_is_named_by_line_and_field(old: str, new: str, field: str,
                                            says: str, at: str | None) -> None:
    assert old in TEXT
    text = TEXT.replace(old, new, 1)
    with pytest.raises(TemplateError) as info:
        parse_template(text, "t.yaml")
    err = info.value
    assert err.field == field, str(err)
    assert says in err.message, str(err)
    assert err.line == _line_of(text, at or new.splitlines()[0].strip()), str(err)
    assert str(err).startswith(f"t.yaml:{err.line}: {field}: ")


def test_missing_field_points_at_its_parent() -> None:
    text = TEXT.replace("    say: 感谢您的支持，再见。\n", "")
    with pytest.raises(TemplateError) as info:
        parse_template(text, "t.yaml")
    assert info.value.field == "nodes.thanks.say"
    assert info.value.line == _line_of(text, "  thanks:")


@pytest.mark.parametrize(("text", "field", "line"), [
    ("name: [unclosed\n", "yaml", 2),
    ("", "template", 1),
    ("- a list\n", "template", 1),
    ("name: a\nname: b\n", "name", 2),
    ("name: a\ntitle: \x91\n", "yaml", 2),  # a C1 control character
])
def test_unreadable_files(text: str, field: str, line: int) -> None:
    with pytest.raises(TemplateError) as info:
        parse_template(text, "t.yaml")
    assert (info.value.field, info.value.line) == (field, line), str(info.value)


def test_schema_describes_the_fields() -> None:
    schema = template_schema()
    assert {"name", "version", "nodes", "outcomes", "start"} <= set(
        schema["properties"])


def test_cli_check(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(TEXT.replace("next: sorry", "next: sory"), encoding="utf-8")
    run = [sys.executable, "-m", "cli.main", "voice", "template", "check"]
    ok = subprocess.run([*run, str(BUS_SURVEY)], capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert bus_survey().sm3 in ok.stdout
    failed = subprocess.run([*run, str(bad)], capture_output=True, text=True,
                            timeout=60)
    assert failed.returncode == 2
    line = _line_of(bad.read_text(encoding="utf-8"), "next: sory")
    assert f"bad.yaml:{line}: nodes.ask.answers.1.next: no node 'sory'" in \
        failed.stderr
    assert "Traceback" not in failed.stderr
