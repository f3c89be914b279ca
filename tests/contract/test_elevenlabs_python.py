"""ElevenLabs held to elevenlabs-python, the official SDK nobody here wrote.

The SDK's own client, with ``base_url`` on the simulator, runs speech-to-text and
text-to-speech and parses the answers into its pydantic models, and the error bodies into
``ApiError`` (``UnprocessableEntityError`` for FastAPI's 422). The SDK is used synchronously
in a worker thread: its async retry path sleeps with asyncio (reference/speech.md §3).
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Iterator
from typing import Any

import elevenlabs.speech_to_text.client as sdk_stt
import httpx
import pytest
import trio
from elevenlabs.client import ElevenLabs
from elevenlabs.core.api_error import ApiError
from elevenlabs.errors import UnprocessableEntityError
from elevenlabs.types.text_to_speech_generation_request import TextToSpeechGenerationRequest
from elevenlabs.types.tts_conversational_model import TtsConversationalModel
from elevenlabs.v_1_translation_realtime.types.text_to_dialogue_tts_model_id import (
    TextToDialogueTtsModelId,
)

from daemon.sim.audio import describe, listen, speak
from daemon.sim.elevenlabs import STT_MODELS, TTS_MODELS, ElevenLabsSim
from tests.contract.threads import in_thread, raised

KEY = "sk-contract-key"
VOICE = "contract-voice"

# The models the API lists, kept here apart from the simulator's tables so a model the
# simulator forgets (or invents) fails a test. Source: elevenlabs.io/docs/overview/models,
# "Models overview" (eleven_v3, eleven_multilingual_v2, eleven_flash_v2_5, eleven_flash_v2,
# eleven_turbo_v2_5, eleven_turbo_v2; scribe_v1, scribe_v1_experimental, scribe_v2) and its
# "Older models" / "Deprecated models" (eleven_monolingual_v1, eleven_multilingual_v1: still
# served). scribe_v2_realtime is WebSocket-only, not the batch endpoint the daemon calls.
DOCUMENTED_TTS = frozenset(
    {"eleven_v3", "eleven_multilingual_v2", "eleven_flash_v2_5", "eleven_flash_v2"}
    | {"eleven_turbo_v2_5", "eleven_turbo_v2", "eleven_monolingual_v1", "eleven_multilingual_v1"}
)
DOCUMENTED_STT = frozenset({"scribe_v1", "scribe_v1_experimental", "scribe_v2"})


def _literals(alias: Any) -> set[str]:
    """The string literals of one of the SDK's ``Union[Literal[...], Any]`` aliases."""
    found: set[str] = set()
    for arg in typing.get_args(alias):
        if typing.get_origin(arg) is typing.Literal:
            found.update(typing.get_args(arg))
        elif typing.get_args(arg):
            found |= _literals(arg)
    return found


def sdk_tts_models() -> set[str]:
    """The text-to-speech model ids elevenlabs-python 2.78 names as literals: the agents'
    TTS models, Text to Dialogue's, and the generation request's discriminants."""
    (union, *_) = typing.get_args(TextToSpeechGenerationRequest)
    requests = {m.model_fields["model_id"].default for m in typing.get_args(union)}
    return _literals(TtsConversationalModel) | _literals(TextToDialogueTtsModelId) | requests


def sdk_stt_models() -> set[str]:
    """The batch speech-to-text models the SDK's convert() docstrings name (its model_id is
    a plain str): "Supported by scribe_v2, scribe_v2_medical and scribe_v3"."""
    return set(re.findall(r"\bscribe_v\w+", inspect.getsource(sdk_stt)))


LISTED_TTS = sorted(DOCUMENTED_TTS | sdk_tts_models())
LISTED_STT = sorted(DOCUMENTED_STT | sdk_stt_models())


@pytest.fixture
async def sim(nursery: trio.Nursery) -> ElevenLabsSim:
    simulator = ElevenLabsSim(api_key=KEY, voice_ids=(VOICE,))
    with trio.fail_after(10):
        await simulator.start(nursery)
    return simulator


def _sdk(sim: ElevenLabsSim, http: httpx.Client, key: str = KEY) -> ElevenLabs:
    return ElevenLabs(api_key=key, base_url=sim.base_url, httpx_client=http)


@pytest.fixture
def sdk(sim: ElevenLabsSim) -> Iterator[ElevenLabs]:
    with httpx.Client(timeout=20) as http:
        yield _sdk(sim, http)


async def api_error(fn: Callable[[], Any]) -> ApiError:
    return await raised(ApiError, fn)


async def test_speech_to_text_through_the_sdk(sdk: ElevenLabs, sim: ElevenLabsSim) -> None:
    note = speak("where is my parcel", "en")
    result = await in_thread(
        lambda: sdk.speech_to_text.convert(
            model_id="scribe_v1",
            file=("voice.ogg", note, "audio/ogg"),
            tag_audio_events=False,
            timestamps_granularity="none",
        )
    )
    assert type(result).__name__ == "SpeechToTextChunkResponseModel"
    assert result.text == "where is my parcel"
    # Scribe's language is ISO 639-3 with a probability (the SDK: "e.g. 'eng' for English").
    assert result.language_code == "eng"
    assert 0 < result.language_probability <= 1
    (record,) = sim.stt_requests
    assert record.fields["tag_audio_events"] == "false"


