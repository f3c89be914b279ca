"""Per-user limits on real Redis: one bucket and one day per user, whichever host asks.

The rules are MemoryUserLimits' (tests/unit/test_limits.py holds that one to them); here
the point is that they hold across hosts racing, on Redis' clock.
"""

from __future__ import annotations

import pytest
import trio

from daemon.config import LimitsConfig
from daemon.limits import Limit, Verdict
from daemon.state.redis.client import RedisClient
from daemon.state.redis.keys import Keys, user_tag
from daemon.state.redis.limits import RedisUserLimits

USER = "+15550001"


def limits(client: RedisClient, keys: Keys, **config: float) -> RedisUserLimits:
    return RedisUserLimits(client, keys, LimitsConfig(**config))  # type: ignore[arg-type]


async def test_the_bucket_is_shared_and_spent_once_under_races(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    hosts = [limits(c, keys, burst=5, per_minute=1e-6) for c in (redis, other_redis)] * 10
    verdicts: list[Verdict] = []

    async def admit(host: RedisUserLimits) -> None:
        verdicts.append(await host.admit(USER))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for host in hosts:
                nursery.start_soon(admit, host)
    refused = [v for v in verdicts if not v.allowed]
    assert len(verdicts) - len(refused) == 5
    assert {v.limit for v in refused} == {Limit.RATE}
    assert sum(v.notify for v in refused) == 1  # one "slow down", not fifteen
    assert sum(sum(h.refusals().values()) for h in hosts[:2]) == 15  # each host counts its own


async def test_the_bucket_refills_on_redis_clock(redis: RedisClient, keys: Keys) -> None:
    host = limits(redis, keys, burst=1, per_minute=3000, notice_every=0.001)
    with trio.fail_after(5):
        assert (await host.admit(USER)).allowed
        refused = await host.admit(USER)
        assert (refused.allowed, refused.limit, refused.notify) == (False, Limit.RATE, True)
        while not (await host.admit(USER)).allowed:  # noqa: ASYNC110
            await trio.sleep(0.005)  # 50 tokens a second: Redis' clock refills it


async def test_daily_turns_refuse_without_spending_the_bucket(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    config = {"daily_turns": 2, "per_minute": 1e-6}  # no refill to speak of during the test
    a, b = limits(redis, keys, **config), limits(other_redis, keys, **config)
    with trio.fail_after(5):
        assert (await a.admit(USER)).allowed
        assert (await b.admit(USER)).allowed
        third = await a.admit(USER)
        assert (third.allowed, third.limit, third.notify) == (False, Limit.DAILY_TURNS, True)
        assert (await b.admit(USER)).notify is False  # one notice a day, across hosts
        assert (await a.admit("+15550002")).allowed  # another user
        tokens = await redis.hget(keys.user(user_tag(USER), "bucket"), "tokens")
        assert float(tokens or 0) == pytest.approx(8)  # 10 - the two allowed, not the refused


async def test_daily_allowances_refuse_and_take_nothing(redis: RedisClient, keys: Keys) -> None:
    host = limits(redis, keys, daily_stt_seconds=60, daily_tts_characters=100)
    with trio.fail_after(5):
        assert (await host.spend(USER, Limit.DAILY_STT_SECONDS, 45.5)).allowed
        over = await host.spend(USER, Limit.DAILY_STT_SECONDS, 20)
        assert (over.allowed, over.limit, over.notify) == (False, Limit.DAILY_STT_SECONDS, True)
        assert (await host.spend(USER, Limit.DAILY_STT_SECONDS, 14.5)).allowed  # nothing taken
        assert (await host.spend(USER, Limit.DAILY_TTS_CHARACTERS, 100)).allowed
        refused = await host.spend(USER, Limit.DAILY_TTS_CHARACTERS, 1)
        assert refused.limit is Limit.DAILY_TTS_CHARACTERS and refused.notify
        assert not (await host.spend(USER, Limit.DAILY_TTS_CHARACTERS, 1)).notify
        with pytest.raises(ValueError):
            await host.spend(USER, Limit.RATE, 1)
        day = keys.user(user_tag(USER), "day")
        assert 0 < await redis.pttl(day) <= 2 * 86400 * 1000


async def test_first_notice_once_a_day_per_reason_across_hosts(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    a, b = limits(redis, keys), limits(other_redis, keys)
    with trio.fail_after(5):
        assert await a.first_notice(USER, "budget_agent") is True
        assert await b.first_notice(USER, "budget_agent") is False
        assert await b.first_notice(USER, "budget_tts") is True


async def test_zero_turns_a_limit_off(redis: RedisClient, keys: Keys) -> None:
    host = limits(redis, keys, burst=0, per_minute=0, daily_turns=0, daily_stt_seconds=0)
    with trio.fail_after(5):
        for _ in range(30):
            assert (await host.admit(USER)).allowed
        assert (await host.spend(USER, Limit.DAILY_STT_SECONDS, 10**6)).allowed
