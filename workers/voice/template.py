"""Call-script templates (外呼场景模板): what the robot says, the questions it
asks, the answers each accepts (keywords, patterns, examples, DTMF), retries on
silence or no match, and the outcome each path records.

A template is YAML (or JSON, which is YAML) validated by pydantic models; an
error names the file's line and the field. ``Template.sm3`` (SM3 of the
canonical JSON of the validated template) identifies a template version on
chain, so reformatting or comments do not change it but any content change does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chaincode.encoding import canonical_json, sm3_hex

Ident = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
TemplateName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Prompt = Annotated[str, Field(min_length=1, max_length=500)]
Digit = Annotated[str, Field(pattern=r"^[0-9*#]$")]

# Outcomes the call engine records by itself, before or outside the script.
SYSTEM_OUTCOMES = ("no_answer", "busy", "hung_up", "failed")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Answer(_Model):
    """One accepted answer: its semantic expression (问答交互语义表达式) and
    where it leads. Any of ``dtmf``, ``keywords``, ``patterns``, ``examples``
    may match; an answer without ``dtmf`` needs a speech recogniser."""

    intent: Ident
    dtmf: Digit | None = None
    keywords: list[Annotated[str, Field(min_length=1, max_length=32)]] = []
    patterns: list[Annotated[str, Field(min_length=1, max_length=200)]] = []
    examples: list[Annotated[str, Field(min_length=1, max_length=200)]] = []
    next: Ident

    @model_validator(mode="after")
    def _expressible(self) -> Answer:
        if not (self.dtmf or self.keywords or self.patterns or self.examples):
            raise ValueError("an answer needs dtmf, keywords, patterns or examples")
        for i, p in enumerate(self.patterns):
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"patterns.{i}: not a regular expression: "
                                 f"{e}") from None
        return self


class Retry(_Model):
    """How often to ask again, and what to say first, before giving up."""

    max: Annotated[int, Field(ge=0, le=5)] = 2
    say: Prompt | None = None


class Node(_Model):
    """A step of the script: say a prompt, then either ask (``answers``) or
    end the call with ``outcome``, or go on to ``next``."""

    say: Prompt
    answers: list[Answer] = []
    timeout_s: Annotated[float, Field(gt=0, le=30)] = 5.0
    on_silence: Retry = Retry()
    on_no_match: Retry = Retry()
    # Where the call goes once the retries are spent.
    silence_next: Ident | None = None
    no_match_next: Ident | None = None
    next: Ident | None = None
    outcome: Ident | None = None

    @model_validator(mode="after")
    def _one_way_on(self) -> Node:
        ways = [w for w, v in (("answers", self.answers), ("next", self.next),
                               ("outcome", self.outcome)) if v]
        if len(ways) != 1:
            raise ValueError("a node needs exactly one of answers, next, outcome "
                             f"(has {', '.join(ways) or 'none'})")
        if self.answers and not (self.silence_next and self.no_match_next):
            raise ValueError("a question needs silence_next and no_match_next")
        digits = [a.dtmf for a in self.answers if a.dtmf]
        if len(digits) != len(set(digits)):
            raise ValueError(f"two answers share a DTMF digit ({digits})")
        return self


class Template(_Model):
    name: TemplateName
    version: Annotated[int, Field(ge=1)]
    title: Prompt
    voice: Literal["cmn-latn-pinyin"] = "cmn-latn-pinyin"
    ring_timeout_s: Annotated[float, Field(gt=0, le=120)] = 30.0
    max_call_s: Annotated[float, Field(gt=0, le=1800)] = 300.0
    record_audio: bool = False
    encrypt_audio: bool = True
    outcomes: list[Ident] = Field(min_length=1)
    start: Ident
    nodes: dict[Ident, Node] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Template:
        clash = sorted(set(self.outcomes) & set(SYSTEM_OUTCOMES))
        if clash:
            raise _At(("outcomes",), f"{clash} are recorded by the engine itself "
                      f"(reserved: {', '.join(SYSTEM_OUTCOMES)})")
        if self.start not in self.nodes:
            raise _At(("start",), f"no node {self.start!r} (nodes: "
                      f"{', '.join(self.nodes)})")
        for name, node in self.nodes.items():
            for field, target in _targets(node):
                if target not in self.nodes:
                    raise _At(("nodes", name, *field),
                              f"no node {target!r} (nodes: {', '.join(self.nodes)})")
            if node.outcome and node.outcome not in self.outcomes:
                raise _At(("nodes", name, "outcome"),
                          f"{node.outcome!r} is not among outcomes "
                          f"({', '.join(self.outcomes)})")
        return self

    @property
    def sm3(self) -> str:
        """The SM3 hash that identifies this template version."""
        return sm3_hex(canonical_json(self.model_dump(mode="json")))

    @property
    def needs_speech(self) -> bool:
        """Whether some answer can be given only by voice (no DTMF digit)."""
        return any(a.dtmf is None for n in self.nodes.values() for a in n.answers)

    def prompts(self) -> Iterator[str]:
        """Every text the robot may say (for the TTS cache)."""
        for node in self.nodes.values():
            yield node.say
            for r in (node.on_silence, node.on_no_match):
                if r.say:
                    yield r.say


def _targets(node: Node) -> Iterator[tuple[tuple[str | int, ...], str]]:
    for field in ("next", "silence_next", "no_match_next"):
        if (v := getattr(node, field)) is not None:
            yield (field,), v
    for i, a in enumerate(node.answers):
        yield ("answers", i, "next"), a.next


class _At(ValueError):
    """A cross-field error that knows the path it is about."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


