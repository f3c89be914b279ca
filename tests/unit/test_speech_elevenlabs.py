from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP

import httpx
import pytest
import trio

from daemon.errors import Reason, UpstreamError, UpstreamRejected, UpstreamUnavailable
from daemon.model import Transcript
from daemon.sim.audio import speak
from daemon.speech.audio import probe
from daemon.speech.client import ElevenLabs
from daemon.speech.sentence_voice import SentenceVoice
from daemon.speech.wire import (
    SENTENCE_FORMAT,
    base_mime,
    parse_error,
    parse_transcript,
    pcm_rate,
    tts_body,
    tts_language,
    upload_name,
)
from tests.unit.test_speech_audio import make_mp3, tone_pcm

API = "https://el.test"
KEY = "sk_test_key"

Handler = Callable[[httpx.Request], httpx.Response]


def make_client(
    handler: Handler,
    *,
    tts_model: str = "eleven_flash_v2_5",
    output_format: str = "opus_48000_32",
    voice_settings: Mapping[str, float | bool] | None = None,
    voice_id: str = "voice123",
) -> tuple[ElevenLabs, list[httpx.Request], httpx.AsyncClient]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return handler(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(record))
    client = ElevenLabs(
        http,
        api_url=API + "/",  # a trailing slash in config must not double the path's slash
        api_key=KEY,
        voice_id=voice_id,
        tts_model=tts_model,
        stt_model="scribe_v1",
        output_format=output_format,
        voice_settings=voice_settings,
    )
    return client, seen, http


def form_parts(request: httpx.Request) -> dict[str, EmailMessage]:
    """The multipart/form-data body, parsed back by name."""
    head = b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n"
    message = BytesParser(policy=HTTP).parsebytes(head + request.content)
    assert isinstance(message, EmailMessage) and message.is_multipart()
    parts: dict[str, EmailMessage] = {}
    for part in message.iter_parts():
        assert isinstance(part, EmailMessage)
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str)
        parts[name] = part
    return parts


def field(part: EmailMessage) -> str:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def stt_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={"language_code": "eng", "language_probability": 0.98, "text": "  Hello world!  "},
        headers={"request-id": "req-1"},
    )


# --------------------------------------------------------------------------- STT


async def test_transcribe_request_shape() -> None:
    note = speak("hello")
    client, seen, http = make_client(stt_ok)
    async with http:
        with trio.fail_after(10):
            transcript = await client.transcribe(note, "audio/ogg; codecs=opus")

    assert transcript == Transcript(text="Hello world!", language="en")  # "eng" mapped
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == f"{API}/v1/speech-to-text"
    assert request.url.query == b""
    assert request.headers["xi-api-key"] == KEY
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    parts = form_parts(request)
    assert set(parts) == {"model_id", "tag_audio_events", "timestamps_granularity", "file"}
    assert field(parts["model_id"]) == "scribe_v1"
    assert field(parts["tag_audio_events"]) == "false"
    assert field(parts["timestamps_granularity"]) == "none"
    file_part = parts["file"]
    assert file_part.get_filename() == "voice.ogg"
    assert file_part["Content-Type"] == "audio/ogg"
    assert file_part.get_payload(decode=True) == note  # the voice note as it came


async def test_transcribe_sends_language_code_when_given() -> None:
    client, seen, http = make_client(stt_ok)
    async with http:
        with trio.fail_after(10):
            await client.transcribe(speak("hola"), "audio/ogg", language="es")
    assert field(form_parts(seen[0])["language_code"]) == "es"


async def test_transcribe_other_audio_keeps_its_type_and_extension() -> None:
    mp3 = make_mp3(0.5)
    client, seen, http = make_client(stt_ok)
    async with http:
        with trio.fail_after(10):
            await client.transcribe(mp3, "audio/mpeg")
    file_part = form_parts(seen[0])["file"]
    assert file_part.get_filename() == "voice.mp3"
    assert file_part["Content-Type"] == "audio/mpeg"


async def test_transcribe_empty_text_and_no_language() -> None:
    client, _, http = make_client(lambda r: httpx.Response(200, json={"text": ""}))
    async with http:
        with trio.fail_after(10):
            transcript = await client.transcribe(speak(""), "audio/ogg")
    assert transcript == Transcript(text="", language=None)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"language_code":"en"}', b'{"text":3}'])
