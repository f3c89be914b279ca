"""daemon.upstream: the status table every parser follows, the codes over it, and the one
mapping of httpx errors every client goes through."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
import trio

from daemon import upstream
from daemon.agentforce import wire as agentforce
from daemon.channels.meta import wire as meta
from daemon.channels.twilio import wire as twilio
from daemon.errors import Reason, UpstreamError, UpstreamRejected, UpstreamUnavailable
from daemon.speech import wire as speech
from daemon.upstream import Codes, Meaning, Statuses
from tests.unit.test_fuzz_clients import (
    agentforce_client,
    elevenlabs_client,
    graph_client,
    twilio_client,
)

U, R = UpstreamUnavailable, UpstreamRejected

# The rows of the module doc's table, with a status standing for "other 5xx" and "other".
ROWS = {"408": 408, "409": 409, "423": 423, "429": 429, "503": 503, "other 5xx": 500, "other": 400}

PARSERS = {
    "agentforce": lambda status: agentforce.parse_error(status, b""),
    "whatsapp": lambda status: meta.parse_graph_error(status, b""),
    "twilio": lambda status: twilio.parse_error(status, b""),
    "elevenlabs": lambda status: speech.parse_error(status, b"", "elevenlabs-tts"),
}


def cell(meaning: Meaning) -> str:
    letter = "U" if meaning.kind is UpstreamUnavailable else "R"
    return f"{letter} {meaning.reason}" if meaning.reason else letter


def test_the_table_in_the_module_doc_is_the_table() -> None:
    assert upstream.__doc__ is not None
    doc_rows = {}
    lines = upstream.__doc__.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == ["status", *STATUSES])
    for line in lines[start + 1 : start + 1 + len(ROWS)]:
        name = next(row for row in ROWS if line.strip().startswith(row))
        doc_rows[name] = line.strip()[len(name) :].split()
    for name, status in ROWS.items():
        expected = " ".join(cell(upstream.STATUS_TABLE[up].meaning(status)) for up in STATUSES)
        assert " ".join(doc_rows[name]) == expected, name


STATUSES = list(upstream.STATUS_TABLE)


@pytest.mark.parametrize("name", STATUSES)
def test_every_parser_follows_its_column_without_a_code(name: str) -> None:
    column = upstream.STATUS_TABLE[name]
    for status in range(100, 600):
        error = PARSERS[name](status)
        assert (type(error), error.reason) == tuple(column.meaning(status)), status
        assert error.status == status


def test_the_columns_differ_where_the_upstreams_do() -> None:
    table = upstream.STATUS_TABLE
    # Agentforce: one request at a time per session (§10): this user waits, nobody else.
    assert table["agentforce"].meaning(423) == (U, Reason.USER_BUSY)
    assert table["twilio"].meaning(423) == (R, None)
    # ElevenLabs retries 408 and 409 like its SDK; Graph and Twilio document neither.
    assert table["elevenlabs"].meaning(409) == (U, None)
    assert table["whatsapp"].meaning(408) == (R, None)
    # Everywhere: 429 and 503 not processed, another 5xx may have been.
    for column in table.values():
        assert column.meaning(429) == column.meaning(503) == (U, Reason.SLOW_DOWN)
        assert column.meaning(500) == column.meaning(599) == (U, None)


CODES = Codes(
    retryable=frozenset({1, 2}),
    fatal=frozenset({10}),
    reasons={2: Reason.SLOW_DOWN, 10: Reason.RECIPIENT},
    final=frozenset({1, 10}),
)
STATUS = Statuses(
    transient=frozenset({429}), reasons={429: Reason.SLOW_DOWN, 503: Reason.SLOW_DOWN}
)


@pytest.mark.parametrize(
    ("code", "status", "meaning"),
    [
        (None, 503, (U, Reason.SLOW_DOWN)),  # no code: the status speaks
        (99, 429, (U, Reason.SLOW_DOWN)),  # an unknown code: the status speaks
        (99, 400, (R, None)),
        (1, 400, (U, None)),  # retryable whatever the status
        (1, 503, (U, None)),  # final: no reason even on a 503
        (2, 503, (U, Reason.SLOW_DOWN)),
        (2, 400, (U, Reason.SLOW_DOWN)),  # the code's own reason
        (10, 429, (R, Reason.RECIPIENT)),  # fatal whatever the status
    ],
)
def test_codes_decide_over_the_status(
    code: int | None, status: int, meaning: tuple[type[UpstreamError], Reason | None]
) -> None:
    assert CODES.meaning(code, status, STATUS) == meaning


def test_documented_code_decisions() -> None:
    # Graph's 131000 "unknown error" may have been processed, even on a 503 (§5.1).
    maybe = meta.parse_graph_error(503, b'{"error": {"code": 131000, "message": "x"}}')
    assert (type(maybe), maybe.reason) == (U, None)
    # ElevenLabs' busy codes are a slow-down by themselves (speech.md §1.7).
    busy = speech.parse_error(
        400, b'{"detail": {"status": "system_busy"}}', "elevenlabs-stt", retry_after=3.0
    )
    assert (type(busy), busy.reason, busy.retry_after) == (R, Reason.SLOW_DOWN, 3.0)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [({"Retry-After": "7"}, 7.0), ({}, None), ({"Retry-After": "soon"}, None)],
)
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert upstream.retry_after(httpx.Response(429, headers=headers)) == seconds


# -- transport errors ----------------------------------------------------------------------

REQUEST = httpx.Request("POST", "https://api.example/x")
SECRET = "sk_live_do_not_log"


@pytest.mark.parametrize(
    ("exc", "kind", "message"),
    [
        (
            httpx.ConnectError("[Errno 111] refused"),
            U,
            "POST failed: ConnectError: [Errno 111] refused",
        ),
        (httpx.ReadTimeout("timed out"), U, "POST failed: ReadTimeout: timed out"),
        (httpx.PoolTimeout(""), U, "POST failed: PoolTimeout"),
        (
            httpx.RemoteProtocolError("Server\ndisconnected"),
            U,
            "POST failed: RemoteProtocolError: Server disconnected",
        ),
        (httpx.DecodingError("Error -3"), R, "POST failed: DecodingError: Error -3"),
        (httpx.TooManyRedirects("loop"), R, "POST failed: TooManyRedirects: loop"),
        # h11 quotes the header it refused: our own credentials. The text is left out.
        (
            httpx.LocalProtocolError(f"Illegal header value b'Bearer {SECRET}\\x00'"),
            U,
            "POST failed: LocalProtocolError",
        ),
    ],
)
def test_map_transport_errors(
    exc: httpx.HTTPError, kind: type[UpstreamError], message: str
) -> None:
    with (
        pytest.raises(UpstreamError) as raised,
        upstream.map_transport_errors("agentforce", "POST"),
    ):
        raise exc
    assert type(raised.value) is kind
    assert (raised.value.upstream, raised.value.message) == ("agentforce", message)
    assert raised.value.__cause__ is exc  # resilience.retry.was_sent reads connect errors here
    assert raised.value.status is None and raised.value.reason is None


def test_map_transport_errors_lets_everything_else_pass() -> None:
    with pytest.raises(ValueError), upstream.map_transport_errors("twilio"):
        raise ValueError("not an httpx error")
    already = UpstreamRejected("twilio", "mapped already")
    with pytest.raises(UpstreamRejected) as raised, upstream.map_transport_errors("twilio"):
        raise already
    assert raised.value is already


def test_describe_clips_long_texts() -> None:
    described = upstream.describe(httpx.RemoteProtocolError("x" * 1000))
    assert described.startswith("RemoteProtocolError: xxx") and len(described) < 250


def _clients(http: httpx.AsyncClient) -> dict[str, Callable[[], Awaitable[object]]]:
    graph = graph_client(http, access_token=SECRET)
    twilio_api = twilio_client(http, auth_token=SECRET)
    voice = elevenlabs_client(http, api_key=SECRET)
    agent = agentforce_client(http, client_secret=SECRET)
    return {
        "graph send": lambda: graph.post_message({"type": "text", "text": {"body": "x"}}),
        "graph media url": lambda: graph.media_url("1"),
        "graph upload": lambda: graph.upload(b"OggS"),
        "graph download": lambda: graph.download("https://graph.example/media/1"),
        "twilio send": lambda: twilio_api.send([("To", "whatsapp:+1")]),
        "twilio download": lambda: twilio_api.download("https://api.twilio.example/m/1"),
        "speech-to-text": lambda: voice.transcribe(b"OggS", "audio/ogg"),
        "text-to-speech": lambda: voice.synthesize("hello"),
        "agentforce ask": lambda: agent.ask("u1", "hello"),
    }


CALLS = [
    "graph send",
    "graph media url",
    "graph upload",
    "graph download",
    "twilio send",
    "twilio download",
    "speech-to-text",
    "text-to-speech",
    "agentforce ask",
]


@pytest.mark.parametrize("call", CALLS)
async def test_no_client_logs_the_credential_h11_refused(call: str) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth2/token"):
            return httpx.Response(200, json={"access_token": SECRET})  # the bearer from now on
        header = request.headers.get("authorization") or request.headers.get("xi-api-key") or ""
        raise httpx.LocalProtocolError(f"Illegal header value {header.encode()!r}")

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        with trio.fail_after(10), pytest.raises(UpstreamUnavailable) as raised:
            await _clients(http)[call]()
    assert SECRET not in str(raised.value)
    assert isinstance(raised.value.__cause__, httpx.LocalProtocolError)


@pytest.mark.parametrize("call", CALLS)
async def test_an_answer_that_does_not_decode_is_rejected_by_every_client(call: str) -> None:
    # Graph and Twilio let the raw httpx.DecodingError out, which the turn could only report
    # as a bug; it is an answer we cannot read: UpstreamRejected, like everywhere else.
    def garbled(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth2/token"):
            return httpx.Response(200, json={"access_token": "t"})
        if request.url.path.endswith("/sessions"):
            return httpx.Response(200, json={"sessionId": "s", "messages": []})
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"not gzip")

    async with httpx.AsyncClient(transport=httpx.MockTransport(garbled)) as http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected) as raised:
            await _clients(http)[call]()
    assert "DecodingError" in raised.value.message


@pytest.mark.parametrize("call", CALLS)
async def test_every_client_gives_the_error_its_retry_after(call: str) -> None:
    # Media downloads used to drop it: every upstream error now carries the answer's own.
    def throttled(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth2/token"):
            return httpx.Response(200, json={"access_token": "t"})
        return httpx.Response(429, headers={"Retry-After": "7"}, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(throttled)) as http:
        with trio.fail_after(10), pytest.raises(UpstreamUnavailable) as raised:
            await _clients(http)[call]()
    assert (raised.value.status, raised.value.retry_after) == (429, 7.0)
    assert raised.value.reason == Reason.SLOW_DOWN
