"""CachedSpeech: synthesis behind the audio cache; ``cached`` never calls ElevenLabs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from daemon.cache.audio import AudioCache
from daemon.sim.audio import speak
from daemon.speech.cached import CachedSpeech
from daemon.speech.client import ElevenLabs

SORRY = "Sorry, I can't answer right now."


class Upstream:
    """ElevenLabs on a mock transport: every TTS request is recorded and answered with Ogg."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return httpx.Response(200, content=speak(SORRY), headers={"content-type": "audio/ogg"})


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[CachedSpeech, Upstream]]:
    seen = Upstream()
    async with httpx.AsyncClient(transport=httpx.MockTransport(seen)) as http:
        speech = ElevenLabs(
            http,
            api_url="https://el.test",
            api_key="sk_test",
            voice_id="voice123",
            tts_model="eleven_flash_v2_5",
            stt_model="scribe_v1",
        )
        yield CachedSpeech(speech, AudioCache(max_bytes=1 << 20)), seen


async def test_cached_returns_none_for_a_phrase_never_rendered_without_calling_tts(
    upstream: tuple[CachedSpeech, Upstream],
) -> None:
    speech, seen = upstream
    with trio.fail_after(5):
        assert await speech.cached(SORRY, language="en") is None
    assert seen.requests == []


async def test_cached_returns_a_pre_rendered_phrase_in_its_language_only(
    upstream: tuple[CachedSpeech, Upstream],
) -> None:
    speech, seen = upstream
    with trio.fail_after(5):
        assert await speech.prerender([SORRY], language="en") == 1
        audio = await speech.cached(SORRY, language="en")
        # The key includes the language (it changes the sound): another one is a miss.
        other = await speech.cached(SORRY, language="de")
    assert audio is not None and audio.startswith(b"OggS")
    assert other is None
    assert len(seen.requests) == 1  # the pre-render; the lookups called nobody
    with trio.fail_after(5):  # and a later synthesis of the same phrase is a hit as well
        assert await speech.synthesize(SORRY, language="en") == audio
    assert len(seen.requests) == 1
