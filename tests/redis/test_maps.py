"""The simpler shared maps on real Redis, each seen from two hosts (two clients)."""

from __future__ import annotations

import pytest
import trio

from daemon.model import AgentMessage, AgentReply
from daemon.state.redis.audio import RedisAudio, RedisMediaIds
from daemon.state.redis.client import RedisClient
from daemon.state.redis.dedupe import Dedupe
from daemon.state.redis.deferred import RedisDeferred
from daemon.state.redis.keys import Keys
from daemon.state.redis.language import RedisLanguages
from daemon.state.redis.media import RedisPublicMedia
from daemon.state.redis.responses import RedisPendingContext, RedisResponses
from tests.redis.helpers import run_out

OGG = b"OggS" + bytes(200)


def answer(text: str, kind: str = "Inform") -> AgentReply:
    return AgentReply((AgentMessage(kind, text),))


async def test_dedupe_claim_is_won_once_across_hosts(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    hosts = [Dedupe(c, keys) for c in (redis, other_redis)] * 10
    wins: list[bool] = []

    async def claim(dedupe: Dedupe) -> None:
        wins.append(await dedupe.claim("status:wamid.1", 60))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for dedupe in hosts:
                nursery.start_soon(claim, dedupe)
        assert wins.count(True) == 1
        assert await hosts[0].claim("other", 60, token="t") is True
        assert await hosts[1].claim("other", 60, token="t") is True  # the same claimant again
        assert await hosts[1].claim("other", 60, token="u") is False
        assert 0 < await redis.pttl(keys.shared("dedupe", "other")) <= 60_000


async def test_response_confirmed_by_users_on_two_hosts_serves_both(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    a = RedisResponses(redis, keys, default_ttl=3600)
    b = RedisResponses(other_redis, keys, default_ttl=3600)
    reply = answer("We open at 9.")
    with trio.fail_after(5):
        assert await a.record("q1", "+15550001", reply) == "candidate"
        assert await b.lookup("q1") is None
        assert await b.record("q1", "+15550001", reply) == "candidate"  # same user: no proof
        assert await b.record("q1", "+15550002", reply) == "confirmed"
        hit = await a.lookup("q1")
        assert hit is not None and hit.reply == reply and hit.hits == 1
        assert await a.holds("q1", reply) and not await a.holds("q1", answer("Other."))
        assert (await b.lookup("q1")) is not None
        assert 0 < await redis.pttl(keys.shared("rc", "q1", "answer")) <= 3_600_000
        assert (a.hits, b.hits, b.misses) == (1, 1, 1)


async def test_response_key_goes_volatile_when_users_differ(redis: RedisClient, keys: Keys) -> None:
    cache = RedisResponses(redis, keys, default_ttl=3600)
    with trio.fail_after(5):
        assert await cache.record("q", "u1", answer("Your balance is 10.")) == "candidate"
        assert await cache.record("q", "u2", answer("Your balance is 99.")) == "volatile"
        assert await cache.record("q", "u3", answer("Your balance is 99.")) == "known volatile"
        assert await cache.lookup("q") is None
        assert await cache.record("flow", "u1", answer("Which card?", "Inquire")) == "volatile"
        assert await cache.record("t", "u1", answer("oops", "Failure")) == "no evidence"
        assert await cache.record("trusted", "u1", answer("Hi."), trusted=True) == "confirmed"
        assert await cache.forget("trusted") is True
        assert await cache.flush() >= 1
        assert await cache.lookup("trusted") is None


async def test_pending_context_is_taken_once_by_whichever_host(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    a = RedisPendingContext(redis, keys, ttl=1200)
    b = RedisPendingContext(other_redis, keys, ttl=1200)
    with trio.fail_after(5):
        await a.remember("+15550001", "When do you open?", "At 9.")
        assert await b.has("+15550001")
        assert await b.take("+15550001") == ("When do you open?", "At 9.")
        assert await a.take("+15550001") is None
        assert not await a.has("+15550001")


async def test_audio_and_media_ids_are_shared(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    a, b = RedisAudio(redis, keys, ttl=3600), RedisAudio(other_redis, keys, ttl=3600)
    ids_a, ids_b = RedisMediaIds(redis, keys), RedisMediaIds(other_redis, keys)
    with trio.fail_after(5):
        await a.put("k1", OGG)
        assert await b.get("k1") == OGG
        await a.put("k2", b"not ogg")  # never shared: WhatsApp must get a voice note
        assert await b.get("k2") is None
        await ids_a.put("k1", "phone-1", "media-77")
        assert await ids_b.get("k1", "phone-1") == "media-77"
        assert await ids_b.get("k1", "phone-2") is None
        await ids_b.forget("k1", "phone-1")
        assert await ids_a.get("k1", "phone-1") is None
        assert 0 < await redis.pttl(keys.shared("tts", "k1")) <= 3_600_000
    with pytest.raises(ValueError):
        RedisMediaIds(redis, keys, ttl=30 * 86400)


async def test_twilio_media_is_served_by_the_other_host_until_it_expires(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    a = RedisPublicMedia(redis, keys, ttl=600, max_bytes=1000)
    b = RedisPublicMedia(other_redis, keys, ttl=600, max_bytes=1000)
    with trio.fail_after(5):
        token = await a.put(OGG, "audio/ogg")
        assert len(token) >= 43  # 256 bits, URL-safe
        assert await b.get(token) == (OGG, "audio/ogg")
        assert await b.get(token + "x") is None
        assert 0 < await redis.pttl(keys.shared("media", token)) <= 600_000
        await run_out(redis, keys.shared("media", token))
        assert await b.get(token) is None
        other = await b.put(OGG, "audio/ogg")
        await a.discard(other)
        assert await b.get(other) is None
        with pytest.raises(ValueError):
            await a.put(bytes(1001), "audio/ogg")


async def test_language_and_deferred_are_per_user_with_ttls(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    lang_a, lang_b = RedisLanguages(redis, keys, ttl=60), RedisLanguages(other_redis, keys)
    deferred_a = RedisDeferred(redis, keys, ttl=60)
    deferred_b = RedisDeferred(other_redis, keys)
    with trio.fail_after(5):
        await lang_a.remember("+15550001", "ar")
        assert await lang_b.get("+15550001") == "ar"
        assert await lang_b.get("+15550002") is None
        for message_id in ("m1", "m2", "m1"):
            await deferred_a.add("+15550001", message_id)
        assert await deferred_b.ids("+15550001") == ["m1", "m2"]
        await deferred_b.discard("+15550001", "m1")
        assert await deferred_a.ids("+15550001") == ["m2"]
        async for key in redis.scan_iter(match=f"{keys.prefix}*"):
            assert 0 < await redis.pttl(key) <= 60_000, key
