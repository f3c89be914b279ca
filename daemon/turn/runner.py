"""One turn: a user message in, exactly one answer (or one clear apology) out.

    text:  agent -> send text
    voice: download -> speech-to-text -> agent -> send text
                                              \\-> text-to-speech -> Ogg/Opus -> (after the
                                                  text went out) upload + send voice note

Every upstream call runs in its own cancel scope with its ``[timeouts]`` value, and the whole
turn has the ``turn`` deadline. Whatever fails, the user gets one message in place of the
answer; never silence, never two (delivery.py states the rules). The only exception is a
text send whose outcome is unknown (it timed out, or its answer was lost after the request
went out): the answer may have been delivered, so nothing more is sent rather than risk a
second message. If only the voice part fails, the text answer stands alone. Upstream calls
go through the guard (circuit breaker, safe retries: calls.py), and the turn notes its
progress in the journal so that after a crash it resumes where it stopped (start.py counts
each run, plan.py says where it starts from).

The steps, each a module: the question (question.py: the text, or a voice note's words),
the answer (answer.py: the cache or the agent — where a streamed answer comes in), its way
out (outbox.py), the voice note beside it (voice.py), the messages around it (extras.py:
read receipt, holding message, echo), and what each may cost (costs.py). Each step returns
what it found, or the ``Canned`` reply that takes the answer's place; this module strings
them together and keeps the turn's account (report.py).

The turn talks to a ``Channel``, an ``Agent`` and a ``Speech`` and never asks which provider
is behind any of them.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import trio

from daemon import language as languages
from daemon import text as textfmt
from daemon.cache.stt import TranscriptCache
from daemon.channels.base import Channel
from daemon.config import LimitsConfig, TextsConfig, TimeoutsConfig, UxConfig, VoiceConfig
from daemon.lanes import Ran
from daemon.language_memory import LanguageMemory
from daemon.limits import Budget, MemoryBudget, MemoryUserLimits, UserLimits
from daemon.model import Inbound, Kind
from daemon.observe.logs import current_turn, hashed
from daemon.observe.stages import current_stages
from daemon.resilience.guard import Guard
from daemon.speech import audio as audio_files
from daemon.state.base import Fence, Journal, Languages, Stage
from daemon.state.memory import MemoryStore
from daemon.turn import plan as plans
from daemon.turn.answer import Answering
from daemon.turn.calls import Calls, unguarded
from daemon.turn.costs import Costs
from daemon.turn.delivery import Event, State
from daemon.turn.extras import Extras
from daemon.turn.flow import UNFENCED, Answer, Canned, Flow, TextGate
from daemon.turn.outbox import Outbox
from daemon.turn.question import Measure, Questions
from daemon.turn.report import LIMITED, Outcome, TurnReport, VoiceResult
from daemon.turn.start import release, start
from daemon.turn.upstreams import Agent, Speech
from daemon.turn.voice import VoicePath

# Every line of the turn logs as "daemon.turn": the name operators filter journalctl on.
log = logging.getLogger("daemon.turn")


class Turn:
    """Runs turns. One instance serves every user; per-turn state lives in ``Flow``.

    Without a guard, calls are unguarded (one attempt each); without a journal, the turn
    notes its progress in an empty in-memory one (which knows no message, so nothing is
    counted and nothing resumed); without limits or budgets, nothing is limited."""

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
        languages: Languages | None = None,
        limits: UserLimits | None = None,
        budget: Budget | None = None,
        measure: Measure | None = None,
    ) -> None:
        self._texts = texts
        self._timeouts = timeouts
        self._ux = ux or UxConfig(holding_after=0.0)
        self._journal: Journal = MemoryStore() if journal is None else journal
        self._on_report = on_report
        self._clock = clock
        # Without limits or budgets, none: a LimitsConfig of zeros turns every one off.
        unlimited = LimitsConfig(burst=0, per_minute=0.0, daily_turns=0)
        unlimited = dataclasses.replace(unlimited, daily_stt_seconds=0, daily_tts_characters=0)
        costs = Costs(
            MemoryBudget(unlimited) if budget is None else budget,
            MemoryUserLimits(unlimited) if limits is None else limits,
        )
        self._costs = costs
        calls = Calls(unguarded() if guard is None else guard, clock)
        self._outbox = Outbox(channel, calls, costs, timeouts, clock)
        self._extras = Extras(channel, costs, timeouts, self._ux)
        self._voice = VoicePath(channel, speech, calls, costs, voice, timeouts, clock)
        self._questions = Questions(
            channel=channel,
            agent=agent,
            speech=speech,
            calls=calls,
            costs=costs,
            extras=self._extras,
            transcripts=transcripts,
            timeouts=timeouts,
            voice=voice,
            # How an inbound voice note's length is found (PyAV, in a worker thread).
            measure=measure or (lambda data, limit: audio_files.measure(data, limit=limit)),
        )
        self._answers = Answering(agent, calls, costs, timeouts)
        # The language each user last spoke, for a voice note's canned texts before STT.
        self._languages: Languages = LanguageMemory() if languages is None else languages

    async def run(
        self, message: Inbound, *, journal: Journal | None = None, fence: Fence = UNFENCED
    ) -> TurnReport:
        """Run the turn of ``message``. ``journal`` and ``fence`` replace the turn's own for
        this run: with several hosts, those of the user's lease."""
        report, _ = await self._run(message, journal=journal, fence=fence)
        return report

    async def handle(self, message: Inbound) -> Ran:
        """The lanes' handler (daemon/lanes.py): run the turn, say whether it was deferred."""
        _, ran = await self._run(message)
        return ran

    async def held_back(self, message: Inbound) -> TurnReport:
        """A message the lanes hold back behind an earlier deferred one of its user: not
        run, only reported (outcome ``deferred``: it is tried again after that one)."""
        report = self._new_report(message)
        report.outcome = Outcome.DEFERRED
        with _logged_as(report):
            log.info("waiting behind an earlier deferred message of this user")
        self._emit(report)
        return report

    def _new_report(self, message: Inbound) -> TurnReport:
        return TurnReport(
            turn_id=secrets.token_hex(4),
            kind=message.kind.value,
            user=hashed(message.user.key),
            message_id=message.message_id,
        )

    async def _run(
        self, message: Inbound, *, journal: Journal | None = None, fence: Fence = UNFENCED
    ) -> tuple[TurnReport, Ran]:
        report = self._new_report(message)
        ran = Ran.DONE
        with _logged_as(report):
            flow = Flow(
                message,
                report,
                journal=self._journal if journal is None else journal,
                fence=fence,
                texts=self._texts,
            )
            if message.kind is not Kind.TEXT:  # a text carries its own evidence: its script
                flow.remembered_language = await self._languages.get(message.user.key)
            try:
                if await start(flow, self._outbox):
                    await self._run_turn(flow)
                    if flow.delivery.state is State.DEFERRED:
                        # Nothing reached the user and WhatsApp said "not now": the row stays
                        # open and the daemon tries the turn again later (daemon/resume.py).
                        ran = Ran.DEFERRED
                        log.warning("turn deferred: nothing could be delivered now")
                    else:
                        await flow.note(Stage.DONE, outcome=report.outcome)
                if flow.language:
                    await self._languages.remember(message.user.key, flow.language)
            finally:
                if flow.counted:
                    await release(flow)
        self._emit(report)  # carries turn=<id> itself, like every line the turn logged
        return report, ran

    # -- the turn ------------------------------------------------------------------------

    async def _run_turn(self, flow: Flow) -> None:
        started = flow.started = self._clock()
        report, message = flow.report, flow.message
        if message.kind is Kind.TEXT:
            flow.language = languages.from_script(message.text)
        if self._costs.nothing_may_be_sent():
            report.outcome = Outcome.OVER_BUDGET
            flow.delivery.move(Event.SILENCE)
            report.stages["total"] = self._clock() - started
            return
        with trio.move_on_after(self._timeouts.turn) as deadline:
            try:
                # The background nursery holds what runs beside the answer: the read
                # receipt, the holding message, the session pre-warm and the voice note.
                async with trio.open_nursery() as background:
                    background.start_soon(self._extras.acknowledge, message)
                    if self._ux.holding_after > 0 and message.kind is not Kind.UNSUPPORTED:
                        background.start_soon(self._extras.hold, flow)
                    await self._answer(flow, background)
                    flow.settled.set()  # the holding message is moot from here on
            except Exception as exc:  # a bug must cost one apology, not the lane
                log.exception("turn %s failed unexpectedly", report.turn_id)
                report.outcome = Outcome.ERROR
                report.error = type(exc).__name__
        if deadline.cancelled_caught:
            report.error = report.error or f"turn deadline {self._timeouts.turn:g}s"
            if report.outcome is Outcome.PENDING:
                report.outcome = Outcome.TIMEOUT
            if report.voice is VoiceResult.NONE and self._voice.wanted(message, report.outcome):
                report.voice = VoiceResult.FAILED  # the text stands; the voice ran out of time
        if not flow.delivery.may_have_reached:
            # Nothing reached the user yet (deadline, bug): one apology, with its own budget.
            await self._outbox.say(flow, flow.texts.agent_down)
        report.language = flow.language or ""
        report.stages["total"] = self._clock() - started

    async def _answer(self, flow: Flow, background: trio.Nursery) -> None:
        """The answer path: from where the plan starts to the answer (or the message in its
        place) on its way. Every expected failure ends it by a returned value: an exception
        leaving a nursery body comes out wrapped in an ExceptionGroup."""
        plan = flow.plan
        if plan.start is plans.Start.NOTICE:
            # Over a per-user limit as it came in: this message is the one of its window
            # that gets the notice (the others were dropped at intake).
            notice = getattr(flow.texts, plans.NOTICES[plan.outcome])
            return await self._reply(flow, Canned(plan.outcome, notice))
        if plan.start is plans.Start.SAY:
            return await self._reply(flow, Canned(plan.outcome, plan.reply))
        if plan.start is plans.Start.DELIVER:
            return await self._deliver(flow, Answer(plan.reply, plan.outcome), background)
        question = await self._questions.question(flow, background)
        if isinstance(question, Canned):
            return await self._reply(flow, question)
        answer = await self._answers.obtain(flow, question)
        if isinstance(answer, Canned):
            return await self._reply(flow, answer)
        await flow.note(Stage.ANSWERED, answer=answer.text, outcome=answer.outcome)
        await self._deliver(flow, answer, background)

    async def _reply(self, flow: Flow, canned: Canned) -> None:
        """A canned message in place of the answer ("" = nothing is said)."""
        flow.report.outcome = canned.outcome
        if not canned.reply:  # over a limit whose notice went out already
            flow.delivery.move(Event.SILENCE)
            return
        await flow.note(Stage.ANSWERED, answer=canned.reply, outcome=canned.outcome)
        if flow.plan.text_sent:
            flow.delivery.move(Event.ALREADY_SENT)  # said before the restart: not again
            return
        await self._outbox.say(flow, canned.reply)
        if flow.delivery.sent and canned.outcome not in LIMITED:
            await self._voice.speak_canned(flow, canned.reply)  # one message per limit notice

    async def _deliver(self, flow: Flow, answer: Answer, background: trio.Nursery) -> None:
        """The agent's answer: the text, and beside it the voice note when one is due."""
        gate = TextGate()
        text = textfmt.to_whatsapp(answer.text)
        if self._voice.wanted(flow.message, answer.outcome) and not flow.plan.voice_sent:
            voice = await self._voice.allowance(flow, answer.text)
            if voice.note:
                text = f"{text}\n\n{voice.note}"
            if voice.spoken:
                background.start_soon(self._voice.send, flow, voice, gate)
            else:
                flow.report.voice = VoiceResult.SKIPPED
        try:
            if flow.plan.text_sent:
                flow.delivery.move(Event.ALREADY_SENT)  # sent before the restart: not again
                flow.report.outcome = answer.outcome
            elif await self._outbox.answer(flow, text):
                flow.report.outcome = answer.outcome
        finally:
            gate.open(flow.delivery.sent)
        if flow.delivery.may_speak:  # the send failed for sure: one apology, if it gets through
            await self._outbox.say(flow, flow.texts.agent_down)

    def _emit(self, report: TurnReport) -> None:
        log.log(report.level, report.summary())
        if self._on_report is not None:
            self._on_report(report)


@contextmanager
def _logged_as(report: TurnReport) -> Iterator[None]:
    """Every line logged meanwhile carries turn=<id>; steps timed deeper down add their
    seconds to the report's stages."""
    context = current_turn.set(report.turn_id)
    stage_context = current_stages.set(report.stages)
    try:
        yield
    finally:
        current_stages.reset(stage_context)
        current_turn.reset(context)
