"""daemon.agentforce.wire on the sample bodies of reference/agentforce.md."""

# The sample bodies below are copied verbatim from the reference; their lines stay long.
# ruff: noqa: E501

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from daemon.agentforce import wire
from daemon.errors import UpstreamRejected, UpstreamUnavailable
from daemon.model import AgentMessage

# §1.3, verbatim (the access token is shortened there, so it is not a readable JWT).
TOKEN_SAMPLE = b"""{
  "access_token": "eyJ0bmsiOiJjb3JlL3Byb2QvM\xe2\x80\xa6(shortened)",
  "signature": "HBb7Zf4aaOUlI1V\xe2\x80\xa6(shortened)",
  "token_format": "jwt",
  "scope": "sfap_api chatbot_api api",
  "instance_url": "https://sample-org-eaa32a127e4a6b.my.salesforce.com",
  "id": "https://login.salesforce.com/id/00DW\xe2\x80\xa6Wpg5MAC/005W\xe2\x80\xa6nF9IAI",
  "token_type": "Bearer",
  "issued_at": "1736530186928",
  "api_instance_url": "https://api.salesforce.com"
}"""

# §2.2
START_SAMPLE = b"""{
  "sessionId": "8e715939-a121-40ec-80e3-a8d1ac89da33",
  "_links": {
    "self": null,
    "messages": { "href": "https://api.salesforce.com/einstein/ai-agent/v1/sessions/8e715939/messages" },
    "messagesStream": { "href": "https://api.salesforce.com/einstein/ai-agent/v1/sessions/8e715939/messages/stream" },
    "session": { "href": "https://api.salesforce.com/einstein/ai-agent/v1/agents/0XxQZ0000000Ty50AE/sessions" },
    "end": { "href": "https://api.salesforce.com/einstein/ai-agent/v1/sessions/8e715939" }
  },
  "messages": [
    {
      "type": "Inform",
      "id": "8e7cafae-0eb5-44b1-9195-21f1cd6e1f4b",
      "feedbackId": "",
      "planId": "",
      "isContentSafe": true,
      "message": "Hi, I'm an AI service assistant. How can I help you?",
      "result": [],
      "citedReferences": []
    }
  ]
}"""

# §3.2
REPLY_SAMPLE = b"""{
  "messages": [
    {
      "type": "Inform",
      "id": "ceb6b5de-6063-4e39-bc02-91e9bf7da867",
      "metrics": {},
      "feedbackId": "0bc8720e-e010-4129-87bb-70caaa885ee4",
      "planId": "0bc8720e-e010-4129-87bb-70caaa885ee4",
      "isContentSafe": true,
      "message": "Here are two cases related to Lauren Bailey:\\n\\n1. Case Number: 00001116",
      "result": [],
      "citedReferences": []
    }
  ],
  "_links": {
    "self": null,
    "messages": { "href": ".../sessions/{id}/messages" },
    "messagesStream": { "href": ".../sessions/{id}/messages/stream" },
    "session": { "href": ".../agents/{agentId}/sessions" },
    "end": { "href": ".../sessions/{id}" }
  }
}"""

# §5
END_SAMPLE = b"""{
  "messages": [
    { "type": "SessionEnded", "id": "c5692ca0-ee1b-414a-9d96-4e7862456500", "reason": "ClientRequest", "feedbackId": "" }
  ],
  "_links": { "self": null, "messages": {"href": "/messages/stream"}, "session": {"href": "/agents/x/sessions"}, "end": {"href": "/sessions/x"} }
}"""

# §7.2, both verbatim
NOT_FOUND_SAMPLE = b"""{
  "status": 404,
  "path": "v6.0.0/sessions/94081416-c6dc-43a8-95e2-14a3f3580d34/messages",
  "mode": "unknown",
  "requestId": "e6840f72-e567-4eb3-94ad-0a1da8f83dd0",
  "error": "NotFoundException",
  "message": "V6Session not found for sessionId: 94081416-c6dc-43a8-95e2-14a3f3580d34",
  "timestamp": 1740760662466,
  "expected": true
}"""

SERVER_ERROR_SAMPLE = b"""{
  "status": 500,
  "path": "v6.0.0/agents/sfd/sessions",
  "mode": "unknown",
  "requestId": "adae6d09-a517-48a0-b501-5bbcac1c22c3",
  "error": "HttpServerErrorException",
  "message": "500 [{\\"message\\":\\"An unexpected error occurred. Please include this ErrorId if you contact support: 12345678-1234 (123456787)\\",\\"errorCode\\":\\"UNKNOWN_EXCEPTION\\"}]",
  "timestamp": 1740710748115,
  "expected": false
}"""

