"""daemon.agentforce.sse: the WHATWG event-stream framing, fed bytes as they come."""

from __future__ import annotations

import pytest

from daemon.agentforce.sse import SseEvent, SseParser, SseTooLarge


def parse(*chunks: bytes) -> tuple[list[SseEvent], bool]:
    parser = SseParser()
    events: list[SseEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    last, discarded = parser.close()
    return events + last, discarded


def datas(*chunks: bytes) -> list[str]:
    return [e.data for e in parse(*chunks)[0]]


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        # The line ends of the standard, and mixed in one stream.
        (b"data: a\n\n", ["a"]),
        (b"data: a\r\n\r\n", ["a"]),
        (b"data: a\r\rdata: b\r\r", ["a", "b"]),
        (b"data: a\r\n\ndata: b\n\r\n", ["a", "b"]),
        # One space after the colon is dropped, no more; no colon: the value is empty.
        (b"data:a\n\n", ["a"]),
        (b"data:  a\n\n", [" a"]),
        (b"data\n\n", [""]),
        (b"data:\n\n", [""]),
        # Multi-line data joins with LF; a comment line in the middle changes nothing.
        (b"data: one\n: keep-alive\ndata: two\n\n", ["one\ntwo"]),
        # Comments and lone blank lines dispatch nothing.
        (b": hello\n\n\n\n", []),
        # An event with no data line is not dispatched, and its type does not leak.
        (b"event: INFORM\n\ndata: x\n\n", ["x"]),
        # Unknown fields are ignored.
        (b"foo: bar\ndata: x\nbaz\n\n", ["x"]),
        # A byte order mark is dropped at the very start only.
        (b"\xef\xbb\xbfdata: x\n\n", ["x"]),
        (b"data: \xef\xbb\xbfx\n\n", ["\ufeffx"]),
        # Undecodable bytes become U+FFFD, never an exception.
        (b"data: \xff\xfe\n\n", ["\ufffd\ufffd"]),
    ],
)
def test_framing_follows_the_standard(stream: bytes, expected: list[str]) -> None:
    assert datas(stream) == expected


def test_event_name_id_and_retry() -> None:
    events, _ = parse(b"event: TEXT_CHUNK\nid: 7\nretry: 3000\ndata: x\n\ndata: y\n\n")
    assert events[0] == SseEvent(data="x", event="TEXT_CHUNK", id="7", retry=3000)
    # The event type is per event; the last id and retry stay in force.
    assert events[1] == SseEvent(data="y", event="message", id="7", retry=3000)


def test_bad_retry_and_id_with_nul_are_ignored() -> None:
    parser = SseParser()
    events = parser.feed(b"id: 1\ndata: a\n\nretry: 5s\nid: 2\x00\ndata: b\n\n")
    assert [(e.id, e.retry) for e in events] == [("1", None), ("1", None)]
    assert parser.last_event_id == "1"


def test_every_split_of_a_stream_gives_the_same_events() -> None:
    stream = (
        b'event: PROGRESS_INDICATOR\r\ndata: {"a": 1}\r\n\r\n: ping\r\n'
        b"data: caf\xc3\xa9 \xd8\xb4\xd9\x83\xd8\xb1\xd8\xa7\r\ndata: two\r\n\r\n"
    )
    whole, _ = parse(stream)
    assert [e.data for e in whole] == ['{"a": 1}', "café شكرا\ntwo"]
    for cut in range(len(stream) + 1):
        assert parse(stream[:cut], stream[cut:])[0] == whole, cut
    assert parse(*(stream[i : i + 1] for i in range(len(stream))))[0] == whole


def test_a_crlf_split_across_reads_is_one_line_end() -> None:
    # "data: a\r" + "\ndata: b" must not see an empty line (which would dispatch early).
    events, _ = parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")
    assert [e.data for e in events] == ["a\nb"]


def test_an_unterminated_last_event_is_discarded_and_reported() -> None:
    events, discarded = parse(b"data: whole\n\ndata: half")
    assert [e.data for e in events] == ["whole"]
    assert discarded
    events, discarded = parse(b"data: whole\n\n: trailing comment")
    assert [e.data for e in events] == ["whole"]
    assert not discarded


def test_a_line_or_event_over_the_bound_raises() -> None:
    parser = SseParser(max_event_bytes=100)
    with pytest.raises(SseTooLarge):
        parser.feed(b"data: " + b"x" * 200)  # no line end yet: the line alone is too long
    parser = SseParser(max_event_bytes=100)
    with pytest.raises(SseTooLarge):
        parser.feed(b"".join(b"data: " + b"x" * 30 + b"\n" for _ in range(5)))
