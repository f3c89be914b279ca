"""Property-based tests (hypothesis) of every parser of what comes from outside: both providers'
webhooks and every upstream response (Graph, Twilio, Agentforce sync and SSE, ElevenLabs).

The properties: a parser returns what it documents or raises the one error it documents
(BadWebhook for a webhook, UpstreamError for an upstream answer), never anything else (in the
daemon that would be a 500, a crashed turn, or a batch failing on every redelivery); and a
webhook parser drops nothing silently: every message item comes back as a message or is
counted. Shrunk failures are kept below each test as ``@example``s or plain tests.

Kept fast for CI (``SETTINGS``): a few hundred examples each, no deadline (a loaded CI box
must not turn a slow example into a failure).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, example, given, settings

from daemon.agentforce import wire as agentforce
from daemon.agentforce.sse import SseParser, SseTooLarge
from daemon.agentforce.stream import StreamedTurn, parse_event
from daemon.channels.base import BadWebhook
from daemon.channels.meta import wire as meta
from daemon.channels.twilio import wire as twilio
from daemon.errors import UpstreamError
from daemon.model import AgentReply, Batch, Transcript
from daemon.speech import wire as elevenlabs
from daemon.state.store import inbound_from_json, inbound_to_json

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies ------------------------------------------------------------------------------

# Strings as hostile senders write them: any code point, lone surrogates included (JSON can
# carry them as \ud83d), digits int() refuses, and very long digit runs.
NASTY = st.sampled_from(
    ["\ud83d", "\udfff", "²", "٣٤", "9" * 5000, "", " ", "\x00", "\u202e", "💩", "wamid.\ud800"]
)
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=20) | NASTY
DIGITS = st.from_regex(r"\A[0-9]{1,15}\Z") | NASTY
INTS = st.integers() | st.integers(min_value=10**40, max_value=10**60)
SCALAR = st.none() | st.booleans() | INTS | st.floats(allow_nan=False) | TEXT
JSON = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the plausible value, sometimes any JSON at all."""
    return st.one_of(value, value, value, JSON)


KINDS = (
    st.sampled_from(
        ["text", "audio", "image", "interactive", "button", "reaction", "system", "unsupported"]
    )
    | TEXT
)


@st.composite
def meta_message(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(maybe(KINDS))
    message: dict[str, Any] = {}
    for key, value in (
        ("from", maybe(DIGITS)),
        ("id", maybe(st.from_regex(r"\Awamid\.[A-Za-z0-9+/=]{4,20}\Z") | TEXT)),
        ("timestamp", maybe(DIGITS | INTS)),
        ("type", st.just(kind)),
        ("from_user_id", maybe(TEXT)),
        ("errors", maybe(st.lists(st.fixed_dictionaries({"code": maybe(INTS | TEXT)})))),
    ):
        if (
            draw(st.integers(0, 9)) < 8
            if key in ("from", "id", "timestamp", "type")
            else draw(st.booleans())
        ):
            message[key] = draw(value)
    if isinstance(kind, str):
        payload = draw(
            maybe(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "body": maybe(TEXT),
                        "id": maybe(TEXT),
                        "mime_type": maybe(TEXT),
                        "sha256": maybe(TEXT),
                        "voice": maybe(st.booleans()),
                        "type": maybe(st.sampled_from(["button_reply", "list_reply"]) | TEXT),
                        "button_reply": maybe(st.fixed_dictionaries({"title": maybe(TEXT)})),
                        "text": maybe(TEXT),
                        "payload": maybe(TEXT),
                    },
                )
            )
        )
        message[kind] = payload
    return message


@st.composite
def meta_status(draw: st.DrawFn) -> Any:
    return draw(
        maybe(
            st.fixed_dictionaries(
                {"status": maybe(st.sampled_from(["sent", "delivered", "read", "failed"]) | TEXT)},
                optional={"errors": maybe(st.lists(st.fixed_dictionaries({"code": JSON})))},
            )
        )
    )


CONTACT = st.fixed_dictionaries(
    {}, optional={"wa_id": maybe(DIGITS), "user_id": maybe(TEXT), "profile": JSON}
)


