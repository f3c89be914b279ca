"""One turn: a user message in, exactly one answer (or one clear apology) out.

    text:  agent -> send text
    voice: download -> speech-to-text -> agent -> send text
                                              \\-> text-to-speech -> Ogg/Opus -> (after the
                                                  text went out) upload + send voice note

Every upstream call runs in its own cancel scope with its ``[timeouts]`` value, and the whole
turn has the ``turn`` deadline. Whatever fails, the user gets one message in place of the
answer; never silence, never two. The only exception is a text send whose outcome is unknown
(it timed out mid-request): the answer may have been delivered, so nothing more is sent rather
than risk a second message. If only the voice part fails, the text answer stands alone.

The turn talks to a ``Channel``, an ``Agent`` and a ``Speech`` and never asks which provider
is behind any of them.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import trio

from daemon import text as textfmt
from daemon.channels.base import Channel
from daemon.config import TextsConfig, TimeoutsConfig, VoiceConfig
from daemon.errors import UpstreamError, UpstreamTimeout
from daemon.model import AgentReply, Inbound, Kind, Transcript
from daemon.observe.logs import current_turn, hashed

log = logging.getLogger(__name__)

T = TypeVar("T")


class Agent(Protocol):
    async def ask(self, user_key: str, text: str) -> AgentReply: ...


class Speech(Protocol):
    async def transcribe(
        self, audio: bytes, mime_type: str, *, language: str | None = None
    ) -> Transcript: ...

    async def synthesize(self, text: str, *, language: str | None = None) -> bytes: ...


@dataclass
class TurnReport:
    """What one turn did, for its summary log line and the metrics."""

    turn_id: str
    kind: str
    user: str  # hashed
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    outcome: str = "pending"
    voice: str = "none"  # none | sent | skipped | failed
    error: str = ""
    # Upstream calls that got no HTTP answer at all (the HTTP ones are counted by the
    # clients' response hooks): (upstream, "timeout" | "error").
    failures: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        stages = " ".join(f"{k}={v:.3f}" for k, v in self.stages.items())
        err = f" error={self.error!r}" if self.error else ""
        return (
            f"turn={self.turn_id} done user={self.user} kind={self.kind} outcome={self.outcome} "
            f"voice={self.voice} {stages}{err}"
        ).rstrip()


class _TextGate:
    """Lets the voice note wait until the text answer went out, and learn whether it did."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self.sent = False

    def open(self, sent: bool) -> None:
        self.sent = sent
        self._event.set()

    async def wait(self) -> bool:
        await self._event.wait()
        return self.sent


