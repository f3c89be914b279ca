"""One turn: a user message in, exactly one answer (or one clear apology) out.

    text:  agent -> send text
    voice: download -> speech-to-text -> agent -> send text
                                              \\-> text-to-speech -> Ogg/Opus -> (after the
                                                  text went out) upload + send voice note

Every upstream call runs in its own cancel scope with its ``[timeouts]`` value, and the whole
turn has the ``turn`` deadline. Whatever fails, the user gets one message in place of the
answer; never silence, never two. The only exception is a text send whose outcome is unknown
(it timed out, or its answer was lost after the request went out): the answer may have been
delivered, so nothing more is sent rather than risk a second message. If only the voice part
fails, the text answer stands alone. Upstream calls go through a ``Guard`` (circuit breaker,
safe retries) when one is given, and the turn notes its progress in a ``Journal`` so that
after a crash it resumes where it stopped.

Around the answer, two optional messages (``[ux]``): a holding message when the answer takes
longer than ``holding_after`` (never when the answer comes first: both take the turn's send
lock, and the holding message only goes if the lock is free and the answer has not started),
and, for voice notes, an echo of what speech-to-text understood. Canned texts come in the
user's language: from speech-to-text, else from the script they typed in. For voice notes
the user's agent session is opened while the audio downloads and is transcribed.

The turn talks to a ``Channel``, an ``Agent`` and a ``Speech`` and never asks which provider
is behind any of them.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio
from cachetools import LRUCache, TTLCache

from daemon import language as languages
from daemon import text as textfmt
from daemon.cache.stt import TranscriptCache, audio_digest
from daemon.channels.base import Channel
from daemon.config import (
    LimitsConfig,
    TextsConfig,
    TextTable,
    TimeoutsConfig,
    UxConfig,
    VoiceConfig,
)
from daemon.errors import UpstreamError, UpstreamTimeout
from daemon.limits import Budget, Limit, MemoryBudget, MemoryUserLimits, Upstream, UserLimits
from daemon.model import AgentReply, Inbound, Kind, Media, Transcript
from daemon.observe.logs import current_turn, hashed, message_tag
from daemon.observe.stages import current_stages
from daemon.resilience.breaker import CircuitOpen
from daemon.resilience.guard import Guard
from daemon.speech import audio as audio_files
from daemon.state.base import Journal, Stage, TurnRecord
from daemon.turn import delivery as deliveries
from daemon.turn.report import TurnReport
from daemon.turn.upstreams import Agent, Speech

# Every line of the turn logs as "daemon.turn": the name operators filter journalctl on.
log = logging.getLogger("daemon.turn")

T = TypeVar("T")


# A turn that took the daemon down this many times is given up (logged, not retried).
MAX_ATTEMPTS = 3
# Outcomes whose message is a canned text, not the agent's answer.
_CANNED = frozenset(
    {
        "unsupported",
        "no_speech",
        "not_understood",
        "agent_down",
        "agent_failure",
        "timeout",
        "error",
        "send_failed",  # the answer was refused; the apology took its place
        "too_long",  # a voice note over [voice] max_seconds
        "undecodable",  # audio that does not decode: not sent to speech-to-text
        "over_budget",  # a daily budget of the daemon is spent ([limits] budget_*)
        *(f"limited_{limit.value}" for limit in Limit),  # a per-user limit ([limits])
    }
)
# Per-user limits the web layer decides as a message comes in (daemon/intake.py): the turn of
# the one message per window that gets a notice finds its outcome in the journal, and says it.
NOTICES: dict[str, str] = {
    f"limited_{Limit.RATE.value}": "slow_down",
    f"limited_{Limit.DAILY_TURNS.value}": "daily_limit",
}
# Canned outcomes that came from a passing trouble: a turn resumed before its apology went
# out asks the agent again instead of apologising.
_ASK_AGAIN = frozenset({"agent_down", "timeout", "error"})


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
    """Runs turns. One instance serves every user; per-turn state lives in ``_Flow``."""

    def __init__(
        self,
        *,
        channel: Channel,
        agent: Agent,
        speech: Speech,
        timeouts: TimeoutsConfig,
        voice: VoiceConfig,
        texts: TextsConfig,
        ux: UxConfig | None = None,
        transcripts: TranscriptCache | None = None,
        guard: Guard | None = None,
        journal: Journal | None = None,
        on_report: Callable[[TurnReport], None] | None = None,
        clock: Callable[[], float] = trio.current_time,
        remembered_users: int = 10_000,
        remembered_ttl: float = 86400.0,
        limits: UserLimits | None = None,
        budget: Budget | None = None,
        measure: Callable[[bytes, float], Awaitable[float]] | None = None,
    ) -> None:
        self._channel = channel
        self._agent = agent
        self._speech = speech
        self._timeouts = timeouts
        self._voice = voice
        self._texts = texts
        self._ux = ux or UxConfig(holding_after=0.0)
        self._transcripts = transcripts
        self._guard = guard
        self._journal = journal
        self._on_report = on_report
        self._clock = clock
        # Without limits or budgets, none: a LimitsConfig of zeros turns every one off.
        unlimited = LimitsConfig(burst=0, per_minute=0.0, daily_turns=0)
        unlimited = dataclasses.replace(unlimited, daily_stt_seconds=0, daily_tts_characters=0)
        self._limits = MemoryUserLimits(unlimited) if limits is None else limits
        self._budget = MemoryBudget(unlimited) if budget is None else budget
        # How an inbound voice note's length is found (PyAV, in a worker thread).
        self._measure = measure or (lambda data, limit: audio_files.measure(data, limit=limit))
        # user key -> the language of their last turn ([lanes] remembered_users / _ttl).
        self._languages: TTLCache[str, str] = TTLCache(maxsize=remembered_users, ttl=remembered_ttl)
        # user key -> ids of their deferred messages, oldest first: a later message of the
        # same user waits behind them, so answers keep the order of the questions.
        self._deferred: LRUCache[str, list[str]] = LRUCache(maxsize=remembered_users)

    async def run(self, message: Inbound) -> TurnReport:
        report = TurnReport(
            turn_id=secrets.token_hex(4),
            kind=message.kind.value,
            user=hashed(message.user.key),
            message_id=message.message_id,
        )
        context = current_turn.set(report.turn_id)
        stage_context = current_stages.set(report.stages)  # for steps timed deeper down
        try:
            flow = _Flow(message, report)
            if message.kind is not Kind.TEXT:  # a text carries its own evidence: its script
                flow.remembered_language = self._languages.get(message.user.key)
            try:
                if await self._behind_deferred(message):
                    flow.deferred = True
                    report.outcome = "deferred"
                    log.info("waiting behind an earlier deferred message of this user")
                elif await self._resume(flow):
                    await self._run_turn(flow)
                    if flow.deferred:
                        # Nothing reached the user and WhatsApp said "not now": the row stays
                        # open and the daemon tries the turn again later (daemon/resume.py).
                        log.warning("turn deferred: nothing could be delivered now")
                    else:
                        await self._note(flow, Stage.DONE, outcome=report.outcome)
                self._track_deferral(message, deferred=flow.deferred)
                if flow.language:
                    self._languages[message.user.key] = flow.language
            finally:
                if flow.counted:
                    await self._release(message.message_id)
        finally:
            current_stages.reset(stage_context)
            current_turn.reset(context)
        self._emit(report)  # carries turn=<id> itself, like every line the turn logged
        return report

    async def _behind_deferred(self, message: Inbound) -> bool:
        """Whether an earlier message of this user is deferred and not finished yet: then
        this one waits too (it is tried again after it, in order)."""
        queue = self._deferred.get(message.user.key)
        while queue and queue[0] != message.message_id:
            earlier = await self._journal.get(queue[0]) if self._journal is not None else None
            if earlier is not None and not earlier.finished:
                return True
            queue.pop(0)  # finished meanwhile (or given up): no longer in the way
        return False

    def _track_deferral(self, message: Inbound, *, deferred: bool) -> None:
        key, message_id = message.user.key, message.message_id
        queue = self._deferred.get(key, [])
        if deferred and message_id not in queue:
            queue.append(message_id)
        elif not deferred and message_id in queue:
            queue.remove(message_id)
        if queue:
            self._deferred[key] = queue
        else:
            self._deferred.pop(key, None)

    async def _release(self, message_id: str) -> None:
        """Un-count this run: it ended (or was cancelled) without taking the daemon down."""
        assert self._journal is not None
        with trio.CancelScope(shield=True):  # a drain's cancellation must not skip it
            try:
                await self._journal.release(message_id)
            except Exception as exc:  # the store may be closing; the count errs towards safety
                log.info("could not release the turn's attempt: %s", exc)

    async def _resume(self, flow: _Flow) -> bool:
        """Look the message up in the journal: where a restarted turn stands. False when the
        turn must not run (it took the daemon down too often)."""
        if self._journal is None:
            return True
        message_id = flow.message.message_id
        flow.record = await self._journal.get(message_id)
        attempts = await self._journal.attempt(message_id)
        flow.counted = True
        if attempts > MAX_ATTEMPTS:
            # Runs that ended normally are released, so these are crashes: the turn itself
            # takes the daemon down. Give up, but still tell the user once.
            log.error(
                "turn of message %s given up after %d attempts",
                message_tag(message_id),
                attempts - 1,
            )
            flow.report.outcome = "gave_up"
            if flow.record is not None and flow.record.reached(Stage.TEXT_SENT):
                flow.delivery.begin()  # the answer went out before: nothing more
            else:
                await self._say(flow, flow.texts(self._texts).agent_down)
            await self._journal.progress(message_id, Stage.FAILED, outcome="gave_up")
            return False
        if flow.record is not None and flow.record.stage != Stage.RECEIVED:
            flow.report.resumed = flow.record.stage.value
            flow.language = flow.record.transcript_language or flow.language
            log.info("resuming a turn at stage %s", flow.record.stage.value)
        return True

    async def _note(self, flow: _Flow, stage: Stage, **fields: Any) -> None:
        """Write down how far the turn got. The write runs in a thread that is not abandoned
        on cancellation, so a turn cancelled mid-note still leaves a consistent row."""
        if self._journal is not None:
            await self._journal.progress(flow.message.message_id, stage, **fields)
            log.debug("turn reached %s", stage.value)

    async def _run_turn(self, flow: _Flow) -> None:
        started = flow.started = self._clock()
        report = flow.report
        if flow.message.kind is Kind.TEXT:
            flow.language = languages.from_script(flow.message.text)
        if self._budget.exhausted(Upstream.WHATSAPP):
            # Nothing may be sent today: not even an apology, and no agent call to pay for
            # an answer nobody can receive. The operator's alert is the budget gauge.
            report.outcome = "over_budget"
            flow.dropped = True
            report.stages["total"] = self._clock() - started
            return
        with trio.move_on_after(self._timeouts.turn) as deadline:
            try:
                # The background nursery holds what runs beside the answer: the read
                # receipt, the holding message, the session pre-warm and the voice note.
                async with trio.open_nursery() as background:
                    background.start_soon(self._acknowledge, flow.message)
                    if self._ux.holding_after > 0 and flow.message.kind is not Kind.UNSUPPORTED:
                        background.start_soon(self._hold, flow)
                    await self._answer(flow, background)
                    flow.settled.set()  # the holding message is moot from here on
            except Exception as exc:  # a bug must cost one apology, not the lane
                log.exception("turn %s failed unexpectedly", report.turn_id)
                report.outcome = "error"
                report.error = type(exc).__name__
        if deadline.cancelled_caught:
            report.error = report.error or f"turn deadline {self._timeouts.turn:g}s"
            if report.outcome == "pending":
                report.outcome = "timeout"
            if report.voice == "none" and self._wants_voice(flow.message, report.outcome):
                report.voice = "failed"  # the text stands; the voice note ran out of time
        if not flow.delivery.maybe:
            # Nothing reached the user yet (deadline, bug): one apology, with its own budget.
            await self._say(flow, flow.texts(self._texts).agent_down)
        report.language = flow.language or ""
        report.stages["total"] = self._clock() - started

    # -- the answer path ----------------------------------------------------------------------

    async def _answer(self, flow: _Flow, background: trio.Nursery) -> None:
        """The answer path. Ends by itself on every expected failure (never raises them:
        an exception leaving a nursery body comes out wrapped in an ExceptionGroup)."""
        record = flow.record
        try:
            if (
                record is not None
                and record.outcome in NOTICES
                and not record.reached(Stage.ANSWERED)
            ):
                # Over a per-user limit as it came in: this message is the one of its window
                # that gets the notice (the others were dropped at intake).
                notice = getattr(flow.texts(self._texts), NOTICES[record.outcome])
                raise _Done(record.outcome, notice)
            if (
                record is not None
                and record.reached(Stage.ANSWERED)
                and record.answer
                and not (record.outcome in _ASK_AGAIN and not record.reached(Stage.TEXT_SENT))
            ):
                answer, outcome = record.answer, record.outcome or "answered"
                if outcome in _CANNED:
                    raise _Done(outcome, answer)
            else:
                question = await self._question(flow, background)
                answer, outcome = await self._ask(flow, question)
                await self._note(flow, Stage.ANSWERED, answer=answer, outcome=outcome)
        except _Done as done:
            flow.report.outcome = done.outcome
            if not done.reply:  # dropped: over a limit whose notice went out already
                flow.dropped = True
                return
            await self._note(flow, Stage.ANSWERED, answer=done.reply, outcome=done.outcome)
            if record is not None and record.reached(Stage.TEXT_SENT):
                flow.delivery.begin()  # said before the restart: not again
                flow.delivery.done()
                return
            await self._say(flow, done.reply)
            if flow.delivery.sent and not done.outcome.startswith("limited_"):
                await self._speak_canned(flow, done.reply)  # one message per limit notice
            return
        gate = _TextGate()
        voice_sent = record is not None and record.reached(Stage.VOICE_SENT)
        text = textfmt.to_whatsapp(answer)
        if self._wants_voice(flow.message, outcome) and not voice_sent:
            voice = await self._voice_allowance(flow, answer)
            if voice.note:
                text = f"{text}\n\n{voice.note}"
            if voice.spoken:
                background.start_soon(self._send_voice, flow, voice, gate)
            else:
                flow.report.voice = "skipped"
        try:
            if record is not None and record.reached(Stage.TEXT_SENT):
                flow.delivery.begin()  # sent before the restart: not again
                flow.delivery.done()
            else:
                await self._send_text(flow, text)
            flow.report.outcome = outcome
        except _Silent:
            pass
        finally:
            gate.open(flow.delivery.sent)
        if not flow.delivery.maybe:  # the send failed for sure: one apology, if it gets through
            await self._say(flow, flow.texts(self._texts).agent_down)

    async def _acknowledge(self, message: Inbound) -> None:
        """Read receipt + typing indicator. Best effort: the answer matters, not the ticks."""
        try:
            with trio.move_on_after(self._timeouts.whatsapp):
                await self._channel.acknowledge(message)
        except UpstreamError as exc:
            log.info("acknowledge failed: %s", exc)

    async def _prewarm(self, user_key: str) -> None:
        """Open the agent session while the voice note is fetched and transcribed."""
        try:
            with trio.move_on_after(self._timeouts.agent):
                await self._agent.prepare(user_key)
        except UpstreamError as exc:  # the ask that follows meets the same problem, and says so
            log.info("agent session pre-warm failed: %s", exc)

    async def _question(self, flow: _Flow, background: trio.Nursery) -> str:
        message = flow.message
        if message.kind is Kind.UNSUPPORTED:
            raise _Done("unsupported", flow.texts(self._texts).unsupported)
        if message.kind is Kind.TEXT:
            return message.text
        assert message.media is not None  # the parser sets media on every VOICE message
        transcript = await self._transcribe(flow, message.media, background)
        flow.language = languages.normalize(transcript.language) or flow.language
        if not transcript.text.strip():
            raise _Done("no_speech", flow.texts(self._texts).no_speech)
        if self._ux.echo_transcript:
            echo = flow.texts(self._texts).transcript_echo.replace(
                "{transcript}", transcript.text.strip()
            )
            await self._extra(flow, "echo", echo)
        return transcript.text

    async def _transcribe(self, flow: _Flow, media: Media, background: trio.Nursery) -> Transcript:
        """The voice note's words: from the transcript cache when WhatsApp gave its sha256
        (forwarded voice notes come again and again), else download + speech-to-text, with
        the user's agent session opened meanwhile (pre-warm). Not on a cache hit: there is
        nothing to overlap it with, and the answer may come from the response cache."""
        record = flow.record
        if record is not None and record.transcript is not None:
            return Transcript(record.transcript, record.transcript_language)  # before a restart
        cache, report = self._transcripts, flow.report
        # Looked up by the digest the webhook states (a forwarded note skips the download),
        # stored only under the digest of what was downloaded (daemon/cache/stt.py says why).
        if cache is not None and (known := cache.get(media.sha256 or "")) is not None:
            report.cached.append("transcript")
            return known
        background.start_soon(self._prewarm, flow.message.user.key)
        try:
            audio = await self._timed(
                report,
                "download",
                "whatsapp",
                self._timeouts.download,
                lambda: self._channel.fetch_media(media),
                idempotent=True,
            )
        except UpstreamError as exc:
            report.error = str(exc)
            raise _Done("not_understood", flow.texts(self._texts).not_understood) from None
        digest = audio_digest(audio)
        known = None if cache is None else cache.get_downloaded(digest, claimed=media.sha256)
        if known is not None:
            report.cached.append("transcript")  # the same file under another claimed digest
            return known
        seconds = await self._listenable(flow, audio)
        attempts = _Attempts()
        try:
            # Billed per second of audio, so never repeated when it may have been done (a
            # timeout, a 5xx): only what the upstream certainly refused (429, not sent).
            transcript = await self._timed(
                report,
                "stt",
                "elevenlabs-stt",
                self._timeouts.stt,
                lambda: self._speech.transcribe(audio, media.mime_type),
                idempotent=False,
                on_attempt=attempts,
            )
        except UpstreamError as exc:
            report.error = str(exc)
            raise _Done("not_understood", flow.texts(self._texts).not_understood) from None
        finally:
            report.stt_seconds += seconds * attempts.count
            self._budget.charge(Upstream.STT, seconds * attempts.count)
        if cache is not None:
            cache.put(digest, transcript)  # ignores an empty transcript
        await self._note(flow, Stage.TRANSCRIBED, transcript=transcript)
        return transcript

    async def _listenable(self, flow: _Flow, audio: bytes) -> float:
        """The voice note's length in seconds, measured by decoding it, when it may go to
        speech-to-text: not too long, within today's budget and the user's allowance.
        Otherwise ends the answer path with the reply that says why (or silence, when that
        reply was given already today)."""
        texts, user = flow.texts(self._texts), flow.message.user.key
        limit = self._voice.max_seconds
        try:
            seconds = await self._measure(audio, limit)
        except audio_files.AudioError as exc:
            # Not audio we can decode: speech-to-text would fail the same way, and bill it.
            flow.report.error = f"audio not measurable: {exc}"
            raise _Done("undecodable", texts.not_understood) from None
        if seconds > limit:
            flow.report.error = f"voice note over {limit:g} s"
            raise _Done("too_long", texts.voice_too_long)
        if self._budget.exhausted(Upstream.STT):
            told = await self._limits.first_notice(user, "budget_stt")
            raise _Done("over_budget", texts.voice_unavailable if told else "")
        verdict = await self._limits.spend(user, Limit.DAILY_STT_SECONDS, seconds)
        if not verdict.allowed:
            raise _Done(
                "limited_daily_stt_seconds", texts.voice_daily_limit if verdict.notify else ""
            )
        return seconds

    async def _ask(self, flow: _Flow, question: str) -> tuple[str, str]:
        texts = flow.texts(self._texts)
        user_key = flow.message.user.key
        try:
            # A cached answer is looked up outside the guard: served while the agent's
            # circuit is open, and never counted by the breaker as an agent call.
            reply = self._agent.cached(user_key, question, language=flow.language)
            if reply is None:
                reply = await self._ask_agent(flow, question)
        except UpstreamError as exc:
            flow.report.error = str(exc)
            raise _Done("agent_down", texts.agent_down) from None
        if reply.origin != "agent":
            flow.report.cached.append("answer")
        answer = reply.text
        if reply.has("Escalate"):
            return (f"{answer}\n\n{texts.escalated}" if answer else texts.escalated), "escalated"
        if answer and not reply.has("Failure", "Error"):
            return answer, "answered"
        # Failure / Error / an empty reply: the agent's own words there are often technical.
        flow.report.error = "agent reply: " + (",".join(m.type for m in reply.messages) or "empty")
        raise _Done("agent_failure", texts.agent_down)

    async def _ask_agent(self, flow: _Flow, question: str) -> AgentReply:
        """The agent's answer (through the response cache's ask), counted as agent calls: one
        per attempt, except the last when its answer came from the cache or another user's
        call. Ends the answer path when today's agent budget is spent."""
        user_key, report = flow.message.user.key, flow.report
        if self._budget.exhausted(Upstream.AGENT):
            told = await self._limits.first_notice(user_key, "budget_agent")
            raise _Done("over_budget", flow.texts(self._texts).over_capacity if told else "")
        attempts, reply = _Attempts(), None
        try:
            reply = await self._timed(
                report,
                "agent",
                "agentforce",
                self._timeouts.agent,
                lambda: self._agent.ask(user_key, question, language=flow.language),
                idempotent=False,
                on_attempt=attempts,
            )
            return reply
        finally:
            calls = attempts.count - (1 if reply is not None and reply.origin != "agent" else 0)
            report.agent_calls += calls
            self._budget.charge(Upstream.AGENT, calls)

    def _wants_voice(self, message: Inbound, outcome: str) -> bool:
        return outcome == "answered" and self._voice_reply_for(message)

    def _voice_reply_for(self, message: Inbound) -> bool:
        """Whether ``[voice] reply`` gives this message's sender a voice note."""
        if self._voice.reply == "never":
            return False
        return self._voice.reply == "always" or message.kind is Kind.VOICE

    async def _speak_canned(self, flow: _Flow, text: str) -> None:
        """A canned reply to someone who wants voice, as a voice note too — only when it is
        pre-rendered ([cache] prerender_canned): a TTS call while something is failing
        could only delay or break the apology."""
        if not self._voice_reply_for(flow.message):
            return
        language = flow.canned_language(self._texts)
        spoken = textfmt.for_speech(text)
        audio = await self._speech.cached(spoken, language=language)
        if audio is None:
            return
        try:
            key = self._speech.audio_key(spoken, language=language)
            await self._deliver_voice(flow, audio, key, None)  # the text went out already
            flow.report.voice = "sent"
        except UpstreamError as exc:  # the text said it already
            flow.report.voice = "failed"
            log.info("turn %s: spoken apology not sent: %s", flow.report.turn_id, exc)

    async def _send_text(self, flow: _Flow, text: str) -> None:
        flow.answer_started = True
        flow.delivery.begin()
        # After a crash a resumed turn sends the answer again unless TEXT_SENT was written:
        # at least once. Recording "sending" first would make it at most once instead, and
        # trade a ~1 ms window for a duplicate (between WhatsApp's 200 and this process
        # writing TEXT_SENT) for a far longer window for a lost answer (the whole request).
        async with flow.send_lock:
            try:
                ids = await self._send(flow, text)
            except UpstreamError as exc:
                flow.report.error = str(exc)
                verdict = deliveries.verdict(exc)
                if verdict == "unknown":  # the text may be on its way (or delivered)
                    flow.report.outcome = "send_unknown"
                else:
                    flow.delivery.failed()
                    # "later": the answer is in the journal already and goes out on the retry.
                    self._not_delivered(flow, verdict, "send_failed")
                raise _Silent() from None
        self._sent(flow, "text", len(ids))
        flow.delivery.done()
        flow.report.stages["to_text"] = self._clock() - flow.started  # what the user waited
        await self._note(flow, Stage.TEXT_SENT, text_ids=ids)

    def _sent(self, flow: _Flow, kind: str, messages: int) -> None:
        """Count WhatsApp messages that went out (billed per message, whatsapp.md §5)."""
        flow.report.sent[kind] = flow.report.sent.get(kind, 0) + messages
        self._budget.charge(Upstream.WHATSAPP, messages)

    async def _send(self, flow: _Flow, text: str) -> list[str]:
        """The answer (or the message in its place) to the user: one guarded send."""
        return await self._timed(
            flow.report,
            "send",
            "whatsapp",
            self._timeouts.whatsapp,
            lambda: self._channel.send_text(flow.message.user, text),
            idempotent=False,
        )

    async def _voice_allowance(self, flow: _Flow, answer: str) -> _Voice:
        """Whether the answer may be spoken, decided before the text goes out (a line about
        it may join the text). A cached voice note costs nothing and is always allowed; a new
        one needs today's TTS budget and the user's allowance of characters."""
        spoken = textfmt.for_speech(answer)
        if not spoken or len(spoken) > self._voice.max_tts_chars:
            return _Voice("")
        # Looked up outside the guard: spoken while ElevenLabs' circuit is open, and not
        # counted by the breaker as a TTS call.
        cached = await self._speech.cached(spoken, language=flow.language)
        if cached is not None:
            return _Voice(spoken, cached)
        if self._budget.exhausted(Upstream.TTS):
            return _Voice("")  # text only while the day's budget is spent; no notice
        verdict = await self._limits.spend(
            flow.message.user.key, Limit.DAILY_TTS_CHARACTERS, len(spoken)
        )
        if not verdict.allowed:
            note = flow.texts(self._texts).text_only_today if verdict.notify else ""
            return _Voice("", note=note)
        return _Voice(spoken)

    async def _send_voice(self, flow: _Flow, voice: _Voice, gate: _TextGate) -> None:
        report, spoken = flow.report, voice.spoken
        attempts = _Attempts()
        try:
            audio = voice.cached
            if audio is None:
                try:
                    audio = await self._timed(
                        report,
                        "tts",
                        "elevenlabs-tts",
                        self._timeouts.tts,
                        lambda: self._speech.synthesize(spoken, language=flow.language),
                        idempotent=True,
                        on_attempt=attempts,
                    )
                finally:
                    report.tts_characters += len(spoken) * attempts.count
                    self._budget.charge(Upstream.TTS, len(spoken) * attempts.count)
            else:
                report.cached.append("voice")
            key = self._speech.audio_key(spoken, language=flow.language)
            voice_id = await self._deliver_voice(flow, audio, key, gate)
            if voice_id is None:
                report.voice = "skipped"  # no text went out: a lone voice note would confuse
                return
            report.voice = "sent"
            report.stages["to_voice"] = self._clock() - flow.started
            await self._note(flow, Stage.VOICE_SENT, voice_id=voice_id)
        except UpstreamError as exc:
            # The text answer stands; nothing more is sent (one answer, never two).
            report.voice = "failed"
            report.voice_error = str(exc)
            log.warning("turn %s voice note failed: %s", report.turn_id, exc)

    async def _deliver_voice(
        self, flow: _Flow, audio: bytes, audio_key: str, gate: _TextGate | None
    ) -> str | None:
        """Upload (or otherwise prepare) the voice note while the text may still be on its
        way, then send it once the text went out: the message id, or None when the text
        did not go out (then nothing is sent). Each step has its own timeout."""
        note = await self._timed(
            flow.report,
            "upload",
            "whatsapp",
            self._timeouts.upload,
            lambda: self._channel.prepare_voice(audio, audio_key=audio_key),
            idempotent=True,  # an upload nobody was sent is invisible
        )
        if gate is not None and not await gate.wait():
            return None
        voice_id = await self._timed(
            flow.report,
            "voice_send",
            "whatsapp",
            self._timeouts.whatsapp,
            lambda: self._channel.send_voice(flow.message.user, note),
            idempotent=False,
        )
        self._sent(flow, "voice", 1)
        return voice_id

    async def _say(self, flow: _Flow, text: str) -> None:
        """Send a canned message in place of the answer, once, with its own time budget.

        Shielded: it is what the user gets when the turn ran out of time. Through the guard,
        so an open WhatsApp circuit fails at once and "slow down" answers are waited out."""
        delivery = flow.delivery
        if delivery.maybe or flow.deferred or flow.unreachable or flow.dropped:
            return
        flow.answer_started = True
        delivery.begin()
        # Room for the guard's retries of a "slow down" (1 s, then 4 s for the pair rate).
        with trio.CancelScope(shield=True), trio.move_on_after(2 * self._timeouts.whatsapp):
            async with flow.send_lock:
                try:
                    ids = await self._send(flow, text)
                except UpstreamError as exc:
                    verdict = deliveries.verdict(exc)
                    if verdict == "unknown":
                        delivery.unknown()
                        return
                    delivery.failed()
                    log.error("turn %s could not tell the user: %s", flow.report.turn_id, exc)
                    outcome = flow.report.outcome
                    self._not_delivered(flow, verdict, outcome)
                    if verdict == "later":  # resumed later, with this very text
                        await self._note(flow, Stage.ANSWERED, answer=text, outcome=outcome)
                    return
            self._sent(flow, "canned", len(ids))
            delivery.done()
            await self._note(flow, Stage.TEXT_SENT, text_ids=ids)
            return
        delivery.unknown()

    def _not_delivered(self, flow: _Flow, verdict: str, outcome: str) -> None:
        """Book a send that certainly did not deliver: ``later`` defers the whole turn (the
        row stays open and is tried again), ``unreachable`` ends it without an apology (it
        would fail the same way), ``refused`` leaves room for one apology."""
        if verdict == "later":
            flow.deferred = True
            flow.report.outcome = "deferred"
        elif verdict == "unreachable":
            flow.unreachable = True
            flow.report.outcome = "unreachable"
        else:
            flow.report.outcome = outcome

    # -- messages besides the answer -------------------------------------------------------

    async def _hold(self, flow: _Flow) -> None:
        """After ``holding_after`` seconds without an answer, one short holding message."""
        with trio.move_on_after(self._ux.holding_after):
            await flow.settled.wait()
            return
        # No checkpoint between these checks and taking the lock: the answer can't slip in
        # between, and if the answer (or the echo) is being sent, the lock is taken.
        if flow.answer_started or flow.extras_sent:
            return
        try:
            flow.send_lock.acquire_nowait()
        except trio.WouldBlock:
            return
        try:
            await self._send_extra(flow, "holding", flow.texts(self._texts).holding)
        finally:
            flow.send_lock.release()

    async def _extra(self, flow: _Flow, name: str, text: str) -> None:
        async with flow.send_lock:
            await self._send_extra(flow, name, text)

    async def _send_extra(self, flow: _Flow, name: str, text: str) -> None:
        """A message that is not the answer: best effort, its own time budget."""
        try:
            with trio.move_on_after(self._timeouts.whatsapp):
                ids = await self._channel.send_text(flow.message.user, text)
                flow.extras_sent = True
                flow.report.extras.append(name)
                self._sent(flow, "extra", len(ids))
        except UpstreamError as exc:
            log.info("turn %s: %s message not sent: %s", flow.report.turn_id, name, exc)

    async def _timed(
        self,
        report: TurnReport,
        stage: str,
        upstream: str,
        seconds: float,
        call: Callable[[], Awaitable[T]],
        *,
        idempotent: bool,
        on_attempt: Callable[[], None] | None = None,
    ) -> T:
        """``call()`` in its own cancel scope, behind ``upstream``'s circuit breaker and the
        retry policy when a guard is set (``idempotent``: safe to repeat). ``upstream`` is also
        the metrics label ("whatsapp" is the WhatsApp provider, whichever channel it is).
        ``on_attempt`` is told of every attempt (what a billed call costs)."""
        started = self._clock()
        try:
            if self._guard is not None:
                return await self._guard.call(
                    upstream, seconds, call, idempotent=idempotent, on_attempt=on_attempt
                )
            if on_attempt is not None:
                on_attempt()
            with trio.fail_after(seconds):
                return await call()
        except trio.TooSlowError:
            report.failures.append((upstream, "timeout"))
            raise UpstreamTimeout(upstream, seconds) from None
        except UpstreamTimeout:
            report.failures.append((upstream, "timeout"))
            raise
        except CircuitOpen:
            report.failures.append((upstream, "circuit_open"))
            raise
        except UpstreamError as exc:
            if exc.status is None:
                report.failures.append((upstream, "error"))
            raise
        finally:
            report.stages[stage] = report.stages.get(stage, 0.0) + self._clock() - started

    def _emit(self, report: TurnReport) -> None:
        # Business outcomes: what the user did or asked for, not trouble.
        quiet = {"answered", "escalated", "unsupported", "no_speech", "too_long", "undecodable"}
        quiet |= {f"limited_{limit.value}" for limit in Limit}
        log.log(logging.INFO if report.outcome in quiet else logging.WARNING, report.summary())
        if self._on_report is not None:
            self._on_report(report)


