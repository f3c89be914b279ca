"""Per-user limits on real Redis: one bucket and one day for a user, whichever host."""

from __future__ import annotations

import trio

from daemon.state.redis.client import RedisClient
from daemon.state.redis.keys import Keys, user_tag
from daemon.state.redis.limits import LimitRules, RedisLimits

USER = "+15550001"


async def test_the_bucket_is_shared_and_spent_once_under_races(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    rules = LimitRules(burst=5, refill_per_second=1e-6, turns_per_day=100)
    hosts = [RedisLimits(c, keys, rules) for c in (redis, other_redis)] * 10
    verdicts = []

    async def take(limits: RedisLimits) -> None:
        verdicts.append(await limits.take(USER, turn=True))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for limits in hosts:
                nursery.start_soon(take, limits)
    allowed = [v for v in verdicts if v.allowed]
    refused = [v for v in verdicts if not v.allowed]
    assert len(allowed) == 5 and len(refused) == 15
    assert {v.limit for v in refused} == {"burst"}
    assert sum(v.notify for v in refused) == 1  # one "slow down", not fifteen
    assert all(v.retry_after > 0 for v in refused)


async def test_the_bucket_refills(redis: RedisClient, keys: Keys) -> None:
    limits = RedisLimits(redis, keys, LimitRules(burst=1, refill_per_second=50))
    with trio.fail_after(5):
        assert (await limits.take(USER, turn=True)).allowed
        refused = await limits.take(USER, turn=True)
        assert not refused.allowed and refused.notify and refused.retry_after <= 0.02
        while not (await limits.take(USER, turn=True)).allowed:  # noqa: ASYNC110
            await trio.sleep(0.005)  # Redis' clock refills it
        second = await limits.take(USER, turn=True)
        assert not second.allowed and second.notify  # a new empty spell: a new notice


async def test_daily_caps_refuse_without_charging(redis: RedisClient, keys: Keys) -> None:
    rules = LimitRules(burst=100, turns_per_day=2, stt_seconds_per_day=60, tts_chars_per_day=100)
    limits = RedisLimits(redis, keys, rules)
    with trio.fail_after(5):
        assert (await limits.take(USER, turn=True)).allowed
        assert (await limits.take(USER, turn=True)).allowed
        third = await limits.take(USER, turn=True)
        assert (third.allowed, third.limit, third.notify) == (False, "turns", True)
        assert 0 < third.retry_after <= 86400
        assert not (await limits.take(USER, turn=True)).notify
        assert (await limits.take(USER, stt_seconds=45.5)).allowed
        over = await limits.take(USER, stt_seconds=20)
        assert (over.allowed, over.limit) == (False, "stt_seconds")
        assert (await limits.take(USER, stt_seconds=14.5)).allowed  # the refusal cost nothing
        assert (await limits.take(USER, tts_chars=100)).allowed
        assert (await limits.take(USER, tts_chars=1)).limit == "tts_chars"
        assert (await limits.take("+15550002", turn=True)).allowed  # another user
        day = keys.user(user_tag(USER), "day")
        assert 0 < await redis.pttl(day) <= 2 * 86400 * 1000
