"""Agentforce sessions on real Redis: sequenceId handed out once, to the lease holder only."""

from __future__ import annotations

import pytest
import trio

from daemon.state.redis.client import RedisClient
from daemon.state.redis.errors import LeaseLost
from daemon.state.redis.keys import Keys, user_tag
from daemon.state.redis.leases import Leases
from daemon.state.redis.sessions import RedisSessions
from tests.redis.helpers import hold, run_out

USER = "+15550001"
TAG = user_tag(USER)


async def test_sequence_ids_are_never_handed_out_twice_under_races(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    # Many tasks on two clients with the same (current) lease: the worst case the fence
    # allows. Every number comes out once, and they are 1..n.
    leases = Leases(redis, keys, ttl=30)
    sessions = [RedisSessions(c, keys) for c in (redis, other_redis)]
    got: list[int] = []
    with trio.fail_after(10):
        lease = await hold(leases, TAG)
        assert await sessions[0].start(lease, USER, "s-1") is None

        async def take(store: RedisSessions) -> None:
            for _ in range(25):
                number = await store.next_sequence(lease, "s-1")
                assert number is not None
                got.append(number)

        async with trio.open_nursery() as nursery:
            for store in sessions * 4:
                nursery.start_soon(take, store)
    assert sorted(got) == list(range(1, 201))
    stored = await sessions[0].get(USER)
    assert stored is not None and stored.next_sequence == 201


async def test_a_taken_over_host_gets_no_sequence_id(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    a = RedisSessions(redis, keys)
    b = RedisSessions(other_redis, keys)
    with trio.fail_after(5):
        old = await hold(Leases(redis, keys, ttl=30), TAG)
        await a.start(old, USER, "s-1")
        assert await a.next_sequence(old, "s-1") == 1
        await run_out(redis, keys.lease(TAG))
        new = await hold(Leases(other_redis, keys, ttl=30), TAG)
        with pytest.raises(LeaseLost):
            await a.next_sequence(old, "s-1")  # paused past its lease: no agent call
        with pytest.raises(LeaseLost):
            await a.start(old, USER, "s-2")
        assert await b.next_sequence(new, "s-1") == 2  # the number the old host never used


async def test_a_replaced_session_hands_out_no_number(redis: RedisClient, keys: Keys) -> None:
    sessions = RedisSessions(redis, keys)
    with trio.fail_after(5):
        lease = await hold(Leases(redis, keys, ttl=30), TAG)
        await sessions.start(lease, USER, "s-1")
        assert await sessions.start(lease, USER, "s-2") == "s-1"  # the caller ends s-1
        assert await sessions.next_sequence(lease, "s-1") is None
        assert await sessions.next_sequence(lease, "s-2") == 1


async def test_store_methods_round_trip(redis: RedisClient, keys: Keys) -> None:
    sessions = RedisSessions(redis, keys, ttl=600)
    with trio.fail_after(5):
        await sessions.save_session(USER, "s-1", 4, 1000.0)
        await sessions.save_session("+15550002", "s-2", 1, 900.0)
        assert await sessions.load_sessions() == {
            "+15550002": ("s-2", 1, 900.0),
            USER: ("s-1", 4, 1000.0),
        }
        assert list(await sessions.load_sessions()) == ["+15550002", USER]  # LRU first
        assert 0 < await redis.pttl(keys.session(TAG)) <= 600_000
        assert await sessions.drop_session(USER, "other") is False
        assert await sessions.drop_idle_sessions(950.0) == 1
        assert await sessions.drop_session(USER, "s-1") is True
        assert await sessions.load_sessions() == {}
