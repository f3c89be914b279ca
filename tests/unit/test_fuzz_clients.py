"""Property-based tests of the upstream clients' answers (hypothesis over httpx.MockTransport):
whatever status, headers and body an upstream (or something in its place) answers, a client
returns what it documents or raises UpstreamError — the one error the turn knows how to turn
into an apology. Anything else would be a bug the turn can only report as "error".

Covers the parsing the clients do themselves, around the pure parsers of
test_fuzz_parsers.py: Graph (send, media URL, upload, download), Twilio (send, download),
ElevenLabs (speech-to-text, text-to-speech) and Agentforce (token, session, sync message).
"""

from __future__ import annotations

import contextlib
import json

import httpx
import hypothesis.strategies as st
from hypothesis import HealthCheck, example, given, settings

from daemon.agentforce.client import AgentforceClient
from daemon.agentforce.sessions import SessionStore
from daemon.channels.meta.client import GraphClient
from daemon.channels.twilio.client import TwilioClient
from daemon.errors import UpstreamError
from daemon.model import AgentReply, Transcript
from daemon.speech.client import ElevenLabs
from tests.unit.test_fuzz_parsers import JSON

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Header values as a server may send them: latin-1 (what HTTP/1.1 carries), digits int()
# refuses included, for the headers the clients read.
HEADER_TEXT = st.text(st.characters(max_codepoint=0xFF, exclude_categories=("Cc",)), max_size=12)
HEADERS = st.dictionaries(
    st.sampled_from(["content-type", "content-length", "retry-after", "location", "x-other"]),
    HEADER_TEXT | st.sampled_from(["²", "9" * 400, "-1", "0", "https://evil.example/x"]),
    max_size=3,
)
BODY = (
    st.binary(max_size=200)
    | JSON.map(lambda v: json.dumps(v).encode())
    | st.sampled_from([b"[" * 50_000, b'{"messages": [{"id": 5}]}', b'{"success": "yes"}'])
)
ANSWER = st.tuples(st.integers(100, 599), HEADERS, BODY)


def transport(answers: list[tuple[int, dict[str, str], bytes]]) -> httpx.MockTransport:
    """Answers each request with the next answer, then with the last one again."""
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        status, headers, body = queue.pop(0) if len(queue) > 1 else queue[0]
        # As bytes, the way a response off the wire carries them (latin-1 in HTTP/1.1).
        raw = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
        if "content-length" in headers:
            return httpx.Response(status, headers=raw, stream=httpx.ByteStream(body))
        return httpx.Response(status, headers=raw, content=body)

    return httpx.MockTransport(handler)


def graph_client(
    http: httpx.AsyncClient, phone_number_id: str = "1", access_token: str = "t"
) -> GraphClient:
    return GraphClient(
        http,
        graph_url="https://graph.example/v23.0",
        phone_number_id=phone_number_id,
        access_token=access_token,
        media_hosts=["graph.example"],
        max_media_bytes=1000,
    )


def twilio_client(http: httpx.AsyncClient, auth_token: str = "t") -> TwilioClient:
    return TwilioClient(
        http,
        api_url="https://api.twilio.example",
        account_sid="AC1",
        auth_token=auth_token,
        media_hosts=["api.twilio.example", "*.twiliocdn.example"],
        max_media_bytes=1000,
    )


def elevenlabs_client(http: httpx.AsyncClient, api_key: str = "k") -> ElevenLabs:
    return ElevenLabs(
        http,
        api_url="https://el.example",
        api_key=api_key,
        voice_id="v",
        tts_model="eleven_flash_v2_5",
        stt_model="scribe_v1",
    )


def agentforce_client(http: httpx.AsyncClient, client_secret: str = "secret") -> AgentforceClient:
    return AgentforceClient(
        http,
        token_url="https://sf.example/services/oauth2/token",
        api_url="https://api.sf.example/einstein/ai-agent/v1",
        instance_endpoint="https://sf.example",
        agent_id="0Xx1",
        client_id="id",
        client_secret=client_secret,
        sessions=SessionStore(max_sessions=10, idle_seconds=600),
    )


@SETTINGS
@given(ANSWER)
@example((200, {}, b'{"messages": [[]]}'))
@example((200, {}, b"[" * 50_000))
@example((429, {"retry-after": "9" * 400}, b"{}"))
async def test_graph_answers(answer: tuple[int, dict[str, str], bytes]) -> None:
    async with httpx.AsyncClient(transport=transport([answer])) as http:
        client = graph_client(http)
        for call, kind in (
            (lambda: client.post_message({"type": "text", "text": {"body": "x"}}), str),
            (lambda: client.media_url("123"), tuple),
            (lambda: client.upload(b"OggS"), str),
            (lambda: client.download("https://graph.example/media/1"), bytes),
        ):
            with contextlib.suppress(UpstreamError):
                assert isinstance(await call(), kind)


@SETTINGS
@given(st.lists(ANSWER, min_size=1, max_size=3))
@example([(200, {"content-length": "²"}, b"OggS")])
@example([(302, {"location": "https://evil.example/x"}, b"")])
@example([(302, {"location": "//\x00"}, b"")])
async def test_twilio_answers(answers: list[tuple[int, dict[str, str], bytes]]) -> None:
    async with httpx.AsyncClient(transport=transport(answers)) as http:
        client = twilio_client(http)
        for call, kind in (
            (lambda: client.send([("To", "whatsapp:+1"), ("Body", "x")]), str),
            (lambda: client.download("https://api.twilio.example/media/1"), bytes),
        ):
            with contextlib.suppress(UpstreamError):
                assert isinstance(await call(), kind)


@SETTINGS
@given(ANSWER)
@example((422, {}, b'{"detail": [{"loc": 5}]}'))
@example((200, {"content-type": "audio/ogg"}, b"not ogg at all"))
async def test_elevenlabs_answers(answer: tuple[int, dict[str, str], bytes]) -> None:
    async with httpx.AsyncClient(transport=transport([answer])) as http:
        client = elevenlabs_client(http)
        with contextlib.suppress(UpstreamError):
            assert isinstance(await client.transcribe(b"OggS", "audio/ogg"), Transcript)
        with contextlib.suppress(UpstreamError):
            assert isinstance(await client.synthesize("hello"), bytes)


@SETTINGS
@given(st.lists(ANSWER, min_size=1, max_size=4))
@example([(200, {}, b'{"access_token": "x"}'), (200, {}, b'{"sessionId": 5}')])
@example(
    [
        (200, {}, b'{"access_token": "x"}'),
        (200, {}, b'{"sessionId": "s"}'),
        (404, {}, b"{}"),
    ]
)
async def test_agentforce_answers(answers: list[tuple[int, dict[str, str], bytes]]) -> None:
    async with httpx.AsyncClient(transport=transport(answers)) as http:
        client = agentforce_client(http)
        with contextlib.suppress(UpstreamError):
            assert isinstance(await client.ask("15550001", "hello"), AgentReply)
