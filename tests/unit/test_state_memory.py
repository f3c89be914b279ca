"""The one-host per-user maps: deferred messages, the language memory, the response cache
behind the async protocols; and the ``[state] backend`` key."""

from __future__ import annotations

import pytest

from daemon import config
from daemon.cache.response import PendingContext, ResponseCache
from daemon.language_memory import LanguageMemory
from daemon.model import AgentMessage, AgentReply
from daemon.state.memory import MemoryDeferred, MemoryPending, MemoryResponses


async def test_deferred_ids_keep_their_order_once_each_and_empty_users_go() -> None:
    deferred = MemoryDeferred(max_users=10)
    assert await deferred.ids("u") == []
    await deferred.add("u", "m1")
    await deferred.add("u", "m2")
    await deferred.add("u", "m1")  # once
    assert await deferred.ids("u") == ["m1", "m2"]
    (await deferred.ids("u")).clear()  # a copy: the caller can't change the map
    await deferred.discard("u", "m1")
    await deferred.discard("u", "unknown")
    assert await deferred.ids("u") == ["m2"]
    await deferred.discard("u", "m2")
    assert await deferred.ids("u") == [] and len(deferred._ids) == 0


async def test_deferred_users_are_bounded_least_recently_seen_first() -> None:
    deferred = MemoryDeferred(max_users=2)
    for user in ("a", "b"):
        await deferred.add(user, f"{user}1")
    await deferred.ids("a")  # a seen again: b is now the oldest
    await deferred.add("c", "c1")
    assert [await deferred.ids(u) for u in "abc"] == [["a1"], [], ["c1"]]


async def test_the_language_memory_forgets_after_its_ttl_and_beyond_its_users() -> None:
    now = [0.0]
    memory = LanguageMemory(max_users=2, ttl=100.0, clock=lambda: now[0])
    await memory.remember("a", "ar")
    await memory.remember("b", "en")
    assert await memory.get("a") == "ar"
    await memory.remember("c", "fr")  # over max_users: the least recently used goes
    assert await memory.get("b") is None and await memory.get("c") == "fr"
    now[0] = 100.5
    assert await memory.get("a") is None and await memory.get("c") is None


async def test_the_response_cache_behind_the_async_protocols() -> None:
    cache = ResponseCache(max_entries=10, default_ttl=60.0, confirmations=1)
    responses = MemoryResponses(cache)
    reply = AgentReply((AgentMessage("Inform", "At 9."),))
    assert await responses.lookup("k") is None
    await responses.record("k", "user-a", reply)
    assert await responses.holds("k", reply)
    hit = await responses.lookup("k")
    assert hit is not None and hit.text == "At 9."
    assert await responses.forget("k") and await responses.lookup("k") is None
    assert cache.stats().hits == 1  # the one-host cache itself counts, for /metrics
    await responses.record("k", "user-a", reply)
    assert await responses.flush() == 1

    pending = MemoryPending(PendingContext(max_users=10, ttl=60.0))
    assert not await pending.has("u")
    await pending.remember("u", "when?", "At 9.")
    assert await pending.has("u")
    assert await pending.take("u") == ("when?", "At 9.")
    assert await pending.take("u") is None


def test_state_backend_is_sqlite_by_default_and_checked() -> None:
    assert config.parse({}).state.backend == "sqlite"
    assert config.parse({"state": {"backend": "memory"}}).state.backend == "memory"
    with pytest.raises(config.ConfigError) as err:
        config.validate_values(config.parse({"state": {"backend": "redis"}}))
    assert str(err.value) == "[state] backend: must be one of sqlite | memory, got 'redis'"
