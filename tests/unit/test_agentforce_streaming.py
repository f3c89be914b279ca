"""AgentforceClient.open_stream and AgentStream against the in-memory Agent API fake.

What is checked: the stream request (§4), events split across reads, fallback to the
synchronous endpoint (once, remembered per session), a break after the first event (an
unknown outcome, never sent again), the idle timeout and the deadline (MockClock), and the
session bookkeeping around a stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.lowlevel
import trio.testing

from daemon.agentforce.stream import (
    Commit,
    EndOfTurn,
    Message,
    ProgressIndicator,
    Retract,
    Speak,
    TextChunk,
)
from daemon.agentforce.streaming import AgentStream, StreamBroken
from daemon.errors import Reason, UpstreamRejected, UpstreamUnavailable
from daemon.model import AgentMessage
from tests.unit.test_agentforce_client import (
    GREETING,
    FakeAgentforce,
    _envelope,
    _inform,
    make_client,
    sse_event,
    sse_response,
    sse_turn,
)

USER = "+15550001"


@pytest.fixture
def fake() -> FakeAgentforce:
    return FakeAgentforce()


@pytest.fixture
async def http(fake: FakeAgentforce) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
        yield client


async def read_all(stream: AgentStream) -> list[object]:
    async with stream:
        return [step.event async for step in stream]


def inform(text: str) -> Message:
    return Message(AgentMessage("Inform", text))


async def test_a_stream_posts_the_message_and_yields_the_documented_events(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    client = make_client(http)
    with trio.fail_after(10):
        stream = await client.open_stream(USER, "hello")
        events = await read_all(stream)
    assert events == [
        ProgressIndicator("Working", "ACTION"),
        TextChunk("echo: ", 1),
        TextChunk("hello", 2),
        inform("echo: hello"),
        EndOfTurn(),
    ]
    assert stream.reply.text == "echo: hello"
    assert not stream.fell_back
    [sent] = fake.sent
    assert sent.stream
    assert sent.headers["accept"] == "text/event-stream"
    assert sent.headers["content-type"] == "application/json"
    assert sent.body == {  # the same body as the synchronous call (§4)
        "message": {"sequenceId": 1, "type": "Text", "text": "hello"},
        "variables": [],
    }
    # The session was used: the next message continues the conversation with a new number.
    assert client.in_conversation(USER)
    with trio.fail_after(10):
        await read_all(await client.open_stream(USER, "again"))
    assert [s.sequence_id for s in fake.sent] == [1, 2]
    assert len(fake.starts) == 1


async def test_events_split_anywhere_across_reads_come_out_whole(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    raw = b"".join(sse_turn("Hello there, how can I help?", chunks=3))
    fake.scripted.append(lambda _: sse_response([raw[i : i + 1] for i in range(len(raw))]))
    client = make_client(http)
    with trio.fail_after(10):
        stream = await client.open_stream(USER, "hi")
        async with stream:
            speech = [op async for step in stream for op in step.speech]
    assert stream.reply.text == "Hello there, how can I help?"
    assert "".join(op.text for op in speech if isinstance(op, Speak)) == stream.reply.text
    assert speech[-1] == Commit()


async def test_a_retraction_reaches_the_caller_as_speech_ops(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    body = [
        sse_event({"type": "TextChunk", "offset": 1, "message": "Draft"}),
        sse_event({"type": "ValidationFailureChunk", "offset": 1, "reason": "failed"}),
        sse_event({"type": "TextChunk", "offset": 2, "message": "Final."}),
        sse_event({"type": "Inform", "message": "Final."}),
        sse_event({"type": "EndOfTurn"}),
    ]
    fake.scripted.append(lambda _: sse_response(body))
    client = make_client(http)
    with trio.fail_after(10):
        stream = await client.open_stream(USER, "hi")
        async with stream:
            speech = [op async for step in stream for op in step.speech]
    assert speech == [Speak("Draft"), Retract(), Speak("Final."), Commit()]
    assert stream.reply.text == "Final."


@pytest.mark.parametrize(
    "refusal",
    [
        _envelope(404, "NotFoundException", "No handler for POST /messages/stream"),
        httpx.Response(404, text="<html>Not Found</html>"),
        _envelope(405, "HttpRequestMethodNotSupportedException", "POST not supported"),
        _envelope(406, "HttpMediaTypeNotAcceptableException", "Not Acceptable"),
        _envelope(501, "NotImplementedException", "Not implemented"),
        _envelope(400, "BadRequestException", "Streaming is not enabled for this agent"),
    ],
    ids=["404-route", "404-html", "405", "406", "501", "400-streaming"],
)
async def test_a_refused_stream_falls_back_to_sync_once_and_the_session_remembers(
    fake: FakeAgentforce, http: httpx.AsyncClient, refusal: httpx.Response
) -> None:
    fake.scripted.append(lambda _: refusal)
    client = make_client(http)
    with trio.fail_after(10):
        first = await client.open_stream(USER, "one")
        events = await read_all(first)
        second = await client.open_stream(USER, "two")
        await read_all(second)
    assert first.fell_back and second.fell_back
    assert events == [inform("echo: one"), EndOfTurn()]
    assert second.reply.text == "echo: two"
    # stream (refused), sync, then straight to sync: the stream endpoint is not tried again.
    assert [(s.stream, s.text) for s in fake.sent] == [
        (True, "one"),
        (False, "one"),
        (False, "two"),
    ]
    assert len({s.session_id for s in fake.sent}) == 1
    assert len({s.sequence_id for s in fake.sent}) == 3  # every POST its own number (§9)


async def test_a_new_session_streams_again(fake: FakeAgentforce, http: httpx.AsyncClient) -> None:
    fake.scripted.append(lambda _: _envelope(405, "X", "no"))
    client = make_client(http)
    with trio.fail_after(10):
        await read_all(await client.open_stream(USER, "one"))
        await client.end_session(USER)
        stream = await client.open_stream(USER, "two")
        await read_all(stream)
    assert not stream.fell_back
    assert fake.sent[-1].stream


async def test_a_bad_message_is_not_mistaken_for_no_streaming(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    fake.scripted.append(lambda _: _envelope(400, "BadRequestException", "text is too long"))
    client = make_client(http)
    with trio.fail_after(10), pytest.raises(UpstreamRejected) as info:
        await client.open_stream(USER, "x")
    assert info.value.status == 400
    assert len(fake.sent) == 1  # not sent to the sync endpoint as well


async def test_a_gone_session_gets_a_new_one_and_streams_there(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    client = make_client(http)
    with trio.fail_after(10):
        await read_all(await client.open_stream(USER, "one"))
        fake.expire_sessions()  # the fake answers 404 "V6Session not found" (§8)
        stream = await client.open_stream(USER, "two")
        await read_all(stream)
    assert stream.reply.text == "echo: two"
    assert len(fake.starts) == 2
    assert [s.stream for s in fake.sent] == [True, True, True]


async def test_a_locked_session_is_user_busy_like_ask(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    fake.scripted.append(
        lambda _: httpx.Response(
            423,
            headers={"Retry-After": "2"},
            json={"error": "SessionAlreadyLockedException", "message": "busy"},
        )
    )
    client = make_client(http)
    with trio.fail_after(10), pytest.raises(UpstreamUnavailable) as info:
        await client.open_stream(USER, "x")
    assert info.value.reason == Reason.USER_BUSY
    assert info.value.retry_after == 2.0


async def test_a_401_gets_a_new_token_and_one_more_try(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    client = make_client(http)
    with trio.fail_after(10):
        await client.warm_up()
        fake.valid_tokens.clear()
        stream = await client.open_stream(USER, "hi")
        await read_all(stream)
    assert stream.reply.text == "echo: hi"
    assert fake.tokens_issued == 2


async def test_a_json_answer_from_the_stream_endpoint_is_the_reply(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    # A server that answers the stream endpoint whole: processed, so not asked again.
    fake.scripted.append(lambda _: httpx.Response(200, json={"messages": _inform("Whole.")}))
    client = make_client(http)
    with trio.fail_after(10):
        stream = await client.open_stream(USER, "hi")
        events = await read_all(stream)
    assert events == [inform("Whole."), EndOfTurn()]
    assert not stream.fell_back
    assert len(fake.sent) == 1


async def test_the_greeting_comes_first_when_forwarded(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    client = make_client(http, forward_greeting=True)
    with trio.fail_after(10):
        stream = await client.open_stream(USER, "hi")
        events = await read_all(stream)
    assert events[0] == inform(GREETING)
    assert stream.reply.text == f"{GREETING}\n\necho: hi"


async def test_a_stream_that_breaks_after_its_first_event_is_never_sent_again(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    async def breaking() -> AsyncIterator[bytes]:
        yield sse_event({"type": "ProgressIndicator", "message": "Working"})
        yield sse_event({"type": "TextChunk", "message": "Half"})[:20]
        raise httpx.ReadError("connection reset by peer")

    fake.scripted.append(lambda _: sse_response(breaking()))
    client = make_client(http)
    with trio.fail_after(10):
        stream = await client.open_stream(USER, "hi")
        with pytest.raises(StreamBroken) as info:
            await read_all(stream)
    broken = info.value
    assert broken.sent is True  # an unknown outcome: the retry policy will not repeat it
    assert broken.events == 1
    assert broken.partial.messages == ()
    assert "connection reset" in broken.message
    assert len(fake.sent) == 1  # no re-POST, no fallback
    assert client.in_conversation(USER)  # the session is kept (its number moved on)


async def test_a_stream_closed_before_end_of_turn_keeps_what_arrived_whole(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    body = [sse_event({"type": "Inform", "message": "Whole."}), b'data: {"message": {"ty']
    fake.scripted.append(lambda _: sse_response(body))
    client = make_client(http)
    with trio.fail_after(10):
        stream = await client.open_stream(USER, "hi")
        with pytest.raises(StreamBroken) as info:
            await read_all(stream)
    assert info.value.partial.text == "Whole."


async def test_no_event_for_the_idle_time_breaks_the_stream(
    autojump_clock: trio.testing.MockClock, fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield sse_event({"type": "ProgressIndicator", "message": "Working"})
        for _ in range(10):  # heartbeats keep the connection, not the turn, alive
            await trio.sleep(10)
            yield b": ping\n\n"
        await trio.sleep_forever()

    fake.scripted.append(lambda _: sse_response(stalls()))
    client = make_client(http)
    with trio.fail_after(100):
        stream = await client.open_stream(USER, "hi")
        started = trio.current_time()
        with pytest.raises(StreamBroken) as info:
            await read_all(stream)
    assert trio.current_time() - started == pytest.approx(30.0)  # [timeouts] agent_idle
    assert "no event for 30 s" in info.value.message


async def test_the_deadline_bounds_a_stream_that_keeps_talking(
    autojump_clock: trio.testing.MockClock, fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    async def chatty() -> AsyncIterator[bytes]:
        while True:
            await trio.sleep(5)
            yield sse_event({"type": "ProgressIndicator", "message": "Still working"})

    fake.scripted.append(lambda _: sse_response(chatty()))
    client = make_client(http)
    with trio.fail_after(200):
        deadline = trio.current_time() + 42.0
        stream = await client.open_stream(USER, "hi", deadline=deadline)
        progress = 0
        with pytest.raises(StreamBroken) as info:
            async with stream:
                async for _ in stream:
                    progress += 1
    assert trio.current_time() == pytest.approx(deadline)
    assert progress == 8
    assert "deadline" in info.value.message


async def test_the_session_the_agent_ended_in_a_stream_is_dropped(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    body = [
        sse_event({"type": "Inform", "message": "Goodbye!"}),
        sse_event({"type": "SessionEnded", "reason": "Action"}),
        sse_event({"type": "EndOfTurn"}),
    ]
    fake.scripted.append(lambda _: sse_response(body))
    client = make_client(http)
    with trio.fail_after(10):
        stream = await client.open_stream(USER, "bye")
        await read_all(stream)
    assert stream.reply.text == "Goodbye!"
    assert client.sessions_open == 0


async def test_leaving_early_closes_the_response_and_keeps_the_session(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    class Endless(httpx.AsyncByteStream):
        """A body that never ends, and tells when it was closed."""

        closed = False

        def __aiter__(self) -> Endless:
            return self

        async def __anext__(self) -> bytes:
            await trio.lowlevel.checkpoint()
            return sse_event({"type": "TextChunk", "message": "more "})

        async def aclose(self) -> None:
            self.closed = True

    body = Endless()
    fake.scripted.append(
        lambda _: httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)
    )
    client = make_client(http)
    with trio.fail_after(10):
        stream = await client.open_stream(USER, "hi")
        async with stream:
            async for step in stream:
                assert isinstance(step.event, TextChunk)
                break
    assert body.closed
    assert client.in_conversation(USER)


async def test_a_stream_of_the_wrong_json_shape_is_skipped_not_fatal(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    body = [
        b"data: not json\n\n",
        b"data: " + json.dumps({"unexpected": True}).encode() + b"\n\n",
        sse_event({"type": "Inform", "message": "Fine."}),
        sse_event({"type": "EndOfTurn"}),
    ]
    fake.scripted.append(lambda _: sse_response(body))
    client = make_client(http)
    with trio.fail_after(10):
        stream = await client.open_stream(USER, "hi")
        events = await read_all(stream)
    assert events == [inform("Fine."), EndOfTurn()]


async def test_ask_is_unchanged_by_a_session_that_streams(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    client = make_client(http)
    with trio.fail_after(10):
        await read_all(await client.open_stream(USER, "one"))
        reply = await client.ask(USER, "two")
    assert reply.text == "echo: two"
    assert [s.stream for s in fake.sent] == [True, False]
