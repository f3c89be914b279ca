"""Per-user leases and fencing tokens on real Redis, with two hosts (two clients) racing."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from daemon.state.redis.client import RedisClient
from daemon.state.redis.errors import LeaseLost
from daemon.state.redis.keys import Keys, user_tag
from daemon.state.redis.leases import Held, Lease, Leases
from tests.redis.helpers import hold, run_out

TAG = user_tag("+15550001")


async def test_one_holder_at_a_time_across_hosts(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    hosts = [Leases(c, keys, ttl=30) for c in (redis, other_redis) for _ in range(5)]
    results: list[Lease | Held] = []

    async def race(leases: Leases) -> None:
        results.append(await leases.acquire(TAG))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for leases in hosts:
                nursery.start_soon(race, leases)
    won = [r for r in results if isinstance(r, Lease)]
    assert len(won) == 1
    assert {r.holder for r in results if isinstance(r, Held)} == {won[0].holder}
    assert all(0 < r.seconds_left <= 30 for r in results if isinstance(r, Held))


async def test_acquire_again_by_the_holder_keeps_its_token(redis: RedisClient, keys: Keys) -> None:
    leases = Leases(redis, keys, ttl=30)
    with trio.fail_after(5):
        first = await leases.acquire(TAG)
        again = await leases.acquire(TAG)  # what a client retry after a lost reply does
    assert isinstance(first, Lease) and again == first


async def test_expired_holder_cannot_renew_or_send_once_taken_over(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    a, b = Leases(redis, keys, ttl=30), Leases(other_redis, keys, ttl=30)
    with trio.fail_after(5):
        old = await hold(a, TAG)
        assert isinstance(await b.acquire(TAG), Held)
        await run_out(redis, keys.lease(TAG))  # a paused past its lease
        new = await b.acquire(TAG)
        assert isinstance(new, Lease) and new.fence > old.fence
        with pytest.raises(LeaseLost):
            await a.may_send(old)
        with pytest.raises(LeaseLost):
            await a.renew(old)
        with pytest.raises(LeaseLost):
            await a.release(old)
        await b.may_send(new)  # the new holder is unaffected
        assert isinstance(await a.acquire(TAG), Held)


async def test_a_lease_that_ran_out_unclaimed_is_still_the_holders(
    redis: RedisClient, keys: Keys
) -> None:
    leases = Leases(redis, keys, ttl=30)
    with trio.fail_after(5):
        lease = await hold(leases, TAG)
        await run_out(redis, keys.lease(TAG))
        await leases.may_send(lease)  # nobody took it: the token is still the newest
        assert await redis.pttl(keys.lease(TAG)) > 29_000


async def test_tokens_grow_even_when_the_fence_key_is_lost(redis: RedisClient, keys: Keys) -> None:
    leases = Leases(redis, keys, ttl=30)
    fences = []
    with trio.fail_after(5):
        for _ in range(3):
            lease = await hold(leases, TAG)
            fences.append(lease.fence)
            await leases.release(lease)
        await redis.delete([keys.fence(TAG)])  # expired after a day unused, say
        lease = await hold(leases, TAG)
    assert fences == sorted(set(fences)) and lease.fence > fences[-1]


async def test_release_if_idle_keeps_the_lease_while_turns_are_open(
    redis: RedisClient, keys: Keys
) -> None:
    leases = Leases(redis, keys, ttl=30)
    with trio.fail_after(5):
        lease = await hold(leases, TAG)
        await redis.zadd(keys.open(TAG), {"m1": 1})  # another host accepted a message
        assert await leases.release(lease) is False
        assert await redis.exists([keys.lease(TAG)]) == 1
        assert await leases.release(lease, if_idle=False) is True
        assert await redis.exists([keys.lease(TAG)]) == 0


async def test_keep_renews_until_the_lease_is_lost(
    redis: RedisClient, other_redis: RedisClient, keys: Keys, mock_clock: MockClock
) -> None:
    # trio's clock stands still unless jumped (a Redis round trip is real I/O, so no
    # autojump); Redis' TTLs run on Redis' clock. keep's period is on trio's.
    a, b = Leases(redis, keys, ttl=30), Leases(other_redis, keys, ttl=30)
    lost = trio.Event()
    key = keys.lease(TAG)
    lease = await hold(a, TAG)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.keep, lease, lost.set)
        await trio.testing.wait_all_tasks_blocked()
        await redis.pexpire(key, 2_000)  # most of the lease gone
        mock_clock.jump(10)  # a third of the lease: keep renews it
        for _ in range(1000):
            if await redis.pttl(key) > 20_000:
                break
        assert await redis.pttl(key) > 20_000
        await redis.delete([key, keys.fence(TAG)])  # lost (ran out, say) ...
        assert isinstance(await b.acquire(TAG), Lease)  # ... and taken over
        mock_clock.jump(10)
        # The clock stands still, so no fail_after: the bound is a number of round trips.
        for _ in range(1000):
            if lost.is_set():
                break
            await redis.ping()
        assert lost.is_set()