# §4.1 / §4.2: the POZIL-shaped stream (envelope form of Inform).
SSE_SAMPLE = """\
event: PROGRESS_INDICATOR
data: {"timestamp":1736902938827,"originEventId":"1736902935340-REQ","traceId":"2fdb","offset":0,"message":{"type":"ProgressIndicator","id":"c441","indicatorType":"ACTION","message":"Working on it"}}

event: TEXT_CHUNK
data: {"timestamp":1736902952425,"originEventId":"1736902935340-REQ","traceId":"2fdb","offset":1,"message":{"type":"TextChunk","id":"6fc6","offset":1,"message":"How can","formatType":"Text"}}

event: INFORM
data: {"timestamp":1740068551742,"originEventId":"1740068546968-REQ","traceId":"66b8","offset":0,"message":{"type":"Inform","id":"f5d3","feedbackId":"1263","planId":"1263","isContentSafe":true,"message":"How can I assist you with any customer support issues today?","result":[],"citedReferences":[]}}

event: END_OF_TURN
data: {"timestamp":1736902953027,"originEventId":"1736902935340-REQ","traceId":"2fdb","offset":0,"message":{"type":"EndOfTurn","id":"2a2b"}}

"""


def _jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def _body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def _messages(*messages: object) -> bytes:
    return json.dumps({"messages": list(messages)}).encode()


# -- OAuth -----------------------------------------------------------------------------------


def test_token_form_is_client_credentials() -> None:
    assert wire.token_form("key", "secret") == {
        "grant_type": "client_credentials",
        "client_id": "key",
        "client_secret": "secret",
    }


def test_parse_token_sample_without_readable_jwt_uses_fallback_ttl() -> None:
    token = wire.parse_token(TOKEN_SAMPLE, 100.0, fallback_ttl=1500.0, wall_now=1736530187.0)
    assert token.access_token.startswith("eyJ0bmsiOiJjb3JlL3Byb2QvM")
    assert token.expires_at == 1600.0
    assert token.api_instance_url == "https://api.salesforce.com"
    assert token.missing_scopes == ()


def test_parse_token_reads_jwt_exp_relative_to_issued_at() -> None:
    issued = 1_736_530_186.928
    body = _body(access_token=_jwt({"exp": issued + 1800}), issued_at="1736530186928")
    # wall_now is far off: issued_at (Salesforce's own clock) wins over ours.
    token = wire.parse_token(body, 10.0, fallback_ttl=5.0, wall_now=issued + 5000)
    assert token.expires_at == pytest.approx(10.0 + 1800 - wire.TOKEN_SAFETY_MARGIN)


def test_parse_token_without_issued_at_uses_wall_clock() -> None:
    body = _body(access_token=_jwt({"exp": 2_000_000_600}))
    token = wire.parse_token(body, 0.0, fallback_ttl=5.0, wall_now=2_000_000_000.0)
    assert token.expires_at == pytest.approx(600 - wire.TOKEN_SAFETY_MARGIN)


def test_parse_token_short_and_inconsistent_lifetimes() -> None:
    short = _body(access_token=_jwt({"exp": 1090}), issued_at="1000000")
    assert wire.parse_token(short, 0.0).expires_at == pytest.approx(45.0)  # half of 90 s
    past = _body(access_token=_jwt({"exp": 900}), issued_at="1000000")
    assert wire.parse_token(past, 0.0, fallback_ttl=7.0).expires_at == 7.0


def test_parse_token_reports_missing_scopes_and_hides_token_in_repr() -> None:
    token = wire.parse_token(_body(access_token="opaque-secret", scope="api"), 0.0)
    assert token.missing_scopes == ("chatbot_api", "sfap_api")
    assert "opaque-secret" not in repr(token)


def test_parse_token_oauth_error_json_is_rejected() -> None:
    body = _body(error="invalid_client", error_description="invalid client credentials")
    with pytest.raises(UpstreamRejected) as info:
        wire.parse_token(body, 0.0)
    assert info.value.code == "invalid_client"
    assert "invalid client credentials" in info.value.message


@pytest.mark.parametrize("body", [b"", b"<html>oops</html>", b"[]", b'{"token_type":"Bearer"}'])
def test_parse_token_malformed_is_rejected(body: bytes) -> None:
    with pytest.raises(UpstreamRejected):
        wire.parse_token(body, 0.0)


def test_jwt_exp_ignores_non_jwts() -> None:
    assert wire.jwt_exp("a.b") is None
    assert wire.jwt_exp("a.!!!.c") is None
    assert wire.jwt_exp(_jwt({"sub": "x"})) is None
    assert wire.jwt_exp(_jwt({"exp": 42})) == 42.0


