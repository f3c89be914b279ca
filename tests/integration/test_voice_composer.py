"""The voice composer against the ElevenLabs simulator over loopback HTTP, encoded by PyAV.

The real client (daemon.speech.client) asks the simulator for one PCM part per sentence,
with the neighbouring text; the parts are joined and encoded once: the result must be one
real Ogg/Opus voice note as long as the parts together.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from daemon.sim.audio import describe, listen
from daemon.sim.elevenlabs import ElevenLabsSim, spoken_seconds
from daemon.speech.client import ElevenLabs
from daemon.speech.composer import compose_voice
from daemon.speech.sentence_voice import SentenceVoice

KEY = "sk-composer"
VOICE = "composer-voice"
ANSWER = (
    "You can return any item within **30 days** of delivery:\n\n"
    "1. Open your order in [your account](https://example.com/account)\n"
    "2. Choose *Return item*\n"
    "3. Drop the parcel at any post office\n\n"
    "Refunds reach your card within **5–7 business days**."
)
SPOKEN = [
    "You can return any item within 30 days of delivery:",
    "Open your order in your account.",
    "Choose Return item.",
    "Drop the parcel at any post office.",
    "Refunds reach your card within 5–7 business days.",
]


@pytest.fixture
async def sim(nursery: trio.Nursery) -> ElevenLabsSim:
    simulator = ElevenLabsSim(api_key=KEY, voice_ids=(VOICE,))
    with trio.fail_after(10):
        await simulator.start(nursery)
    return simulator


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=20) as client:
        yield client


def speech(sim: ElevenLabsSim, http: httpx.AsyncClient, model: str) -> ElevenLabs:
    return ElevenLabs(
        http,
        api_url=sim.base_url,
        api_key=KEY,
        voice_id=VOICE,
        tts_model=model,
        stt_model="scribe_v1",
    )


def pieces(text: str, words: int = 3) -> list[str]:
    """A few words at a time, as the Agent API streams (the simulator sends five)."""
    tokens = re.findall(r"\s*\S+\s*", text)
    return ["".join(tokens[i : i + words]) for i in range(0, len(tokens), words)]


async def test_a_streamed_answer_becomes_one_voice_note_of_all_its_sentences(
    sim: ElevenLabsSim, http: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    voice = SentenceVoice(speech(sim, http, "eleven_flash_v2_5"), language="en")
    with trio.fail_after(30):
        async with compose_voice(nursery, voice, concurrency=2, max_chars=1500) as note:
            for piece in pieces(ANSWER):
                note.feed(piece)
            await sim.wait_tts(2)  # speech began while the answer was still coming
            result = await note.finish(ANSWER)
    assert result is not None
    asked = sorted(sim.tts_requests, key=lambda r: SPOKEN.index(r.text))
    assert [r.text for r in asked] == SPOKEN
    assert {r.output_format for r in asked} == {"pcm_24000"}
    assert {r.language_code for r in asked} == {"en"}
    # Each part came with what is said before it, and what follows as far as it was known.
    assert asked[0].previous_text is None
    assert asked[1].previous_text == SPOKEN[0]
    assert asked[-1].previous_text == " ".join(SPOKEN[:-1])
    assert asked[-1].next_text is None
    # The next sentence's first words, as far as they had come when the part was asked for.
    for part, following in zip(asked, SPOKEN[1:], strict=False):
        assert part.next_text is None or following.startswith(part.next_text), part
    assert sum(r.next_text is not None for r in asked) >= 2
    # One real voice note: Ogg/Opus, mono, as long as its parts.
    assert describe(result.ogg) == {
        "format": "ogg",
        "codec": "opus",
        "channels": 1,
        "sample_rate": 48_000,
    }
    _, _, seconds = listen(result.ogg)
    expected = sum(spoken_seconds(text) for text in SPOKEN)
    assert seconds == pytest.approx(expected, abs=0.1)
    assert result.seconds == pytest.approx(expected, abs=0.01)
    assert result.text == " ".join(SPOKEN)


async def test_a_retraction_and_a_changed_final_answer_against_the_simulator(
    sim: ElevenLabsSim, http: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    voice = SentenceVoice(speech(sim, http, "eleven_flash_v2_5"), language="en")
    final = "Your refund was sent to your card today. It takes five business days."
    with trio.fail_after(30):
        async with compose_voice(nursery, voice, concurrency=3, max_chars=1500) as note:
            note.feed("A draft answer that fails validation now. ")
            note.feed("More")
            await sim.wait_tts(1)
            note.retract()
            note.feed("Your refund was sent to your card today. It takes three ")
            note.commit()
            result = await note.finish(final)  # "three" became "five"
    assert result is not None
    assert result.text == final
    _, _, seconds = listen(result.ogg)
    assert seconds == pytest.approx(sum(spoken_seconds(s) for s in final.split(". ")), abs=0.15)


async def test_a_model_without_request_stitching_gets_no_neighbouring_text(
    sim: ElevenLabsSim, http: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    # The simulator refuses stitching fields on eleven_v3, as the API is reported to.
    voice = SentenceVoice(speech(sim, http, "eleven_v3"), language=None)
    text = "The first sentence of the answer. And the second sentence of it."
    with trio.fail_after(30):
        async with compose_voice(nursery, voice, concurrency=2, max_chars=500) as note:
            note.feed(text)
            result = await note.finish(text)
    assert result is not None
    assert len(sim.tts_requests) == 2
    assert all(r.previous_text is None and r.next_text is None for r in sim.tts_requests)