class _Flow:
    """The state of one turn."""

    def __init__(self, message: Inbound, report: TurnReport) -> None:
        self.message = message
        self.report = report
        self.started = 0.0  # when the turn's work began (its clock): to_text, to_voice
        self.delivery = deliveries.Delivery()
        self.language: str | None = None
        self.send_lock = trio.Lock()  # one message at a time, in the order they were meant
        self.answer_started = False  # the answer (or the message in its place) is going out
        self.extras_sent = False  # an echo or holding message went out already
        self.settled = trio.Event()  # the answer path is over
        self.record: TurnRecord | None = None  # where the turn stood before a restart
        self.counted = False  # the journal counted this run (released when it ends)
        self.deferred = False  # nothing delivered, WhatsApp said "not now": try again later
        self.unreachable = False  # the user cannot be messaged now: nothing more to try
        self.dropped = False  # over a limit whose notice went out already: nothing is said
        # The language this user's last turn was in: canned texts use it until this turn
        # knows better (a voice note's holding message comes before speech-to-text).
        self.remembered_language: str | None = None

    def canned_language(self, texts: TextsConfig) -> str:
        """The language of the canned texts this user gets (a ``[texts]`` table's code)."""
        return texts.code_for(self.language or self.remembered_language)

    def texts(self, texts: TextsConfig) -> TextTable:
        return texts.tables[self.canned_language(texts)]


class _Attempts:
    """Counts the attempts of one guarded call (``on_attempt``): what a billed call cost."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@dataclass(frozen=True, slots=True)
class _Voice:
    """What ``_voice_allowance`` decided: the text to speak ("" = no voice note), its audio
    when a cache holds it, and a line to add to the text answer about it ("" = none)."""

    spoken: str
    cached: bytes | None = None
    note: str = ""


class _Silent(Exception):
    """The text send failed; the outcome is recorded, the user is told nothing more here."""