async def test_transcribe_malformed_reply_is_rejected(body: bytes) -> None:
    client, _, http = make_client(lambda r: httpx.Response(200, content=body))
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected) as info:
            await client.transcribe(speak("x"), "audio/ogg")
    assert info.value.upstream == "elevenlabs-stt"


async def test_transcribe_error_names_the_stt_upstream() -> None:
    body = {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
    client, _, http = make_client(lambda r: httpx.Response(401, json=body))
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected) as info:
            await client.transcribe(speak("x"), "audio/ogg")
    assert (info.value.upstream, info.value.status, info.value.code) == (
        "elevenlabs-stt",
        401,
        "invalid_api_key",
    )


# --------------------------------------------------------------------------- TTS


ANSWER_OGG = speak("the answer")  # one clip: Ogg stream serials are random per encode


def ogg_answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        content=ANSWER_OGG,
        headers={"content-type": "audio/ogg", "request-id": "r-9", "character-cost": "10"},
    )


async def test_synthesize_request_shape() -> None:
    settings = {"stability": 0.5, "similarity_boost": 0.75, "use_speaker_boost": True}
    client, seen, http = make_client(ogg_answer, voice_settings=settings)
    async with http:
        with trio.fail_after(10):
            audio = await client.synthesize("Your package left.", language="en")

    assert audio == ANSWER_OGG  # Ogg already: returned untouched
    (request,) = seen
    assert request.method == "POST"
    assert request.url.path == "/v1/text-to-speech/voice123"
    assert dict(request.url.params) == {"output_format": "opus_48000_32"}
    assert str(request.url) == f"{API}/v1/text-to-speech/voice123?output_format=opus_48000_32"
    assert request.headers["xi-api-key"] == KEY
    assert request.headers["content-type"] == "application/json"
    # Whatever it answers must be acceptable: audio, or the JSON of an error (§1.7).
    assert request.headers["accept"] == "*/*"
    assert json.loads(request.content) == {
        "text": "Your package left.",
        "model_id": "eleven_flash_v2_5",
        "language_code": "en",
        "voice_settings": settings,
    }


@pytest.mark.parametrize(
    ("model", "sent"),
    [
        ("eleven_flash_v2_5", True),
        ("eleven_turbo_v2_5", True),
        ("eleven_multilingual_v2", False),
        ("eleven_v3", False),
        ("eleven_flash_v2", False),
    ],
)
async def test_language_code_only_for_flash_and_turbo_v2_5(model: str, sent: bool) -> None:
    client, seen, http = make_client(ogg_answer, tts_model=model)
    async with http:
        with trio.fail_after(10):
            await client.synthesize("Hallo", language="de")
    body = json.loads(seen[0].content)
    assert body["model_id"] == model
    assert ("language_code" in body) is sent
    if sent:
        assert body["language_code"] == "de"
    assert "voice_settings" not in body


async def test_synthesize_without_language() -> None:
    client, seen, http = make_client(ogg_answer)
    async with http:
        with trio.fail_after(10):
            await client.synthesize("Hi")
    assert json.loads(seen[0].content) == {"text": "Hi", "model_id": "eleven_flash_v2_5"}


async def test_voice_id_is_escaped_in_the_path() -> None:
    client, seen, http = make_client(ogg_answer, voice_id="a/b c")
    async with http:
        with trio.fail_after(10):
            await client.synthesize("Hi")
    assert seen[0].url.raw_path == b"/v1/text-to-speech/a%2Fb%20c?output_format=opus_48000_32"


async def test_mp3_answer_is_transcoded_to_ogg_opus() -> None:
    mp3 = make_mp3(2.0)
    client, _, http = make_client(
        lambda r: httpx.Response(200, content=mp3, headers={"content-type": "audio/mpeg"})
    )
    async with http:
        with trio.fail_after(10):
            audio = await client.synthesize("Hello")
    assert audio.startswith(b"OggS")
    info = probe(audio)
    assert (info.format, info.codec, info.channels, info.sample_rate) == ("ogg", "opus", 1, 48_000)
    assert info.duration == pytest.approx(2.0, rel=0.10)