# ---------------------------------------------------------------- loading
class TemplateError(ValueError):
    """A template that does not validate: file, line, field and what is wrong."""

    def __init__(self, source: str, line: int | None, field: str,
                 message: str) -> None:
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {field}: {message}")
        self.source, self.line, self.field, self.message = (source, line, field,
                                                            message)


@dataclass
class _Located:
    """A YAML document as plain data, with the line of every node by path."""

    data: Any
    lines: dict[tuple[str | int, ...], int]


def _lines(node: yaml.Node, path: tuple[str | int, ...],
           lines: dict[tuple[str | int, ...], int]) -> None:
    """Record the line of every node by its path (a key's line for a mapping
    entry); a duplicate key is an error, since a plain load would keep one."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            key = str(k.value)
            if key in seen:
                raise TemplateError("", k.start_mark.line + 1,
                                    ".".join(map(str, (*path, key))),
                                    "duplicate key")
            seen.add(key)
            lines[(*path, key)] = k.start_mark.line + 1
            _lines(v, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _lines(v, (*path, i), lines)


def _load_located(text: str, source: str) -> _Located:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        raise TemplateError(source, mark.line + 1 if mark else None, "yaml",
                            str(e.problem)) from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow
        raise TemplateError(source, text.count("\n", 0, e.position) + 1, "yaml",
                            f"character {e.character:#06x} is not allowed in "
                            "YAML") from None
    if root is None:
        raise TemplateError(source, 1, "template", "the file is empty")
    lines: dict[tuple[str | int, ...], int] = {}
    try:
        _lines(root, (), lines)
    except TemplateError as e:
        raise TemplateError(source, e.line, e.field, e.message) from None
    return _Located(yaml.safe_load(text), lines)


def _line_of(lines: dict[tuple[str | int, ...], int],
             path: tuple[str | int, ...]) -> int | None:
    # A missing field has no line: report its parent's.
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path)


def parse_template(text: str, source: str = "<template>") -> Template:
    """Validate a template's text; a ``TemplateError`` names line and field."""
    doc = _load_located(text, source)
    if not isinstance(doc.data, dict):
        raise TemplateError(source, 1, "template", "must be a mapping of fields "
                            f"({', '.join(Template.model_fields)})")
    try:
        return Template.model_validate(doc.data)
    except ValidationError as e:
        err = e.errors()[0]
        path = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _At):
            path, msg = (*path, *ctx_err.path), str(ctx_err)
        if err["type"] == "extra_forbidden":
            msg = "unknown field (accepted: " + ", ".join(
                _fields_at(path[:-1])) + ")"
        elif isinstance(err["input"], str | int | float | bool):
            # YAML 1.1 reads yes/no/on/off as booleans: show what was read.
            msg = f"{msg} (got {err['input']!r})"
        field = ".".join(map(str, path)) or "template"
        raise TemplateError(source, _line_of(doc.lines, path), field, msg) from None


def _fields_at(path: tuple[str | int, ...]) -> list[str]:
    """The field names accepted at ``path`` (for "unknown field" errors)."""
    model: type[BaseModel] = Template
    i = 0
    while i < len(path):
        step = path[i]
        if model is Template and step == "nodes":
            model, i = Node, i + 2
        elif model is Node and step == "answers":
            model, i = Answer, i + 2
        elif model is Node and step in ("on_silence", "on_no_match"):
            model, i = Retry, i + 1
        else:
            break
    return list(model.model_fields)


def load_template(path: Path) -> Template:
    """Read and validate a template file (YAML or JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TemplateError(str(path), None, "file", f"not UTF-8 text: {e}") from None
    return parse_template(text, str(path))


def template_schema() -> dict[str, Any]:
    """The JSON Schema of a template file (for editors and other tools)."""
    return Template.model_json_schema()
