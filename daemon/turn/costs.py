"""What a turn may spend, checked before each billed call and charged after it ([limits]).

Two kinds of limit (daemon/limits/base.py says why they are apart): the daemon's daily
``Budget`` per upstream, and each user's ``UserLimits``. Before a billed call the turn asks
here; the answer is either a go-ahead or the ``Canned`` reply that takes the call's place
— with its one polite notice per window, and silence after it ("" as the reply):

    upstream     budget spent                       user over their day's allowance
    -----------  ---------------------------------  -------------------------------------
    WhatsApp     nothing is sent, not even sorry    (per-user message limits: intake)
    agent        over_capacity, once a day a user   (daily turns: intake)
    STT          voice_unavailable, once a day      voice_daily_limit, once a day
    TTS          the text alone, no notice          the text with text_only_today, once

After a call, what it cost is charged to the budget and written on the turn's report: every
attempt of it (a retried transcription is billed twice), a WhatsApp message per part sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.limits import Budget, Limit, Upstream, UserLimits
from daemon.turn.flow import Canned, Flow
from daemon.turn.report import Outcome, TurnReport


@dataclass(frozen=True, slots=True)
class Allowance:
    """Whether a voice note may be rendered, and a line for the text answer about it."""

    allowed: bool
    note: str = ""


class Costs:
    def __init__(self, budget: Budget, limits: UserLimits) -> None:
        self._budget = budget
        self._limits = limits

    # -- before --------------------------------------------------------------------------

    def nothing_may_be_sent(self) -> bool:
        """Today's WhatsApp budget is spent: not even an apology, and no agent call to pay
        for an answer nobody can receive. The operator's alert is the budget gauge."""
        return self._budget.exhausted(Upstream.WHATSAPP)

    async def agent(self, flow: Flow) -> Canned | None:
        """May the agent be asked (None), or what is said instead."""
        if not self._budget.exhausted(Upstream.AGENT):
            return None
        told = await self._limits.first_notice(flow.message.user.key, "budget_agent")
        return Canned(Outcome.OVER_BUDGET, flow.texts.over_capacity if told else "")

    async def speech_to_text(self, flow: Flow, seconds: float) -> Canned | None:
        """May ``seconds`` of audio be transcribed (None: yes, and taken from the user's
        allowance), or what is said instead."""
        user, texts = flow.message.user.key, flow.texts
        if self._budget.exhausted(Upstream.STT):
            told = await self._limits.first_notice(user, "budget_stt")
            return Canned(Outcome.OVER_BUDGET, texts.voice_unavailable if told else "")
        verdict = await self._limits.spend(user, Limit.DAILY_STT_SECONDS, seconds)
        if not verdict.allowed:
            reply = texts.voice_daily_limit if verdict.notify else ""
            return Canned(Outcome.LIMITED_DAILY_STT_SECONDS, reply)
        return None

    async def text_to_speech(self, flow: Flow, characters: int) -> Allowance:
        """May ``characters`` be rendered into a voice note (taken from the allowance)."""
        if self._budget.exhausted(Upstream.TTS):
            return Allowance(False)  # text only while the day's budget is spent; no notice
        verdict = await self._limits.spend(
            flow.message.user.key, Limit.DAILY_TTS_CHARACTERS, characters
        )
        if not verdict.allowed:
            return Allowance(False, flow.texts.text_only_today if verdict.notify else "")
        return Allowance(True)

    # -- after ---------------------------------------------------------------------------

    def sent(self, report: TurnReport, kind: str, messages: int) -> None:
        """WhatsApp messages that went out (billed per message, whatsapp.md §5)."""
        report.sent[kind] = report.sent.get(kind, 0) + messages
        self._budget.charge(Upstream.WHATSAPP, messages)

    def asked(self, report: TurnReport, calls: int) -> None:
        report.agent_calls += calls
        self._budget.charge(Upstream.AGENT, calls)

    def heard(self, report: TurnReport, seconds: float) -> None:
        report.stt_seconds += seconds
        self._budget.charge(Upstream.STT, seconds)

    def spoke(self, report: TurnReport, characters: int) -> None:
        report.tts_characters += characters
        self._budget.charge(Upstream.TTS, characters)
