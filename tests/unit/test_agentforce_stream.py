"""daemon.agentforce.stream: Agent API events from server-sent events, and their sum.

The samples are reference/agentforce.md §4.1 (DOC-EX shapes, POZIL's captured output).
"""

# ruff: noqa: E501  (the samples are kept byte for byte as captured, one event per line)

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from daemon.agentforce import stream
from daemon.agentforce.sse import SseEvent, SseParser
from daemon.agentforce.stream import (
    Commit,
    EndOfTurn,
    Message,
    ProgressIndicator,
    Retract,
    Speak,
    StreamedTurn,
    TextChunk,
    ValidationFailure,
)
from daemon.model import AgentMessage, AgentReply

# §4.1 / §4.2: the POZIL-shaped stream (envelope form of Inform).
SSE_SAMPLE = b"""\
event: PROGRESS_INDICATOR
data: {"timestamp":1736902938827,"originEventId":"1736902935340-REQ","traceId":"2fdb","offset":0,"message":{"type":"ProgressIndicator","id":"c441","indicatorType":"ACTION","message":"Working on it"}}

event: TEXT_CHUNK
data: {"timestamp":1736902952425,"originEventId":"1736902935340-REQ","traceId":"2fdb","offset":1,"message":{"type":"TextChunk","id":"6fc6","offset":1,"message":"How can","formatType":"Text"}}

event: INFORM
data: {"timestamp":1740068551742,"originEventId":"1740068546968-REQ","traceId":"66b8","offset":0,"message":{"type":"Inform","id":"f5d3","feedbackId":"1263","planId":"1263","isContentSafe":true,"message":"How can I assist you with any customer support issues today?","result":[],"citedReferences":[]}}

event: END_OF_TURN
data: {"timestamp":1736902953027,"originEventId":"1736902935340-REQ","traceId":"2fdb","offset":0,"message":{"type":"EndOfTurn","id":"2a2b"}}

"""


def events_of(raw: bytes) -> list[stream.AgentEvent]:
    parser = SseParser()
    out: list[stream.AgentEvent] = []
    for sse in parser.feed(raw) + parser.close()[0]:
        out.extend(stream.parse_event(sse))
    return out


def envelope(message: dict[str, Any], offset: int = 0) -> SseEvent:
    return SseEvent(data=json.dumps({"offset": offset, "message": message}))


def run(events: list[stream.AgentEvent]) -> tuple[StreamedTurn, list[stream.SpeechOp]]:
    turn = StreamedTurn()
    ops: list[stream.SpeechOp] = []
    for event in events:
        ops.extend(turn.apply(event))
    return turn, ops


def chunk(text: str) -> TextChunk:
    return TextChunk(text)


def inform(text: str) -> Message:
    return Message(AgentMessage("Inform", text))


# -- parse_event -----------------------------------------------------------------------------


def test_the_documented_stream_parses_into_typed_events() -> None:
    events = events_of(SSE_SAMPLE)
    assert events == [
        ProgressIndicator("Working on it", "ACTION"),
        TextChunk("How can", 1),
        Message(
            AgentMessage("Inform", "How can I assist you with any customer support issues today?")
        ),
        EndOfTurn(),
    ]
    assert isinstance(events[2], Message)
    assert events[2].raw["feedbackId"] == "1263"  # the whole message is kept for later use


def test_the_sync_style_inform_sample_and_crlf_and_comments() -> None:
    body = json.dumps({"messages": [{"type": "Inform", "message": "Hi there"}], "_links": {}})
    raw = (
        f"event: INFORM\r\ndata: {body}\r\n\r\n: heartbeat\r\n"
        'data: {"message":{"type":"EndOfTurn","id":"x"}}\r\n\r\n'
    ).encode()
    assert events_of(raw) == [inform("Hi there"), EndOfTurn()]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            {"type": "ValidationFailureChunk", "id": "v", "offset": 2, "reason": "toxic"},
            ValidationFailure("toxic", 2),
        ),
        (
            {"type": "Failure", "message": "Sorry", "code": "ACTION_FAILED", "errors": ["x"]},
            Message(AgentMessage("Failure", "Sorry")),
        ),
        ({"type": "Escalate", "targets": []}, Message(AgentMessage("Escalate"))),
        (
            {"type": "Inquire", "message": "Which order?", "collect": []},
            Message(AgentMessage("Inquire", "Which order?")),
        ),
        (
            {"type": "Confirm", "message": "Cancel it?", "confirm": []},
            Message(AgentMessage("Confirm", "Cancel it?")),
        ),
        ({"type": "SessionEnded", "reason": "Action"}, Message(AgentMessage("SessionEnded"))),
        (
            {"type": "Error", "error": "X", "message": "stack trace", "httpStatus": 500},
            Message(AgentMessage("Error")),  # a diagnostic, never words for the user
        ),
        ({"type": "Carousel", "message": "New!"}, Message(AgentMessage("Carousel", "New!"))),
        # The offset of the envelope stands in when the message has none.
        ({"type": "TextChunk", "message": "Hi"}, TextChunk("Hi", 5)),
        ({"type": "TextChunk", "message": 7, "offset": True}, TextChunk("", None)),
    ],
)
def test_every_documented_message_type(message: dict[str, Any], expected: object) -> None:
    assert stream.parse_event(envelope(message, offset=5)) == (expected,)