async def test_speech_to_text_with_words_parses_into_the_sdks_models(sdk: ElevenLabs) -> None:
    result = await in_thread(
        lambda: sdk.speech_to_text.convert(
            model_id="scribe_v2", file=("voice.ogg", speak("bonjour à tous", "fr"), "audio/ogg")
        )
    )
    assert result.language_code == "fra"
    assert [w.text for w in result.words if w.type == "word"] == ["bonjour", "à", "tous"]
    assert all(w.start is not None and w.end is not None for w in result.words)


def test_the_model_lists_are_read_from_the_sdk() -> None:
    assert {"eleven_v4", "eleven_v4_turbo", "eleven_v3_conversational"} <= sdk_tts_models()
    assert {"scribe_v2_medical", "scribe_v3"} <= sdk_stt_models()
    assert not any("realtime" in m or "live" in m for m in LISTED_STT)  # WebSocket models


def test_the_simulator_knows_every_listed_model_and_no_other() -> None:
    assert set(TTS_MODELS) == set(LISTED_TTS)
    assert set(STT_MODELS) == set(LISTED_STT)


@pytest.mark.parametrize("model_id", LISTED_STT)
async def test_every_speech_to_text_model_the_api_lists(sdk: ElevenLabs, model_id: str) -> None:
    result = await in_thread(
        lambda: sdk.speech_to_text.convert(
            model_id=model_id, file=("voice.ogg", speak("hi", "en"), "audio/ogg")
        )
    )
    assert result.text == "hi"


async def test_text_to_speech_through_the_sdk(sdk: ElevenLabs, sim: ElevenLabsSim) -> None:
    chunks = await in_thread(
        lambda: list(
            sdk.text_to_speech.convert(
                VOICE,
                text="Your parcel left the warehouse.",
                model_id="eleven_flash_v2_5",
                output_format="opus_48000_32",
                language_code="en",
            )
        )
    )
    audio = b"".join(chunks)
    assert audio.startswith(b"OggS")
    assert describe(audio)["codec"] == "opus"
    assert listen(audio)[0] == "Your parcel left the warehouse."
    (record,) = sim.tts_requests
    assert (record.output_format, record.language_code) == ("opus_48000_32", "en")


@pytest.mark.parametrize("model_id", LISTED_TTS)
async def test_every_text_to_speech_model_the_api_lists(sdk: ElevenLabs, model_id: str) -> None:
    audio = await in_thread(
        lambda: b"".join(
            sdk.text_to_speech.convert(
                VOICE, text="Hello.", model_id=model_id, output_format="pcm_16000"
            )
        )
    )
    assert audio and len(audio) % 2 == 0  # 16-bit PCM


async def test_the_sdk_parses_the_simulators_errors(sdk: ElevenLabs, sim: ElevenLabsSim) -> None:
    note = ("voice.ogg", speak("hi"), "audio/ogg")
    unknown_voice = await api_error(
        lambda: sdk.text_to_speech.convert("nobody", text="hi", model_id="eleven_flash_v2_5")
    )
    language = await api_error(
        lambda: sdk.text_to_speech.convert(
            VOICE, text="hi", model_id="eleven_multilingual_v2", language_code="en"
        )
    )
    invalid = await api_error(lambda: sdk.speech_to_text.convert(model_id="whisper", file=note))
    with httpx.Client(timeout=20) as http:
        stranger = _sdk(sim, http, key="not-the-key")
        denied = await api_error(
            lambda: stranger.speech_to_text.convert(
                model_id="scribe_v1", file=note, request_options={"max_retries": 0}
            )
        )
    assert (unknown_voice.status_code, unknown_voice.body["detail"]["status"]) == (
        400,
        "voice_not_found",
    )
    assert language.body["detail"]["status"] == "unsupported_language"
    assert isinstance(invalid, UnprocessableEntityError)  # FastAPI's 422, typed by the SDK
    assert invalid.body["detail"][0]["loc"] == ["body", "model_id"]
    assert (denied.status_code, denied.body["detail"]["status"]) == (401, "invalid_api_key")


async def test_sentence_parts_with_request_stitching_through_the_sdk(
    sdk: ElevenLabs, sim: ElevenLabsSim
) -> None:
    # What the voice composer asks for (issue 12): raw PCM, with the neighbouring text.
    audio = await in_thread(
        lambda: b"".join(
            sdk.text_to_speech.convert(
                VOICE,
                text="It should arrive on Friday.",
                model_id="eleven_flash_v2_5",
                output_format="pcm_24000",
                language_code="en",
                previous_text="Your parcel left the warehouse.",
                next_text="Is there anything else",
            )
        )
    )
    assert audio and len(audio) % 2 == 0  # 16-bit samples, no header
    (record,) = sim.tts_requests
    assert record.output_format == "pcm_24000"
    assert (record.previous_text, record.next_text) == (
        "Your parcel left the warehouse.",
        "Is there anything else",
    )


async def test_the_sdk_surfaces_stitching_refused_on_eleven_v3(sdk: ElevenLabs) -> None:
    refused = await api_error(
        lambda: sdk.text_to_speech.convert(
            VOICE, text="Hi there.", model_id="eleven_v3", previous_text="Before."
        )
    )
    assert (refused.status_code, refused.body["detail"]["status"]) == (400, "unsupported_model")
