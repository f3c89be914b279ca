"""CachedAgent: the agent behind the response cache — what is shared, trusted and served."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from daemon.answers import CachedAgent
from daemon.cache.response import PendingContext, ResponseCache
from daemon.cache.rules import CacheRule, Rules
from daemon.model import AgentMessage, AgentReply

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
            responses=responses,
            pending=PendingContext(max_users=100, ttl=600),
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