async def test_pcm_answer_is_transcoded_with_the_format_rate() -> None:
    pcm = tone_pcm(1.0, 24_000)
    client, seen, http = make_client(
        lambda r: httpx.Response(200, content=pcm), output_format="pcm_24000"
    )
    async with http:
        with trio.fail_after(10):
            audio = await client.synthesize("Hello")
    assert seen[0].url.params["output_format"] == "pcm_24000"
    info = probe(audio)
    assert (info.codec, info.sample_rate) == ("opus", 48_000)
    assert info.duration == pytest.approx(1.0, rel=0.10)


@pytest.mark.parametrize("content", [b"", b"<html>not audio</html>" * 10])
async def test_empty_or_undecodable_audio_is_rejected(content: bytes) -> None:
    client, _, http = make_client(lambda r: httpx.Response(200, content=content))
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected) as info:
            await client.synthesize("Hello")
    assert info.value.upstream == "elevenlabs-tts"
    assert info.value.code in {"malformed_reply", "bad_audio"}


# --------------------------------------------------------------------------- errors


def detail(status: str, message: str = "m") -> bytes:
    return json.dumps({"detail": {"status": status, "message": message}}).encode()


VALIDATION = json.dumps(
    {"detail": [{"loc": ["body", "text"], "msg": "field required", "type": "value_error"}]}
).encode()


S = Reason.SLOW_DOWN


@pytest.mark.parametrize(
    ("status", "body", "cls", "code", "reason"),
    [
        (400, detail("max_character_limit_exceeded"), UpstreamRejected,
         "max_character_limit_exceeded", None),
        (401, detail("invalid_api_key", "Invalid API key"), UpstreamRejected, "invalid_api_key",
         None),
        (401, detail("quota_exceeded"), UpstreamRejected, "quota_exceeded", None),
        (401, detail("needs_authorization"), UpstreamRejected, "needs_authorization", None),
        (403, detail("only_for_creator+"), UpstreamRejected, "only_for_creator+", None),
        (404, detail("voice_not_found"), UpstreamRejected, "voice_not_found", None),
        (422, VALIDATION, UpstreamRejected, "validation_error", None),
        (429, detail("system_busy"), UpstreamUnavailable, "system_busy", S),
        (429, detail("too_many_concurrent_requests"), UpstreamUnavailable,
         "too_many_concurrent_requests", S),
        # The busy codes mean "not now" under whichever status they come.
        (500, detail("system_busy"), UpstreamUnavailable, "system_busy", S),
        (429, b"", UpstreamUnavailable, None, S),
        (500, detail("internal_error"), UpstreamUnavailable, "internal_error", None),
        (502, b"<html>Bad Gateway</html>", UpstreamUnavailable, None, None),
        (503, b"", UpstreamUnavailable, None, S),
        (408, b"timeout", UpstreamUnavailable, None, None),
        (409, b"{}", UpstreamUnavailable, None, None),
        (400, b"\xff\xfe not utf-8", UpstreamRejected, None, None),
        (401, b'{"detail": "Unauthorized"}', UpstreamRejected, None, None),
        (400, b'{"detail": {"status": 7}}', UpstreamRejected, None, None),
        (422, b'{"detail": []}', UpstreamRejected, "validation_error", None),
        (400, b"null", UpstreamRejected, None, None),
    ],
)  # fmt: skip
def test_parse_error(
    status: int, body: bytes, cls: type[UpstreamError], code: str | None, reason: str | None
) -> None:
    error = parse_error(status, body, "elevenlabs-tts")
    assert type(error) is cls
    assert (error.upstream, error.status, error.code) == ("elevenlabs-tts", status, code)
    assert error.reason == reason
    assert str(status) in error.message


def test_parse_error_keeps_the_message() -> None:
    assert (
        "Invalid API key"
        in parse_error(401, detail("invalid_api_key", "Invalid API key"), "x").message
    )
    assert "body.text: field required" in parse_error(422, VALIDATION, "x").message