class _Done(Exception):
    """Ends the answer path early; the message to the user has been chosen."""

    def __init__(self, outcome: str, reply: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.reply = reply


class Turn:
    """Runs turns. One instance serves every user; per-turn state lives in ``run``."""

    def __init__(
        self,
        *,
        channel: Channel,
        agent: Agent,
        speech: Speech,
        timeouts: TimeoutsConfig,
        voice: VoiceConfig,
        texts: TextsConfig,
        on_report: Callable[[TurnReport], None] | None = None,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._channel = channel
        self._agent = agent
        self._speech = speech
        self._timeouts = timeouts
        self._voice = voice
        self._texts = texts
        self._on_report = on_report
        self._clock = clock

    async def run(self, message: Inbound) -> TurnReport:
        report = TurnReport(
            turn_id=secrets.token_hex(4),
            kind=message.kind.value,
            user=hashed(message.user.key),
        )
        context = current_turn.set(report.turn_id)
        try:
            await self._run_turn(message, report)
        finally:
            current_turn.reset(context)
        self._emit(report)  # carries turn=<id> itself, like every line the turn logged
        return report

    async def _run_turn(self, message: Inbound, report: TurnReport) -> None:
        started = self._clock()
        # Set once any part of the answer (or the apology) may have reached the user.
        delivered = _Delivery()
        with trio.move_on_after(self._timeouts.turn) as deadline:
            try:
                async with trio.open_nursery() as background:  # acknowledge, voice note
                    background.start_soon(self._acknowledge, message)
                    await self._answer(message, report, delivered, background)
            except Exception as exc:  # a bug must cost one apology, not the lane
                log.exception("turn %s failed unexpectedly", report.turn_id)
                report.outcome = "error"
                report.error = type(exc).__name__
        if deadline.cancelled_caught:
            report.error = report.error or f"turn deadline {self._timeouts.turn:g}s"
            if report.outcome == "pending":
                report.outcome = "timeout"
            if report.voice == "none" and self._wants_voice(message, report.outcome):
                report.voice = "failed"  # the text stands; the voice note ran out of time
        if not delivered.maybe:
            # Nothing reached the user yet (deadline, bug): one apology, with its own budget.
            await self._say(message, self._texts.agent_down, report, delivered)
        report.stages["total"] = self._clock() - started

    # -- the answer path ----------------------------------------------------------------------

    async def _answer(
        self,
        message: Inbound,
        report: TurnReport,
        delivered: _Delivery,
        background: trio.Nursery,
    ) -> None:
        """The answer path. Ends by itself on every expected failure (never raises them:
        an exception leaving a nursery body comes out wrapped in an ExceptionGroup)."""
        try:
            question, language = await self._question(message, report)
            answer, outcome = await self._ask(message, question, report)
        except _Done as done:
            report.outcome = done.outcome
            await self._say(message, done.reply, report, delivered)
            return
        gate = _TextGate()
        if self._wants_voice(message, outcome):
            background.start_soon(self._send_voice, message, answer, language, gate, report)
        try:
            await self._send_text(message, textfmt.to_whatsapp(answer), report, delivered)
            report.outcome = outcome
        except _Silent:
            pass
        finally:
            gate.open(delivered.sent)
        if not delivered.maybe:  # the send failed for sure: one apology, if it can get through
            await self._say(message, self._texts.agent_down, report, delivered)

    async def _acknowledge(self, message: Inbound) -> None:
        """Read receipt + typing indicator. Best effort: the answer matters, not the ticks."""
        try:
            with trio.move_on_after(self._timeouts.whatsapp):
                await self._channel.acknowledge(message)
        except UpstreamError as exc:
            log.info("acknowledge failed: %s", exc)

    async def _question(self, message: Inbound, report: TurnReport) -> tuple[str, str | None]:
        if message.kind is Kind.UNSUPPORTED:
            raise _Done("unsupported", self._texts.unsupported)
        if message.kind is Kind.TEXT:
            return message.text, None
        assert message.media is not None  # the parser sets media on every VOICE message
        media = message.media
        try:
            audio = await self._timed(
                report,
                "download",
                "whatsapp",
                self._timeouts.download,
                lambda: self._channel.fetch_media(media),
            )
            transcript = await self._timed(
                report,
                "stt",
                "elevenlabs-stt",
                self._timeouts.stt,
                lambda: self._speech.transcribe(audio, media.mime_type),
            )
        except UpstreamError as exc:
            report.error = str(exc)
            raise _Done("not_understood", self._texts.not_understood) from None
        if not transcript.text.strip():
            raise _Done("no_speech", self._texts.no_speech)
        return transcript.text, transcript.language

    async def _ask(self, message: Inbound, question: str, report: TurnReport) -> tuple[str, str]:
        try:
            reply = await self._timed(
                report,
                "agent",
                "agentforce",
                self._timeouts.agent,
                lambda: self._agent.ask(message.user.key, question),
            )
        except UpstreamError as exc:
            report.error = str(exc)
            raise _Done("agent_down", self._texts.agent_down) from None
        answer = reply.text
        if reply.has("Escalate"):
            return (f"{answer}\n\n{self._texts.escalated}" if answer else self._texts.escalated), (
                "escalated"
            )
        if answer and not reply.has("Failure", "Error"):
            return answer, "answered"
        # Failure / Error / an empty reply: the agent's own words there are often technical.
        report.error = "agent reply: " + (",".join(m.type for m in reply.messages) or "empty")
        raise _Done("agent_failure", self._texts.agent_down)

    def _wants_voice(self, message: Inbound, outcome: str) -> bool:
        if outcome != "answered" or self._voice.reply == "never":
            return False
        return self._voice.reply == "always" or message.kind is Kind.VOICE

    async def _send_text(
        self, message: Inbound, text: str, report: TurnReport, delivered: _Delivery
    ) -> None:
        delivered.begin()
        try:
            await self._timed(
                report,
                "send",
                "whatsapp",
                self._timeouts.whatsapp,
                lambda: self._channel.send_text(message.user, text),
            )
        except UpstreamTimeout as exc:
            report.error = str(exc)  # outcome unknown: the text may be on its way
            report.outcome = "send_unknown"
            raise _Silent() from None
        except UpstreamError as exc:
            delivered.failed()
            report.error = str(exc)
            report.outcome = "send_failed"
            raise _Silent() from None
        delivered.done()

    async def _send_voice(
        self,
        message: Inbound,
        answer: str,
        language: str | None,
        gate: _TextGate,
        report: TurnReport,
    ) -> None:
        spoken = textfmt.for_speech(answer)
        if not spoken or len(spoken) > self._voice.max_tts_chars:
            report.voice = "skipped"
            return
        try:
            audio = await self._timed(
                report,
                "tts",
                "elevenlabs-tts",
                self._timeouts.tts,
                lambda: self._speech.synthesize(spoken, language=language),
            )
            if not await gate.wait():
                report.voice = "skipped"  # no text went out: a lone voice note would confuse
                return
            await self._timed(
                report,
                "voice_send",
                "whatsapp",
                self._timeouts.whatsapp,
                lambda: self._channel.send_voice(message.user, audio),
            )
            report.voice = "sent"
        except UpstreamError as exc:
            # The text answer stands; nothing more is sent (one answer, never two).
            report.voice = "failed"
            log.warning("turn %s voice note failed: %s", report.turn_id, exc)

    async def _say(
        self, message: Inbound, text: str, report: TurnReport, delivered: _Delivery
    ) -> None:
        """Send a canned message in place of the answer, once, with its own time budget."""
        if delivered.maybe:
            return
        delivered.begin()
        try:
            with trio.CancelScope(shield=True), trio.move_on_after(self._timeouts.whatsapp):
                await self._channel.send_text(message.user, text)
                delivered.done()
                return
        except UpstreamError as exc:
            log.error("turn %s could not tell the user: %s", report.turn_id, exc)
            delivered.failed()
            return
        delivered.unknown()

    async def _timed(
        self,
        report: TurnReport,
        stage: str,
        upstream: str,
        seconds: float,
        call: Callable[[], Awaitable[T]],
    ) -> T:
        started = self._clock()
        try:
            with trio.fail_after(seconds):
                return await call()
        except trio.TooSlowError:
            report.failures.append((upstream, "timeout"))
            raise UpstreamTimeout(upstream, seconds) from None
        except UpstreamError as exc:
            if exc.status is None:
                report.failures.append((upstream, "error"))
            raise
        finally:
            report.stages[stage] = report.stages.get(stage, 0.0) + self._clock() - started

    def _emit(self, report: TurnReport) -> None:
        level = (
            logging.INFO
            if report.outcome in ("answered", "unsupported", "no_speech")
            else (logging.WARNING)
        )
        log.log(level, report.summary())
        if self._on_report is not None:
            self._on_report(report)


class _Silent(Exception):
    """The text send failed; the outcome is recorded, the user is told nothing more here."""


class _Delivery:
    """Has anything reached, or possibly reached, the user in this turn?"""

    def __init__(self) -> None:
        self.maybe = False  # a send was attempted and did not fail for sure
        self.sent = False  # a send succeeded

    def begin(self) -> None:
        self.maybe = True

    def done(self) -> None:
        self.sent = True

    def failed(self) -> None:
        self.maybe = self.sent

    def unknown(self) -> None:
        self.maybe = True
