"""PublicMedia: the voice notes Twilio fetches from us, bounded by age and by bytes."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from daemon.channels.twilio.public_media import PublicMedia


async def test_put_then_get() -> None:
    media = PublicMedia()
    token = media.put(b"OggS...", "audio/ogg")
    assert media.get(token) == (b"OggS...", "audio/ogg")
    assert media.get(token) == (b"OggS...", "audio/ogg")  # Twilio may fetch twice
    assert media.total_bytes == 7
    assert len(media) == 1


async def test_tokens_are_unguessable_and_distinct() -> None:
    media = PublicMedia()
    tokens = {media.put(b"x", "audio/ogg") for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert len(token) >= 43  # 32 random bytes, URL-safe base64
        assert all(c.isalnum() or c in "-_" for c in token)


async def test_unknown_token_is_none() -> None:
    media = PublicMedia()
    media.put(b"x", "audio/ogg")
    assert media.get("nope") is None
    assert media.get("") is None


async def test_entries_expire_after_ttl(autojump_clock: trio.testing.MockClock) -> None:
    media = PublicMedia(ttl=600.0)
    token = media.put(b"abc", "audio/ogg")
    await trio.sleep(599)
    assert media.get(token) == (b"abc", "audio/ogg")
    await trio.sleep(1)
    assert media.get(token) is None
    assert media.total_bytes == 0
    assert len(media) == 0


async def test_expired_entries_go_on_put(autojump_clock: trio.testing.MockClock) -> None:
    media = PublicMedia(ttl=10.0)
    old = media.put(b"a" * 10, "audio/ogg")
    await trio.sleep(11)
    new = media.put(b"b" * 5, "audio/ogg")
    assert media.total_bytes == 5
    assert media.get(old) is None
    assert media.get(new) == (b"b" * 5, "audio/ogg")


async def test_oldest_is_evicted_when_bytes_run_out() -> None:
    media = PublicMedia(max_bytes=10)
    first = media.put(b"1111", "audio/ogg")
    second = media.put(b"2222", "audio/ogg")
    third = media.put(b"333", "audio/ogg")  # 11 bytes would not fit: the first goes
    assert media.get(first) is None
    assert media.get(second) == (b"2222", "audio/ogg")
    assert media.get(third) == (b"333", "audio/ogg")
    assert media.total_bytes == 7
    fits = media.put(b"4" * 10, "audio/ogg")  # takes the whole budget
    assert media.get(second) is None
    assert media.get(third) is None
    assert media.get(fits) == (b"4" * 10, "audio/ogg")
    assert media.total_bytes == 10


async def test_too_large_is_refused() -> None:
    media = PublicMedia(max_bytes=10)
    kept = media.put(b"x", "audio/ogg")
    with pytest.raises(ValueError, match="exceed"):
        media.put(b"y" * 11, "audio/ogg")
    assert media.get(kept) == (b"x", "audio/ogg")


async def test_discard() -> None:
    media = PublicMedia()
    token = media.put(b"abc", "audio/ogg")
    media.discard(token)
    media.discard(token)  # twice is fine
    assert media.get(token) is None
    assert media.total_bytes == 0


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PublicMedia(ttl=0, clock=lambda: 0.0)
    with pytest.raises(ValueError):
        PublicMedia(max_bytes=0, clock=lambda: 0.0)


async def test_the_memory_bound_comes_from_twilio_media_memory_bytes() -> None:
    import httpx
    from quart_trio import QuartTrio

    from daemon import config
    from daemon.cache.media_ids import MediaIds
    from daemon.runtime.compose import build_channel

    settings = config.replace(
        config.Settings(), channel={"provider": "twilio"}, twilio={"media_memory_bytes": 10}
    )
    async with httpx.AsyncClient() as http:
        built = build_channel(settings, http, MediaIds(max_entries=1, ttl=1.0))
    app = QuartTrio("twilio-media")
    for add_routes in built.routes:  # the provider's own /media/<token>
        add_routes(app)
    channel = built.channel
    async with app.test_app() as test_app:
        client = test_app.test_client()

        async def served(token: str) -> bool:
            return (await client.get(f"/media/{token}")).status_code == 200

        first = (await channel.prepare_voice(b"12345")).ref
        second = (await channel.prepare_voice(b"67890")).ref
        assert await served(first) and await served(second)  # 10 bytes: at the bound
        third = (await channel.prepare_voice(b"abc")).ref  # over the bound: the oldest goes
        assert not await served(first)
        assert await served(second) and await served(third)
        with pytest.raises(ValueError, match="exceed the public media bound 10"):
            await channel.prepare_voice(b"x" * 11)


def test_media_memory_bytes_must_be_positive() -> None:
    from daemon import config

    with pytest.raises(config.ConfigError, match=r"\[twilio\] media_memory_bytes"):
        config.parse({"twilio": {"media_memory_bytes": 0}}, env={})