def test_multi_line_data_is_one_json_document() -> None:
    raw = b'data: {"message":\ndata: {"type":"Failure","message":"Sorry"}}\n\n'
    assert events_of(raw) == [Message(AgentMessage("Failure", "Sorry"))]


def test_an_error_envelope_sent_as_an_event_is_an_error_message() -> None:
    body = {"status": 500, "error": "HttpServerErrorException", "message": "boom"}
    [event] = stream.parse_event(SseEvent(data=json.dumps(body), event="ERROR"))
    assert isinstance(event, Message)
    assert event.message == AgentMessage("Error")


@pytest.mark.parametrize("data", ["", "   ", "not json", "[1, 2]", '{"hello": "world"}'])
def test_data_that_carries_nothing_is_skipped_with_a_log_line(
    data: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="daemon.agentforce.stream"):
        assert stream.parse_event(SseEvent(data=data, event="X")) == ()
    if data.strip():
        assert "skipping" in caplog.text


def test_the_event_name_is_never_what_decides() -> None:
    # Dispatch is on data.message.type (§4.2); a wrong or missing name changes nothing.
    message = {"type": "Inform", "message": "Right"}
    for name in ("INFORM", "TEXT_CHUNK", "message", "whatever"):
        sse = SseEvent(data=json.dumps({"message": message}), event=name)
        assert stream.parse_event(sse) == (inform("Right"),)


# -- StreamedTurn ----------------------------------------------------------------------------


def test_chunks_are_spoken_and_the_inform_is_the_answer() -> None:
    turn, ops = run(
        [
            ProgressIndicator(),
            chunk("How "),
            chunk("can I help?"),
            inform("How can I help?"),
            EndOfTurn(),
        ]
    )
    assert ops == [Speak("How "), Speak("can I help?"), Commit()]
    assert turn.done
    assert turn.reply() == AgentReply((AgentMessage("Inform", "How can I help?"),))


def test_an_inform_without_chunks_is_spoken_whole() -> None:
    # POZIL's short answer: INFORM + END_OF_TURN only (§4.3).
    _, ops = run([inform("Hello!"), EndOfTurn()])
    assert ops == [Speak("Hello!"), Commit()]


def test_a_validation_failure_withdraws_the_chunks_of_the_message_being_written() -> None:
    turn, ops = run(
        [
            chunk("Bad "),
            chunk("answer"),
            ValidationFailure("toxic"),
            chunk("Good "),
            chunk("answer"),
            inform("Good answer"),
            EndOfTurn(),
        ]
    )
    assert ops == [
        Speak("Bad "),
        Speak("answer"),
        Retract(),
        Speak("Good "),
        Speak("answer"),
        Commit(),
    ]
    assert turn.reply().text == "Good answer"


def test_a_retraction_keeps_complete_messages_and_the_next_one_starts_a_paragraph() -> None:
    turn, ops = run(
        [
            chunk("First."),
            inform("First."),
            chunk("Draft"),
            ValidationFailure(),
            ValidationFailure(),  # nothing left to withdraw: no second Retract
            chunk("Second."),
            inform("Second."),
            EndOfTurn(),
        ]
    )
    assert ops == [
        Speak("First."),
        Commit(),
        Speak("\n\nDraft"),
        Retract(),
        Speak("\n\nSecond."),
        Commit(),
    ]
    assert turn.reply().text == "First.\n\nSecond."  # what the composer heard, too


def test_messages_without_text_speak_nothing() -> None:
    turn, ops = run([inform("Let me connect you."), Message(AgentMessage("Escalate")), EndOfTurn()])
    assert ops == [Speak("Let me connect you."), Commit()]
    assert turn.reply().has("Escalate")


def test_a_finished_turn_of_chunks_alone_answers_with_the_chunks() -> None:
    turn, _ = run([chunk("Only "), chunk("chunks"), EndOfTurn()])
    assert turn.reply() == AgentReply((AgentMessage("Inform", "Only chunks"),))


def test_an_unfinished_turn_answers_only_with_complete_messages() -> None:
    turn, _ = run([chunk("Half an ans")])
    assert not turn.done
    assert turn.reply() == AgentReply(())
    turn, _ = run([inform("Whole."), chunk("And half")])
    assert turn.reply().text == "Whole."
    assert turn.events == 2