# -- request bodies --------------------------------------------------------------------------


def test_start_session_body_is_the_documented_minimum() -> None:
    assert wire.start_session_body("8b1c-key", "https://acme.my.salesforce.com") == {
        "externalSessionKey": "8b1c-key",
        "instanceConfig": {"endpoint": "https://acme.my.salesforce.com"},
        "streamingCapabilities": {"chunkTypes": ["Text"]},
        "bypassUser": True,
    }


def test_start_session_body_for_an_employee_agent() -> None:
    body = wire.start_session_body("k", "https://acme.my.salesforce.com", bypass_user=False)
    assert body["bypassUser"] is False


def test_start_session_body_with_variables() -> None:
    variables = [{"name": "$Context.EndUserLanguage", "type": "Text", "value": "en_US"}]
    body = wire.start_session_body("k", "https://acme.my.salesforce.com", variables)
    assert body["variables"] == variables


def test_message_body() -> None:
    assert wire.message_body(3, "Show me the cases") == {
        "message": {"sequenceId": 3, "type": "Text", "text": "Show me the cases"},
        "variables": [],
    }


# -- responses -------------------------------------------------------------------------------


def test_parse_session_start_sample() -> None:
    session_id, greeting = wire.parse_session_start(START_SAMPLE)
    assert session_id == "8e715939-a121-40ec-80e3-a8d1ac89da33"
    assert greeting.messages == (
        AgentMessage("Inform", "Hi, I'm an AI service assistant. How can I help you?"),
    )


@pytest.mark.parametrize("body", [b"{}", b'{"sessionId": ""}', b"nope", b'{"sessionId": 7}'])
def test_parse_session_start_without_session_id_is_rejected(body: bytes) -> None:
    with pytest.raises(UpstreamRejected):
        wire.parse_session_start(body)


def test_parse_messages_sample() -> None:
    reply = wire.parse_messages(REPLY_SAMPLE)
    assert reply.messages == (
        AgentMessage(
            "Inform", "Here are two cases related to Lauren Bailey:\n\n1. Case Number: 00001116"
        ),
    )


def test_parse_messages_end_sample() -> None:
    reply = wire.parse_messages(END_SAMPLE)
    assert reply.messages == (AgentMessage("SessionEnded"),)
    assert reply.text == ""


def test_parse_messages_every_type(caplog: pytest.LogCaptureFixture) -> None:
    body = _messages(
        {"type": "Inform", "message": "Hello"},
        {"type": "Inquire", "message": "Which order?", "collect": []},
        {"type": "Confirm", "message": "Cancel it?", "confirm": []},
        {"type": "Failure", "message": "Could not do it", "code": "ACTION_FAILED", "errors": []},
        {"type": "Failure", "code": "ESCALATE", "errors": ["x"]},
        {"type": "Escalate", "targets": [{"type": "Salesforce:Core:Queue:Id", "value": "00G"}]},
        {"type": "Escalate", "message": "Passing you to a colleague"},
        {"type": "ProgressIndicator", "indicatorType": "ACTION", "message": "Working on it"},
        {"type": "TextChunk", "offset": 1, "message": "Hel", "formatType": "Text"},
        {"type": "EndOfTurn"},
        {
            "type": "Error",
            "error": "SomethingException",
            "message": "stack trace",
            "httpStatus": 500,
        },
        {"type": "Carousel", "message": "future text"},
        {"type": "Mystery"},
        "not an object",
        {"message": "no type"},
        {"type": "SessionEnded", "reason": "Action", "feedbackId": ""},
    )
    with caplog.at_level(logging.INFO, logger="daemon.agentforce.wire"):
        reply = wire.parse_messages(body)
    assert reply.messages == (
        AgentMessage("Inform", "Hello"),
        AgentMessage("Inquire", "Which order?"),
        AgentMessage("Confirm", "Cancel it?"),
        AgentMessage("Failure", "Could not do it"),
        AgentMessage("Failure", ""),
        AgentMessage("Escalate", ""),
        AgentMessage("Escalate", "Passing you to a colleague"),
        AgentMessage("Error", ""),
        AgentMessage("Carousel", "future text"),
        AgentMessage("Mystery", ""),
        AgentMessage("SessionEnded", ""),
    )
    assert "stack trace" not in reply.text
    assert "Working on it" not in reply.text
    assert "'Carousel'" in caplog.text


