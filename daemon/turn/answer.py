"""Where the agent's answer is obtained: the response cache, else the agent itself.

``Answering.obtain`` is the one place a turn gets its answer (an ``Answer``) or learns that
it has none (the ``Canned`` reply in its place). A cached answer is looked up outside the
guard: served while the agent's circuit is open, and never counted by the breaker as an
agent call. The agent's reply becomes the user's answer by these rules: an ``Escalate``
says so (``escalated``, with the ``[texts]`` line); text without ``Failure``/``Error`` is
the answer; anything else — a failure, an error, nothing at all — is the apology (the
agent's own words there are often technical).

Streamed answers (issue 12) come in here too: the stream's ``Inform``/``EndOfTurn`` make
the same ``Answer`` for the text send, while its sentences already feed the voice
composer (daemon/speech/composer.py) of the voice path.
"""

from __future__ import annotations

from daemon.config import TimeoutsConfig
from daemon.errors import UpstreamError
from daemon.model import AgentReply
from daemon.turn.calls import Calls
from daemon.turn.costs import Costs
from daemon.turn.flow import Answer, Attempts, Canned, Flow
from daemon.turn.report import Outcome
from daemon.turn.upstreams import Agent


class Answering:
    def __init__(self, agent: Agent, calls: Calls, costs: Costs, timeouts: TimeoutsConfig) -> None:
        self._agent = agent
        self._calls = calls
        self._costs = costs
        self._timeouts = timeouts

    async def obtain(self, flow: Flow, question: str) -> Answer | Canned:
        texts, report = flow.texts, flow.report
        try:
            user_key = flow.message.user.key
            cached = await self._agent.cached(user_key, question, language=flow.language)
            reply = await self._ask(flow, question) if cached is None else cached
        except UpstreamError as exc:
            report.error = str(exc)
            return Canned(Outcome.AGENT_DOWN, texts.agent_down)
        if isinstance(reply, Canned):
            return reply
        if reply.origin != "agent":
            report.cached.append("answer")
        answer = reply.text
        if reply.has("Escalate"):
            text = f"{answer}\n\n{texts.escalated}" if answer else texts.escalated
            return Answer(text, Outcome.ESCALATED)
        if answer and not reply.has("Failure", "Error"):
            return Answer(answer, Outcome.ANSWERED)
        report.error = "agent reply: " + (",".join(m.type for m in reply.messages) or "empty")
        return Canned(Outcome.AGENT_FAILURE, texts.agent_down)

    async def _ask(self, flow: Flow, question: str) -> AgentReply | Canned:
        """The agent's reply (through the response cache's ask), counted as agent calls: one
        per attempt, except the last when its answer came from the cache or another user's
        call. Not asked when today's agent budget is spent."""
        refused = await self._costs.agent(flow)
        if refused is not None:
            return refused
        user_key, report = flow.message.user.key, flow.report
        attempts, reply = Attempts(), None
        try:
            reply = await self._calls.timed(
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
            self._costs.asked(report, calls)
