"""CachedAgent: the agent behind the response cache — what is shared, trusted and served."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from daemon.answers import CachedAgent
from daemon.cache.response import PendingContext, ResponseCache
from daemon.cache.rules import CacheRule, Rules
from daemon.model import AgentMessage, AgentReply
from daemon.state.memory import MemoryPending, MemoryResponses

HOURS = AgentReply((AgentMessage("Inform", "We open at 9."),))
ESCALATE = AgentReply(
    (AgentMessage("Inform", "Let me connect you with a colleague."), AgentMessage("Escalate"))
)
FAILURE = AgentReply((AgentMessage("Failure", "Sorry, I couldn't complete that action."),))
INQUIRE = AgentReply((AgentMessage("Inquire", "Which store do you mean?"),))


class FakeAgent:
    """Every user in their own session; the reply is held until ``release`` is set."""

    def __init__(self, reply: AgentReply) -> None:
        self.reply = reply
        self.asked: list[tuple[str, str]] = []
        self.release = trio.Event()

    async def ask(self, user_key: str, text: str) -> AgentReply:
        self.asked.append((user_key, text))
        await self.release.wait()
        return self.reply

    async def prepare(self, user_key: str) -> None:
        return None

    def in_conversation(self, user_key: str) -> bool:
        return False


def cached_agent(agent: FakeAgent, *rules: CacheRule) -> tuple[CachedAgent, ResponseCache]:
    responses = ResponseCache(max_entries=100, default_ttl=3600)
    return (
        CachedAgent(
            agent,
            rules=Rules(faq=rules),
            responses=MemoryResponses(responses),
            pending=MemoryPending(PendingContext(max_users=100, ttl=600)),
            agent_id="agent",
        ),
        responses,
    )


HOURS_RULE = CacheRule("opening hours", ttl=86400, name="hours")


async def ask_all(cached: CachedAgent, agent: FakeAgent, n: int) -> list[AgentReply]:
    """``n`` users ask the FAQ at the same moment; the agent answers once all are waiting."""
    replies: list[AgentReply] = []

    async def one(user: str) -> None:
        replies.append(await cached.ask(user, "What are your opening hours?"))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, f"1555000{i:04d}")
            await trio.testing.wait_all_tasks_blocked()
            agent.release.set()
    return replies


async def test_concurrent_faq_askers_share_one_plain_answer() -> None:
    agent = FakeAgent(HOURS)
    cached, _ = cached_agent(agent, HOURS_RULE)
    replies = await ask_all(cached, agent, 10)
    assert len(agent.asked) == 1
    assert sorted(r.origin for r in replies) == ["agent"] + ["shared"] * 9
    assert {r.text for r in replies} == {HOURS.text}
    assert cached.stats.shared == 9


@pytest.mark.parametrize("reply", [ESCALATE, FAILURE, INQUIRE], ids=lambda r: r.messages[-1].type)
async def test_a_reply_the_cache_refuses_is_never_shared(reply: AgentReply) -> None:
    # An escalation shared would tell nine users a colleague will call when no escalation
    # exists for them; a Failure would give nine apologies for one user's trouble.
    agent = FakeAgent(reply)
    cached, responses = cached_agent(agent, HOURS_RULE)
    replies = await ask_all(cached, agent, 10)
    assert len(agent.asked) == 10  # the leader's call, then each follower's own
    assert len({user for user, _ in agent.asked}) == 10
    assert all(r.origin == "agent" for r in replies)
    assert cached.stats.shared == 0 and cached.stats.unshared == 9
    assert responses.lookup("anything") is None and len(responses) == 0


async def test_a_plain_answer_for_a_volatile_question_is_not_shared() -> None:
    # The agent escalated this FAQ for one user a moment ago: the key is volatile (its answer
    # depends on who asks) for the TTL. A plain answer now is still only the leader's.
    agent = FakeAgent(ESCALATE)
    agent.release.set()
    cached, responses = cached_agent(agent, HOURS_RULE)
    with trio.fail_after(5):
        await cached.ask("15550009999", "What are your opening hours?")
    assert responses.stats().volatile == 1
    agent.reply, agent.release = HOURS, trio.Event()
    replies = await ask_all(cached, agent, 5)
    assert len(agent.asked) == 1 + 5
    assert all(r.origin == "agent" for r in replies)
    assert cached.stats.shared == 0


async def test_a_non_standalone_rule_is_an_opener_its_first_answer_not_trusted() -> None:
    agent = FakeAgent(AgentReply((AgentMessage("Inform", "Shipping costs 5 euros."),)))
    agent.release.set()
    rule = CacheRule("shipping", ttl=10800, standalone=False, name="shipping")
    cached, _ = cached_agent(agent, rule)
    origins = []
    with trio.fail_after(5):
        for user in ("15550000001", "15550000002", "15550000003"):
            origins.append((await cached.ask(user, "How much is shipping?")).origin)
    # The second user still asks the agent: one answer confirms nothing for an opener.
    assert origins == ["agent", "agent", "cache"]
    assert len(agent.asked) == 2
    assert cached.stats.decisions == {"opener": 3}


class ContextAgent(FakeAgent):
    """An agent that remembers each user's session: after a first message, the user is in a
    conversation, and its answers name what that user said (like a real, context-aware one)."""

    def __init__(self) -> None:
        super().__init__(HOURS)
        self.release.set()
        self.history: dict[str, list[str]] = {}

    async def ask(self, user_key: str, text: str) -> AgentReply:
        self.asked.append((user_key, text))
        said = self.history.setdefault(user_key, [])
        answer = "We open at 9." + (f" (You told me: {said[0]})" if said else "")
        said.append(text)
        return AgentReply((AgentMessage("Inform", answer),))

    def in_conversation(self, user_key: str) -> bool:
        return bool(self.history.get(user_key))


async def test_an_faq_answered_in_a_session_with_context_is_never_shared() -> None:
    """A standalone FAQ rule trusts one answer, so it is learnt only from a session that had
    no earlier context: an answer from a session that knows the user can name what they
    said (a card number, an order) and must not reach anyone else."""
    agent = ContextAgent()
    cached, responses = cached_agent(agent, HOURS_RULE)
    await cached.ask("15550000001", "my card is 4111 1111 1111 1111")
    a = await cached.ask("15550000001", "What are your opening hours?")
    assert "4111" in a.text  # personalised
    assert len(responses) == 0  # not learnt
    b = await cached.ask("15550000002", "What are your opening hours?")
    assert "4111" not in b.text and b.origin == "agent"
    assert len(responses) == 1  # learnt from B's fresh session
    c = await cached.ask("15550000003", "What are your opening hours?")
    assert c.origin == "cache" and c.text == b.text == "We open at 9."


async def test_faq_askers_in_a_conversation_do_not_lead_a_shared_call() -> None:
    """Single flight shares the leader's answer: a leader with context would share its own."""
    agent = ContextAgent()
    cached, _ = cached_agent(agent, HOURS_RULE)
    await cached.ask("15550000001", "my card is 4111 1111 1111 1111")
    replies: dict[str, AgentReply] = {}

    async def one(user: str) -> None:
        replies[user] = await cached.ask(user, "What are your opening hours?")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "15550000001")
        nursery.start_soon(one, "15550000002")
    assert "4111" not in replies["15550000002"].text
