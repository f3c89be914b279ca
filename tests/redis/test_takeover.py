"""A dead host's users taken over by another, through the work index, on real Redis."""

from __future__ import annotations

import pytest
import trio

from daemon.model import Inbound, Kind, User
from daemon.state.base import Stage
from daemon.state.redis.client import RedisClient
from daemon.state.redis.errors import LeaseLost
from daemon.state.redis.journal import RedisJournal
from daemon.state.redis.keys import Keys, user_tag
from daemon.state.redis.leases import Lease, Leases
from daemon.state.redis.takeover import Claim, Probe, WorkIndex
from tests.redis.helpers import hold

USER = "+15550001"
TAG = user_tag(USER)
LEASE = 0.2  # seconds: short, so the test waits a fraction of a second on Redis' clock


def message(n: int) -> Inbound:
    return Inbound(f"wamid.{n}", User(USER, USER), Kind.TEXT, text=f"question {n}")


async def claims_within(index: WorkIndex, seconds: float = 5) -> list[Claim]:
    """Scan until something is claimed; the lease has to run out on Redis' clock first."""
    with trio.fail_after(seconds):
        while not (claims := await index.scan()):  # noqa: ASYNC110 (polls Redis' clock)
            await trio.sleep(LEASE / 4)
    return claims


async def test_a_dead_hosts_user_is_resumed_by_another_from_its_stage(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    a_leases = Leases(redis, keys, ttl=LEASE)
    a_journal = RedisJournal(redis, keys)
    b_leases = Leases(other_redis, keys, ttl=LEASE)
    b_index, b_journal = WorkIndex(other_redis, keys, b_leases), RedisJournal(other_redis, keys)
    one, two = message(1), message(2)
    with trio.fail_after(5):
        await a_journal.accept([one, two])
        lease = await hold(a_leases, TAG)
        a_turns = a_journal.fenced(lease)
        await a_turns.attempt(one.message_id)
        await a_turns.progress(one.message_id, Stage.ANSWERED, answer="the answer")
        assert await b_index.scan() == []  # A holds the user: nothing to take yet
    # A dies here: it renews nothing more.
    [claim] = await claims_within(b_index)
    assert claim.lease.fence > lease.fence and claim.lease.holder == b_leases.holder
    with trio.fail_after(5):
        with pytest.raises(LeaseLost):
            await a_turns.progress(one.message_id, Stage.TEXT_SENT, text_ids=["x"])
        b_turns = b_journal.fenced(claim.lease)
        records = await b_journal.open_turns(claim.lease.tag)
        assert [(r.inbound, r.stage, r.answer) for r in records] == [
            (one, Stage.ANSWERED, "the answer"),  # resumed after the answer: not asked again
            (two, Stage.RECEIVED, None),
        ]
        for record in records:
            await b_turns.progress(record.inbound.message_id, Stage.DONE, outcome="answered")
        assert await b_leases.release(claim.lease) is True
        assert await b_index.size() == 1
    # Nothing open any more: a later scan drops the user from the index.
    with trio.fail_after(5):
        while await b_index.size():
            assert await b_index.scan() == []
            await trio.sleep(LEASE / 4)


async def test_a_held_user_is_looked_at_again_later_not_taken(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    holder = Leases(redis, keys, ttl=30)
    index = WorkIndex(other_redis, keys, Leases(other_redis, keys, ttl=LEASE))
    with trio.fail_after(5):
        await RedisJournal(redis, keys).accept([message(1)])
        assert isinstance(await holder.acquire(TAG), Lease)
        assert (await index.probe(TAG))[0] is Probe.HELD
        before = await redis.zscore(keys.work(), TAG)
        while (await redis.zscore(keys.work(), TAG)) == before:
            assert await index.scan() == []
            await trio.sleep(LEASE / 4)
    assert await index.size() == 1


async def test_a_touch_without_an_accept_is_dropped(redis: RedisClient, keys: Keys) -> None:
    # The host died between touching the index and accepting: nothing to resume.
    index = WorkIndex(redis, keys, Leases(redis, keys, ttl=LEASE))
    with trio.fail_after(5):
        await index.touch(TAG)
        assert (await index.probe(TAG))[0] is Probe.IDLE
        while await index.size():
            assert await index.scan() == []
            await trio.sleep(LEASE / 4)
    assert await redis.exists([keys.lease(TAG)]) == 0
