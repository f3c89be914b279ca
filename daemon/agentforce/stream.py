"""A streamed Agentforce turn (reference/agentforce.md §4): typed events and their sum. Pure.

``parse_event`` turns one server-sent event (``sse.SseEvent``) into the Agent API events it
carries, dispatching on ``data.message.type`` and never on the SSE ``event:`` name (§4.2:
the names are only observed, and every parser seen does the same). The data comes in two
shapes (§4.1): the envelope ``{timestamp, originEventId, traceId, offset, message: {...}}``
and, in the documented Inform sample, a sync-style body ``{"messages": [...], "_links"}``;
both are read. Empty data (POZIL's README: "Can be empty"), data that is not JSON and
unknown shapes carry nothing and are skipped with a log line.

``StreamedTurn`` adds the events up: the complete messages (``Inform``, ``Inquire``,
``Confirm``, ``Failure``, ``Escalate``, ...) are the answer, authoritative over the chunks;
``TextChunk`` text is provisional, and a ``ValidationFailureChunk`` withdraws the chunks
sent so far for the message being written (§4.1: "remove all previously rendered chunks").
Its ``apply`` also says what a voice composer should do with each event (``Speak``,
``Retract``, ``Commit``), so the turn forwards those without knowing the rules.

Shapes from §4.1 and §6 (REF-TS, the transcription of the reference types): TextChunk
``{offset, message, formatType}``, ValidationFailureChunk ``{offset, reason}``,
ProgressIndicator ``{indicatorType, message}``, EndOfTurn ``{}``. What ``offset`` counts is
not documented (the samples number chunks 1, 2, ...); it is kept, never relied on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from daemon.agentforce import wire
from daemon.agentforce.sse import SseEvent
from daemon.model import AgentMessage, AgentReply

log = logging.getLogger(__name__)


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProgressIndicator:
    """The agent is working ("Working on it"): keep the typing indicator alive."""

    text: str = ""
    indicator_type: str = ""


@dataclass(frozen=True, slots=True)
class TextChunk:
    """A provisional piece of the message being written."""

    text: str
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class ValidationFailure:
    """``ValidationFailureChunk``: the chunks of the message being written are withdrawn."""

    reason: str = ""
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A complete message (Inform, Inquire, Confirm, Failure, Escalate, SessionEnded, Error,
    or a type this code does not know yet), as the sync reply would carry it."""

    message: AgentMessage
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def type(self) -> str:
        return self.message.type

    @property
    def text(self) -> str:
        return self.message.text


@dataclass(frozen=True, slots=True)
class EndOfTurn:
    """The answer is complete; the server closes the stream (§4.3)."""


AgentEvent = ProgressIndicator | TextChunk | ValidationFailure | Message | EndOfTurn


def parse_event(event: SseEvent) -> tuple[AgentEvent, ...]:
    """The Agent API events one server-sent event carries (usually one, maybe none)."""
    if not event.data.strip():
        return ()
    try:
        data = json.loads(event.data)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the stack
        log.warning("agentforce stream: skipping a %r event whose data is not JSON", event.event)
        return ()
    if not isinstance(data, dict):
        log.warning("agentforce stream: skipping a %r event that is not an object", event.event)
        return ()
    messages = data.get("messages")
    if isinstance(messages, list):
        # The documented Inform sample is a sync-style body (§4.1).
        return tuple(e for m in messages if (e := _event(m, None)) is not None)
    message = data.get("message")
    if isinstance(message, dict):
        found = _event(message, data.get("offset"))
        return (found,) if found is not None else ()
    if isinstance(data.get("error"), str):
        # An error envelope (§7.2) sent as an event once the 200 headers were out.
        return (_error_event(data),)
    log.warning("agentforce stream: skipping a %r event of unknown shape", event.event)
    return ()


def _event(message: object, envelope_offset: object) -> AgentEvent | None:
    if not isinstance(message, dict):
        return None
    kind = message.get("type")
    if kind == "TextChunk":
        text = message.get("message")
        return TextChunk(
            text if isinstance(text, str) else "",
            _offset(message.get("offset", envelope_offset)),
        )
    if kind == "ValidationFailureChunk":
        reason = message.get("reason")
        return ValidationFailure(
            reason if isinstance(reason, str) else "",
            _offset(message.get("offset", envelope_offset)),
        )
    if kind == "ProgressIndicator":
        text, indicator = message.get("message"), message.get("indicatorType")
        return ProgressIndicator(
            text if isinstance(text, str) else "", indicator if isinstance(indicator, str) else ""
        )
    if kind == "EndOfTurn":
        return EndOfTurn()
    parsed = wire.agent_message(message)
    return Message(parsed, message) if parsed is not None else None


def _error_event(data: dict[str, Any]) -> Message:
    log.warning(
        "agentforce stream carries an error: %s %s",
        data.get("error"),
        str(data.get("message", ""))[:300],
    )
    return Message(AgentMessage("Error"), data)


def _offset(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# -- what a voice composer does with them ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Speak:
    """More text of the answer, in order (Markdown, as the agent writes it)."""

    text: str


@dataclass(frozen=True, slots=True)
class Retract:
    """Forget the text spoken since the last ``Commit``."""


@dataclass(frozen=True, slots=True)
class Commit:
    """The text spoken so far is a complete message: a later ``Retract`` keeps it."""


SpeechOp = Speak | Retract | Commit

_PARAGRAPH = "\n\n"  # between messages, as AgentReply.text joins them


class StreamedTurn:
    """The sum of one streamed turn's events."""

    def __init__(self) -> None:
        self.done = False  # EndOfTurn seen
        self.events = 0  # Agent API events applied (progress included)
        self._messages: list[AgentMessage] = []
        self._chunks: list[str] = []
        self._spoken = False  # some message text was spoken: the next one starts a paragraph

    def apply(self, event: AgentEvent) -> list[SpeechOp]:
        """Take one event in; what a voice composer should do about it."""
        self.events += 1
        if isinstance(event, TextChunk):
            if not event.text:
                return []
            text = event.text
            if not self._chunks and self._spoken:
                text = _PARAGRAPH + text
            self._chunks.append(event.text)
            return [Speak(text)]
        if isinstance(event, ValidationFailure):
            withdrawn = bool(self._chunks)
            self._chunks = []
            return [Retract()] if withdrawn else []
        if isinstance(event, Message):
            return self._complete(event.message)
        if isinstance(event, EndOfTurn):
            self.done = True
        return []

    def _complete(self, message: AgentMessage) -> list[SpeechOp]:
        self._messages.append(message)
        streamed, self._chunks = self._chunks, []
        has_text = bool(message.text.strip())
        if streamed:
            # Its text came in chunks already; where they differ from it, the composer's
            # final check against the whole answer speaks the difference.
            self._spoken = self._spoken or has_text
            return [Commit()]
        if not has_text:
            return []
        # A short answer may come as the complete message alone, no chunks (§4.3).
        ops: list[SpeechOp] = [Speak((_PARAGRAPH if self._spoken else "") + message.text)]
        self._spoken = True
        return [*ops, Commit()]

    def reply(self) -> AgentReply:
        """The answer: the complete messages; for a finished turn that sent chunks but no
        complete message, the chunks as one Inform (then they are all there is)."""
        if self._messages:
            return AgentReply(tuple(self._messages))
        text = "".join(self._chunks)
        if self.done and text.strip():
            return AgentReply((AgentMessage("Inform", text),))
        return AgentReply(())