@pytest.mark.parametrize(
    ("status", "body", "cls", "code", "reason"),
    [
        (401, detail("invalid_api_key"), UpstreamRejected, "invalid_api_key", None),
        (422, VALIDATION, UpstreamRejected, "validation_error", None),
        (429, detail("too_many_concurrent_requests"), UpstreamUnavailable,
         "too_many_concurrent_requests", S),
        (503, b"Service Unavailable", UpstreamUnavailable, None, S),
        (500, detail("internal_error"), UpstreamUnavailable, "internal_error", None),
    ],
)  # fmt: skip
async def test_synthesize_maps_http_errors(
    status: int, body: bytes, cls: type[UpstreamError], code: str | None, reason: str | None
) -> None:
    client, _, http = make_client(
        lambda r: httpx.Response(status, content=body, headers={"Retry-After": "4"})
    )
    async with http:
        with trio.fail_after(10), pytest.raises(cls) as info:
            await client.synthesize("Hello")
    assert (info.value.upstream, info.value.status, info.value.code) == (
        "elevenlabs-tts",
        status,
        code,
    )
    assert (info.value.reason, info.value.retry_after) == (reason, 4.0)


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eof")],
    ids=["connect", "read-timeout", "protocol"],
)
@pytest.mark.parametrize("call", ["stt", "tts"])
async def test_transport_errors_are_unavailable(exc: httpx.TransportError, call: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    client, _, http = make_client(fail)
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamUnavailable) as info:
            if call == "stt":
                await client.transcribe(speak("x"), "audio/ogg")
            else:
                await client.synthesize("Hello")
    assert info.value.upstream == f"elevenlabs-{call}"
    assert info.value.status is None
    assert isinstance(info.value.__cause__, httpx.TransportError)


# --------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("en", "en"),
        ("EN", "en"),
        ("en-US", "en"),
        ("pt_BR", "pt"),
        ("eng", "en"),
        ("deu", "de"),
        ("ger", "de"),
        ("fil", "fil"),
        ("tgl", "fil"),
        ("nob", "no"),
        ("cmn", "zh"),
        ("vie", "vi"),
        ("xx", None),
        ("kat", None),  # Georgian: Scribe hears it, Flash v2.5 cannot speak it
        ("", None),
        (None, None),
    ],
)
def test_tts_language(code: str | None, expected: str | None) -> None:
    assert tts_language(code) == expected


def test_tts_body_maps_scribe_codes_and_drops_unknown_ones() -> None:
    assert tts_body("t", "eleven_flash_v2_5", language="spa", voice_settings=None) == {
        "text": "t",
        "model_id": "eleven_flash_v2_5",
        "language_code": "es",
    }
    assert "language_code" not in tts_body(
        "t", "eleven_flash_v2_5", language="kat", voice_settings=None
    )


@pytest.mark.parametrize(
    ("mime", "expected"),
    [
        ("audio/ogg; codecs=opus", "audio/ogg"),
        ("Audio/OGG", "audio/ogg"),
        ("audio/mpeg", "audio/mpeg"),
        ("", "application/octet-stream"),
    ],
)
def test_base_mime(mime: str, expected: str) -> None:
    assert base_mime(mime) == expected


def test_upload_name_trusts_the_bytes_for_ogg() -> None:
    assert upload_name(b"OggS....", "audio/opus") == "voice.ogg"
    assert upload_name(b"OggS....", "") == "voice.ogg"
    assert upload_name(b"\x00\x00\x00\x20ftypM4A", "audio/mp4") == "voice.m4a"
    assert upload_name(b"????", "application/x-unknown") == "voice.bin"


@pytest.mark.parametrize(
    ("fmt", "rate"),
    [("pcm_24000", 24_000), ("pcm_16000", 16_000), ("opus_48000_32", None),
     ("mp3_44100_128", None), ("wav_24000", None)],
)  # fmt: skip
def test_pcm_rate(fmt: str, rate: int | None) -> None:
    assert pcm_rate(fmt) == rate


@pytest.mark.parametrize(
    ("reported", "language"),
    [("eng", "en"), ("ara", "ar"), ("cmn", "zh"), ("tgl", "fil"), ("en", "en"), ("", None)],
)
def test_parse_transcript_maps_scribes_iso_639_3_codes(reported: str, language: str | None) -> None:
    # Scribe answers three-letter codes (e.g. "eng", with language_probability); the canned
    # texts and TTS language_code use ISO 639-1.
    body = f'{{"text":"hi","language_code":"{reported}","language_probability":0.98}}'
    assert parse_transcript(body.encode()) == Transcript("hi", language)


