"""The agent as the turn sees it: Agentforce behind the response cache.

``CachedAgent`` implements the turn's ``Agent`` protocol around the real client:

- a context-free question (one that opens a conversation, or matches an operator FAQ rule
  marked standalone) is answered from the cache when a confirmed answer exists: no
  Agentforce call, milliseconds instead of seconds;
- otherwise it goes to the agent in the user's own session, and the answer is recorded as
  evidence: an opener's answer is served to others only once two different users got the same
  one (``ResponseCache``), an FAQ rule's answer at once (the operator vouches for it), and
  many users asking the same FAQ at once share one agent call (single flight) — when its
  reply is one the cache accepted; otherwise (Failure, Escalate, Inquire, ...) each of them
  asks the agent in their own session;
- evidence comes only from a *fresh* session: one in which the user said nothing before and
  was served nothing from the cache. A context-aware agent weaves what the user said earlier
  (a card number, an order) into any answer, even to an FAQ, and an FAQ answer is trusted at
  once: learnt from a session with context, one user's personal answer would be served to
  everyone. An FAQ asked mid-conversation is answered in the user's session (or from the
  cache) and teaches the cache nothing; it does not lead a shared call either;
- personal-looking questions (first person, order numbers, emails, phone numbers) and deny
  rules are never served from nor written to the cache (``Rules``);
- after a cached answer, the user's next message reaches the agent with one context line
  ("Earlier I asked ... and you answered ..."), because the agent's session never saw that
  exchange (``PendingContext``).

Only the turn's text reaches this module; users are known here only by their hashed key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from daemon.cache.normalize import normalize_question, question_key
from daemon.cache.response import CachedAnswer, with_context
from daemon.cache.rules import Decision, Rules
from daemon.cache.singleflight import SingleFlight
from daemon.model import AgentReply
from daemon.observe.logs import hashed
from daemon.state.base import PendingContexts, Responses

log = logging.getLogger(__name__)


class SessionAgent(Protocol):
    """The real agent client, as far as the cache needs it."""

    async def ask(self, user_key: str, text: str) -> AgentReply: ...

    async def prepare(self, user_key: str) -> None: ...

    def in_conversation(self, user_key: str) -> bool: ...


@dataclass
class AnswerStats:
    """Counters for /metrics (the caches count their own hits and misses)."""

    shared: int = 0  # FAQ askers served by another user's concurrent agent call
    unshared: int = 0  # FAQ askers who waited for one, got nothing shareable, asked themselves
    decisions: dict[str, int] | None = None

    def decided(self, reason: str) -> None:
        if self.decisions is None:
            self.decisions = {}
        self.decisions[reason] = self.decisions.get(reason, 0) + 1


class CachedAgent:
    def __init__(
        self,
        agent: SessionAgent,
        *,
        rules: Rules,
        responses: Responses,
        pending: PendingContexts,
        agent_id: str,
    ) -> None:
        self._agent = agent
        self._rules = rules
        self._responses = responses
        self._pending = pending
        self._agent_id = agent_id
        self._flight: SingleFlight[str, AgentReply] = SingleFlight()
        self.stats = AnswerStats()

    async def prepare(self, user_key: str) -> None:
        await self._agent.prepare(user_key)

    async def cached(
        self, user_key: str, text: str, *, language: str | None = None
    ) -> AgentReply | None:
        """A confirmed cached answer for a cacheable question, without calling the agent;
        None when the question must go to ``ask``. The turn calls this before the circuit
        breaker, so cached answers are served while the agent is down."""
        user = hashed(user_key)
        decision, key = await self._decide(user_key, user, text, language)
        if not decision.cacheable:
            return None
        hit = await self._responses.lookup(key, count_miss=False)
        if hit is None:
            return None
        self.stats.decided(decision.reason)
        return await self._served(user, text, hit, decision)

    async def ask(self, user_key: str, text: str, *, language: str | None = None) -> AgentReply:
        user = hashed(user_key)
        decision, key = await self._decide(user_key, user, text, language)
        self.stats.decided(decision.reason)
        if not decision.cacheable:
            return await self._ask_agent(user_key, user, text)
        hit = await self._responses.lookup(key)
        if hit is not None:
            return await self._served(user, text, hit, decision)
        if not await self._fresh(user_key, user):
            # An FAQ mid-conversation: the answer may know this user; it teaches nothing.
            return await self._ask_agent(user_key, user, text)
        if decision.reason == "faq":
            return await self._ask_shared(user_key, user, text, key, decision)
        return await self._ask_and_learn(user_key, user, text, key, decision)

    async def _fresh(self, user_key: str, user: str) -> bool:
        """Whether the user's session has no earlier context: nothing said in it, nothing
        served from the cache to them since (whose exchange their next message carries)."""
        return not self._agent.in_conversation(user_key) and not await self._pending.has(user)

    async def _decide(
        self, user_key: str, user: str, text: str, language: str | None
    ) -> tuple[Decision, str]:
        normalized = normalize_question(text)
        opens = await self._fresh(user_key, user)
        decision = self._rules.decide(normalized, opens_conversation=opens)
        return decision, question_key(normalized, agent_id=self._agent_id, language=language)

    async def _served(
        self, user: str, text: str, hit: CachedAnswer, decision: Decision
    ) -> AgentReply:
        await self._pending.remember(user, text, hit.text)
        log.info("answered from the response cache (%s)", decision.reason)
        return AgentReply(hit.messages, origin="cache")

    async def _ask_agent(self, user_key: str, user: str, text: str) -> AgentReply:
        """Not cacheable: to the agent, with the context of a cached answer if one is owed."""
        earlier = await self._pending.take(user)
        question = with_context(text, *earlier) if earlier else text
        return await self._agent.ask(user_key, question)

    async def _ask_and_learn(
        self, user_key: str, user: str, text: str, key: str, decision: Decision
    ) -> AgentReply:
        """Ask in a fresh session and record the reply as evidence."""
        if not await self._fresh(user_key, user):
            # Context came meanwhile (a follower of a shared call that asks itself after its
            # own earlier turn): no evidence. A pending exchange goes in front, as always.
            return await self._ask_agent(user_key, user, text)
        reply = await self._agent.ask(user_key, text)
        trusted = decision.reason == "faq"
        await self._responses.record(key, user, reply, decision.ttl, trusted=trusted)
        return reply

    async def _ask_shared(
        self, user_key: str, user: str, text: str, key: str, decision: Decision
    ) -> AgentReply:
        """An FAQ: concurrent askers share the first one's agent call (single flight)."""
        leader = False

        async def load() -> AgentReply:
            nonlocal leader
            leader = True
            return await self._ask_and_learn(user_key, user, text, key, decision)

        reply = await self._flight.run(key, load)
        if leader:
            return reply
        if not await self._responses.holds(key, reply):
            # The leader's reply is not one the cache accepted: trouble (Failure, Error), a
            # flow in the leader's own session (Escalate: nobody would call this user back;
            # Inquire, Confirm), or an answer that differs from an earlier one. None of it is
            # this user's answer, so this user asks the agent in their own session.
            self.stats.unshared += 1
            return await self._ask_and_learn(user_key, user, text, key, decision)
        # A follower: the answer came from another user's session, like a cache hit.
        self.stats.shared += 1
        await self._pending.remember(user, text, reply.text)
        return AgentReply(reply.messages, origin="shared")

    async def flush(self) -> int:
        return await self._responses.flush()
