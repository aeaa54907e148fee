"""The script of one call as a state machine, with no audio and no SIP: the
call engine feeds it what happened (a prompt ended, a digit, recognised speech,
silence, hang-up) and it answers with the next ``Turn`` (what to say, then
listen or end). Unit tests drive it directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from workers.voice.template import Answer, Node, Template


class IntentMatcher(Protocol):
    def match(self, text: str, answers: list[Answer]) -> Answer | None: ...


@dataclass(frozen=True)
class Turn:
    """What the robot does next: say ``say`` in order, then listen for
    ``listen_s`` seconds, or end the call with ``outcome``."""

    say: tuple[str, ...]
    listen_s: float | None = None
    outcome: str | None = None


@dataclass
class Line:
    who: Literal["robot", "citizen", "system"]
    text: str


@dataclass
class Dialog:
    template: Template
    matcher: IntentMatcher | None = None
    node_name: str = ""
    outcome: str | None = None
    transcript: list[Line] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)  # node -> intent
    _silences: int = 0
    _misses: int = 0

    @property
    def node(self) -> Node:
        return self.template.nodes[self.node_name]

    @property
    def listening(self) -> bool:
        return self.outcome is None and bool(self.node_name and self.node.answers)

    def start(self) -> Turn:
        return self._enter(self.template.start, ())

    def _enter(self, name: str, before: tuple[str, ...]) -> Turn:
        said = list(before)
        # Follow plain ``next`` steps at once: their prompts play back to back.
        for _ in range(len(self.template.nodes) + 1):
            self.node_name, node = name, self.template.nodes[name]
            self._silences = self._misses = 0
            said.append(node.say)
            self.transcript.append(Line("robot", node.say))
            if node.outcome:
                self.outcome = node.outcome
                return Turn(tuple(said), outcome=node.outcome)
            if node.answers:
                return Turn(tuple(said), listen_s=node.timeout_s)
            assert node.next is not None  # the template validator ensures it
            name = node.next
        raise RuntimeError(f"template {self.template.name} loops without a question")

    def _chosen(self, answer: Answer) -> Turn:
        self.answers[self.node_name] = answer.intent
        return self._enter(answer.next, ())

    def digit(self, d: str) -> Turn | None:
        """A DTMF digit; None while the robot is not asking anything."""
        if not self.listening:
            return None
        self.transcript.append(Line("citizen", f"DTMF {d}"))
        for a in self.node.answers:
            if a.dtmf == d:
                return self._chosen(a)
        return self.no_match()

    def speech(self, text: str) -> Turn | None:
        """Recognised speech (empty text: speech that was heard but not
        recognised, e.g. without a Mandarin model)."""
        if not self.listening:
            return None
        self.transcript.append(Line("citizen", text or "(unrecognised speech)"))
        found = (self.matcher.match(text, self.node.answers)
                 if text and self.matcher else None)
        return self._chosen(found) if found else self.no_match()

    def silence(self) -> Turn | None:
        if not self.listening:
            return None
        self.transcript.append(Line("system", "silence"))
        self._silences += 1
        return self._retry(self._silences, self.node.on_silence.max,
                           self.node.on_silence.say, self.node.silence_next)

    def no_match(self) -> Turn:
        self._misses += 1
        return self._retry(self._misses, self.node.on_no_match.max,
                           self.node.on_no_match.say, self.node.no_match_next)

    def _retry(self, count: int, most: int, say: str | None,
               give_up: str | None) -> Turn:
        node = self.node
        if count > most:
            assert give_up is not None  # validated: questions name both
            return self._enter(give_up, ())
        again = (say, node.say) if say else (node.say,)
        for text in again:
            self.transcript.append(Line("robot", text))
        return Turn(again, listen_s=node.timeout_s)

    def hung_up(self) -> str:
        """The citizen hung up: the outcome stands if the script reached one."""
        if self.outcome is None:
            self.outcome = "hung_up"
            self.transcript.append(Line("system", "citizen hung up"))
        return self.outcome