def test_parse_transcript_ignores_a_non_string_language() -> None:
    assert parse_transcript(b'{"text":" hi ","language_code":null}') == Transcript("hi", None)


# -- sentence by sentence: raw PCM with the neighbouring text (§1.4, §6.4) --------------------


def pcm_answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=tone_pcm(24_000, 0.2), headers={"request-id": "r-1"})


async def test_synthesize_pcm_asks_for_raw_pcm_with_the_neighbouring_text() -> None:
    client, seen, http = make_client(pcm_answer)
    async with http:
        with trio.fail_after(10):
            audio = await client.synthesize_pcm(
                "It arrives on Friday.",
                language="en",
                previous_text="Your parcel left today.",
                next_text="Anything else",
            )
    assert audio == tone_pcm(24_000, 0.2)
    (request,) = seen
    assert dict(request.url.params) == {"output_format": SENTENCE_FORMAT}
    assert SENTENCE_FORMAT == "pcm_24000"
    assert json.loads(request.content) == {
        "text": "It arrives on Friday.",
        "model_id": "eleven_flash_v2_5",
        "language_code": "en",
        "previous_text": "Your parcel left today.",
        "next_text": "Anything else",
    }


@pytest.mark.parametrize("model", ["eleven_v3", "eleven_v3_conversational"])
async def test_no_neighbouring_text_for_models_without_request_stitching(model: str) -> None:
    client, seen, http = make_client(pcm_answer, tts_model=model)
    async with http:
        with trio.fail_after(10):
            await client.synthesize_pcm("Hi there.", previous_text="Before.", next_text="After.")
    body = json.loads(seen[0].content)
    assert "previous_text" not in body and "next_text" not in body
    assert not client.stitches


@pytest.mark.parametrize("content", [b"", b"\x01\x02\x03"])
async def test_synthesize_pcm_refuses_what_is_not_16_bit_pcm(content: bytes) -> None:
    client, _, http = make_client(lambda _: httpx.Response(200, content=content))
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected) as info:
            await client.synthesize_pcm("Hi there.")
    assert info.value.code == "malformed_reply"


async def test_synthesize_pcm_maps_errors_like_synthesize() -> None:
    client, _, http = make_client(
        lambda _: httpx.Response(429, content=detail("too_many_concurrent_requests"))
    )
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamUnavailable) as info:
            await client.synthesize_pcm("Hi there.")
    assert info.value.reason == Reason.SLOW_DOWN


def test_tts_body_leaves_out_empty_neighbours() -> None:
    body = tts_body(
        "t",
        "eleven_flash_v2_5",
        language=None,
        voice_settings=None,
        previous_text="",
        next_text=None,
    )
    assert body == {"text": "t", "model_id": "eleven_flash_v2_5"}


def test_sentence_keys_differ_from_whole_note_keys_and_by_language() -> None:
    client, _, _ = make_client(ogg_answer)
    key = client.sentence_key("Hello there.", language="en")
    assert key != client.audio_key("Hello there.", language="en")  # PCM, not Ogg
    assert key != client.sentence_key("Hello there.", language="de")
    assert key == client.sentence_key("Hello  there.", language="en")  # white space folded


async def test_sentence_voice_is_the_composers_pcm_voice_through_a_wrapper() -> None:
    client, seen, http = make_client(pcm_answer)
    through_calls = 0

    async def through(call: Callable[[], Awaitable[bytes]]) -> bytes:
        nonlocal through_calls
        through_calls += 1
        return await call()

    voice = SentenceVoice(client, language="en", through=through)
    async with http:
        with trio.fail_after(10):
            audio = await voice.pcm("Hello there.", previous_text="", next_text="Bye")
    assert voice.pcm_rate == 24_000
    assert audio == tone_pcm(24_000, 0.2)
    assert through_calls == 1
    body = json.loads(seen[0].content)
    assert "previous_text" not in body  # "" means none
    assert body["next_text"] == "Bye"
    assert voice.key("Hello there.") == client.sentence_key("Hello there.", language="en")