@st.composite
def meta_body(draw: st.DrawFn) -> tuple[bytes, int]:
    """A webhook body whose envelope is mostly right, and how many items its messages and
    statuses lists hold (what must come back as a message or be counted)."""
    items = 0
    entries = []
    for _ in range(draw(st.integers(1, 2))):
        changes = []
        for _ in range(draw(st.integers(1, 2))):
            messages = draw(st.lists(meta_message() | JSON, max_size=4))
            statuses = draw(st.lists(meta_status(), max_size=2))
            items += len(messages) + len(statuses)
            value = {
                "messaging_product": "whatsapp",
                "metadata": {"phone_number_id": "106540352242922"},
                "contacts": draw(st.lists(CONTACT | JSON, max_size=2)),
                "messages": messages,
                "statuses": statuses,
            }
            changes.append({"field": "messages", "value": value})
        entries.append({"id": "1", "changes": changes})
    body = {"object": "whatsapp_business_account", "entry": entries}
    raw = json.dumps(body, ensure_ascii=True)  # as Meta sends it: \u escapes, surrogates too
    return raw.encode("ascii"), items


# -- webhooks ----------------------------------------------------------------------------------


def assert_storable(batch: Batch) -> None:
    """What a parser hands on goes to the inbox as it is: it must be stored and read back."""
    for message in batch.messages:
        assert message.unstorable() == ""
        assert inbound_from_json(inbound_to_json(message)) == message
        assert message.message_id and message.user.key


def _one_message(message: dict[str, Any]) -> tuple[bytes, int]:
    value = {"metadata": {"phone_number_id": "1"}, "messages": [message]}
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(body).encode(), 1


@SETTINGS
@given(meta_body())
# Found by this test: a list as unsupported.type was looked up in a set (TypeError, 503).
@example(
    _one_message({"from": "0", "id": "w.0", "type": "unsupported", "unsupported": {"type": []}})
)
def test_meta_every_item_is_a_message_or_counted(case: tuple[bytes, int]) -> None:
    body, items = case
    batch = meta.parse_webhook(body, phone_number_id=None)
    assert_storable(batch)
    counted = sum(n for reason, n in batch.ignored.items() if not reason.startswith("field:"))
    assert len(batch.messages) + counted + sum(batch.statuses.values()) == items
    for error in batch.errors:
        assert "wamid." not in error  # notes reach the log; ids do not


@SETTINGS
@given(st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()))
@example(b'{"object": "whatsapp_business_account", "entry": ' + b"[" * 50_000)
@example(b'{"object": "whatsapp_business_account", "entry": ' + b"9" * 5000 + b"}")
@example(b"\xff\xfe")
def test_meta_any_body_is_a_batch_or_a_bad_webhook(body: bytes) -> None:
    try:
        batch = meta.parse_webhook(body, phone_number_id="106540352242922")
    except BadWebhook:
        return
    assert_storable(batch)


TWILIO_FIELDS = [
    *("MessageSid", "SmsMessageSid", "From", "To", "WaId", "Body", "NumMedia", "MediaUrl0"),
    *("MediaContentType0", "MessageStatus", "SmsStatus", "ButtonText", "ButtonPayload"),
    *("Latitude", "MessageType", "ErrorCode"),
]


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(TWILIO_FIELDS) | TEXT,
            st.sampled_from(["whatsapp:+15551234567", "SM123", "1", "audio/ogg", "received"])
            | TEXT,
        ),
        max_size=12,
    )
)
@example([("MessageSid", "SM1"), ("From", "whatsapp:+1555"), ("NumMedia", "²")])
@example([("MessageSid", "SM1"), ("From", "whatsapp:+1555"), ("Body", "\ud83d")])
def test_twilio_any_fields_are_one_item_or_a_bad_webhook(params: list[tuple[str, str]]) -> None:
    try:
        batch = twilio.parse_webhook(params)
    except BadWebhook:
        return
    assert_storable(batch)
    # One delivery is one item: a message, a status, or counted as ignored.
    assert len(batch.messages) + sum(batch.statuses.values()) + sum(batch.ignored.values()) == 1


@SETTINGS
@given(st.binary(max_size=300))
@example(b"Body=%ED%A0%BD")  # a UTF-8-encoded lone surrogate
@example(b"a" * 10 + b"&" * 2000)
def test_twilio_any_form_body_is_pairs_or_a_bad_webhook(body: bytes) -> None:
    try:
        pairs = twilio.parse_form(body)
    except BadWebhook:
        return
    for name, value in pairs:
        name.encode("utf-8"), value.encode("utf-8")


# -- upstream answers --------------------------------------------------------------------------

STATUS = st.integers(100, 599)
BODY = (
    st.binary(max_size=200)
    | JSON.map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries({"error": JSON}).map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries({"detail": JSON}).map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries({"messages": JSON, "sessionId": JSON}).map(
        lambda v: json.dumps(v).encode()
    )
)
DEEP = b"[" * 50_000 + b"]" * 50_000  # json.loads raises RecursionError, not ValueError