@pytest.mark.parametrize("body", [b'{"messages": []}', b"{}", b'{"messages": null}'])
def test_parse_messages_empty(body: bytes) -> None:
    assert wire.parse_messages(body).messages == ()


@pytest.mark.parametrize("body", [b"", b"[1]", b'{"messages": "Inform"}', b"\xff\xfe"])
def test_parse_messages_malformed_is_rejected(body: bytes) -> None:
    with pytest.raises(UpstreamRejected):
        wire.parse_messages(body)


# -- errors ----------------------------------------------------------------------------------


def test_parse_error_not_found_sample() -> None:
    error = wire.parse_error(404, NOT_FOUND_SAMPLE)
    assert isinstance(error, UpstreamRejected)
    assert error.status == 404
    assert error.code == "NotFoundException"
    assert error.upstream == "agentforce"
    assert "V6Session not found" in error.message


def test_parse_error_server_error_sample_is_unavailable() -> None:
    error = wire.parse_error(500, SERVER_ERROR_SAMPLE)
    assert isinstance(error, UpstreamUnavailable)
    assert error.code == "HttpServerErrorException"
    assert len(error.message) <= 300


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, UpstreamRejected),
        (401, UpstreamRejected),
        (403, UpstreamRejected),
        (404, UpstreamRejected),
        (422, UpstreamRejected),
        (423, UpstreamUnavailable),
        (429, UpstreamUnavailable),
        (500, UpstreamUnavailable),
        (503, UpstreamUnavailable),
    ],
)
def test_parse_error_status_classes(status: int, kind: type[Exception]) -> None:
    body = _body(status=status, error="SomeException", message="text")
    error = wire.parse_error(status, body)
    assert type(error) is kind
    assert error.status == status
    assert error.code == "SomeException"


@pytest.mark.parametrize(
    "body", [b"", b"<html><body>Bad gateway</body></html>", b"\xff\x00", b"[]"]
)
def test_parse_error_non_json_bodies(body: bytes) -> None:
    error = wire.parse_error(502, body)
    assert isinstance(error, UpstreamUnavailable)
    assert error.code is None
    assert "HTTP 502" in error.message


def test_parse_error_oauth_envelope() -> None:
    body = _body(error="invalid_grant", error_description="no client credentials user enabled")
    error = wire.parse_error(400, body)
    assert isinstance(error, UpstreamRejected)
    assert error.code == "invalid_grant"
    assert "no client credentials user enabled" in error.message


# -- streaming -------------------------------------------------------------------------------


def test_parse_sse_envelope_stream() -> None:
    reply = wire.parse_sse(SSE_SAMPLE.splitlines())
    assert reply.messages == (
        AgentMessage("Inform", "How can I assist you with any customer support issues today?"),
    )


def test_parse_sse_sync_style_inform_and_crlf() -> None:
    lines = [
        "event: INFORM\r\n",
        "data: " + json.dumps({"messages": [{"type": "Inform", "message": "Hi there"}]}) + "\r\n",
        "\r\n",
        ": heartbeat\r\n",
        'data: {"message":{"type":"EndOfTurn","id":"x"}}\r\n',
        "\r\n",
    ]
    assert wire.parse_sse(lines).messages == (AgentMessage("Inform", "Hi there"),)


def _chunk(text: str) -> list[str]:
    return ["data: " + json.dumps({"message": {"type": "TextChunk", "message": text}}), ""]


def test_parse_sse_validation_failure_resets_chunks() -> None:
    lines = [
        *_chunk("Bad "),
        *_chunk("answer"),
        'data: {"message":{"type":"ValidationFailureChunk","id":"v","offset":2,"reason":"x"}}',
        "",
        *_chunk("Good "),
        *_chunk("answer"),
        'data: {"message":{"type":"EndOfTurn","id":"e"}}',
        "",
        *_chunk("after the end is never read"),
    ]
    assert wire.parse_sse(lines).messages == (AgentMessage("Inform", "Good answer"),)


def test_parse_sse_multiline_data_and_other_types() -> None:
    lines = [
        'data: {"message":',
        'data: {"type":"Failure","message":"Sorry"}}',
        "",
        "data: not json",
        "",
        'data: {"message":{"type":"SessionEnded","reason":"Action"}}',
    ]
    # No EndOfTurn, but complete messages arrived: they are the answer.
    assert wire.parse_sse(lines).messages == (
        AgentMessage("Failure", "Sorry"),
        AgentMessage("SessionEnded"),
    )


def test_parse_sse_dropped_mid_turn_is_unavailable() -> None:
    with pytest.raises(UpstreamUnavailable):
        wire.parse_sse([*_chunk("Half an ans")])
