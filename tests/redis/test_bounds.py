"""Every key a turn leaves in Redis has a TTL, except the work index, which is bounded."""

from __future__ import annotations

import trio

from daemon.config import LimitsConfig
from daemon.limits import Limit
from daemon.model import AgentMessage, AgentReply, Inbound, Kind, Transcript, User
from daemon.state.base import Stage
from daemon.state.redis import (
    Dedupe,
    Keys,
    Leases,
    RedisAudio,
    RedisClient,
    RedisDeferred,
    RedisJournal,
    RedisLanguages,
    RedisMediaIds,
    RedisPendingContext,
    RedisPublicMedia,
    RedisResponses,
    RedisSessions,
    RedisUserLimits,
    user_tag,
)
from tests.redis.helpers import hold

USER = "+15550001"
OGG = b"OggS" + bytes(100)


async def test_a_turn_leaves_only_keys_that_expire(redis: RedisClient, keys: Keys) -> None:
    tag = user_tag(USER)
    message = Inbound("wamid.1", User(USER, USER), Kind.VOICE)
    leases = Leases(redis, keys, ttl=15)
    journal = RedisJournal(redis, keys)
    reply = AgentReply((AgentMessage("Inform", "At 9."),))
    with trio.fail_after(10):
        await journal.accept([message])
        lease = await hold(leases, tag)
        turns = journal.fenced(lease)
        await turns.attempt("wamid.1")
        limits = RedisUserLimits(redis, keys, LimitsConfig())
        await limits.admit(USER)
        await limits.spend(USER, Limit.DAILY_STT_SECONDS, 3)
        await turns.progress("wamid.1", Stage.TRANSCRIBED, transcript=Transcript("hi", "en"))
        sessions = RedisSessions(redis, keys)
        await sessions.start(lease, USER, "s-1")
        await sessions.next_sequence(lease, "s-1")
        await RedisResponses(redis, keys, default_ttl=60).record("q", USER, reply)
        await RedisPendingContext(redis, keys, ttl=60).remember(USER, "q", "a")
        await RedisAudio(redis, keys).put("a1", OGG)
        await RedisMediaIds(redis, keys).put("a1", "phone", "m1")
        await RedisPublicMedia(redis, keys).put(OGG, "audio/ogg")
        await RedisDeferred(redis, keys).add(USER, "wamid.0")
        await RedisLanguages(redis, keys).remember(USER, "en")
        await Dedupe(redis, keys).claim("x", 60)
        await leases.may_send(lease)
        await turns.progress("wamid.1", Stage.DONE)
        found = [k async for k in redis.scan_iter(match=f"{keys.prefix}*")]
        without_ttl = [k for k in found if await redis.pttl(k) < 0]
    assert len(found) > 15
    assert without_ttl == [keys.work().encode()]  # one member per user with recent work