@SETTINGS
@given(STATUS, BODY)
@example(400, b'{"error": {"code": "\\u00b2"}}')
@example(400, b'{"error": {"code": 9' + b"9" * 5000 + b"}}")
@example(500, DEEP)
def test_graph_errors_always_parse(status: int, body: bytes) -> None:
    for media_call in (False, True):
        error = meta.parse_graph_error(status, body, media_call=media_call)
        assert isinstance(error, UpstreamError) and error.upstream == "whatsapp"


@SETTINGS
@given(
    STATUS,
    BODY
    | st.fixed_dictionaries({"code": JSON, "message": JSON}).map(lambda v: json.dumps(v).encode()),
)
@example(429, b'{"code": "\\u00b2"}')
@example(500, DEEP)
def test_twilio_errors_always_parse(status: int, body: bytes) -> None:
    assert isinstance(twilio.parse_error(status, body), UpstreamError)


@SETTINGS
@given(STATUS, BODY)
@example(422, b'{"detail": [{"loc": 5, "msg": "x"}]}')
@example(422, b'{"detail": [{"loc": [1, null, {}], "msg": [1]}]}')
@example(500, DEEP)
def test_elevenlabs_errors_always_parse(status: int, body: bytes) -> None:
    assert isinstance(elevenlabs.parse_error(status, body, "elevenlabs-stt"), UpstreamError)


@SETTINGS
@given(
    BODY
    | st.fixed_dictionaries({"text": JSON, "language_code": JSON}).map(
        lambda v: json.dumps(v).encode()
    )
)
@example(DEEP)
def test_elevenlabs_transcripts_parse_or_are_rejected(body: bytes) -> None:
    with contextlib.suppress(UpstreamError):
        assert isinstance(elevenlabs.parse_transcript(body), Transcript)


@SETTINGS
@given(STATUS, BODY)
@example(500, DEEP)
def test_agentforce_errors_always_parse(status: int, body: bytes) -> None:
    assert isinstance(agentforce.parse_error(status, body), UpstreamError)


@SETTINGS
@given(BODY)
@example(DEEP)
@example(b'{"sessionId": "s", "messages": [{"type": "Inform", "message": 5}]}')
def test_agentforce_replies_parse_or_are_rejected(body: bytes) -> None:
    for parse in (agentforce.parse_messages, lambda b: agentforce.parse_session_start(b)[1]):
        with contextlib.suppress(UpstreamError):
            assert isinstance(parse(body), AgentReply)


@SETTINGS
@given(
    BODY
    | st.fixed_dictionaries({"access_token": JSON, "issued_at": JSON}).map(
        lambda v: json.dumps(v).encode()
    )
)
@example(b'{"access_token": "a.b.c", "issued_at": "9' + b"9" * 5000 + b'"}')
@example(b'{"access_token": "x.eyJleHAiOjF9.y", "issued_at": "\\u00b2"}')
@example(DEEP)
def test_agentforce_tokens_parse_or_are_rejected(body: bytes) -> None:
    try:
        token = agentforce.parse_token(body, now=1000.0, wall_now=1_800_000_000.0)
    except UpstreamError:
        return
    assert token.access_token and token.expires_at >= 1000.0


SSE_LINE = (
    st.sampled_from(["", ":ping", "event: message", "data: {", "id: 3", "retry: 5"])
    | JSON.map(lambda v: "data: " + json.dumps(v))
    | st.fixed_dictionaries(
        {
            "message": st.fixed_dictionaries(
                {
                    "type": maybe(
                        st.sampled_from(
                            ["TextChunk", "Inform", "EndOfTurn", "ValidationFailureChunk"]
                        )
                    ),
                    "message": maybe(TEXT),
                }
            )
        }
    ).map(lambda v: "data: " + json.dumps(v))
    | TEXT
)


@SETTINGS
@given(st.lists(SSE_LINE, max_size=12))
@example(["data: " + "[" * 50_000, ""])
def test_agentforce_streams_parse_or_are_unavailable(lines: list[str]) -> None:
    # The whole streamed-answer path of agentforce/sse.py + stream.py: framing, event
    # typing and the turn that adds them up never raise, whatever the lines are.
    parser, turn = SseParser(), StreamedTurn()
    raw = "".join(line + "\n" for line in lines).encode("utf-8", "surrogatepass")
    try:
        events = parser.feed(raw) + parser.close()[0]
    except SseTooLarge:  # the client's clear refusal of an oversize event
        return
    for event in events:
        for agent_event in parse_event(event):
            turn.apply(agent_event)
    assert isinstance(turn.reply(), AgentReply)
