"""Reading one streamed Agentforce turn off the wire (reference/agentforce.md §4).

``AgentStream`` owns the open ``text/event-stream`` response: it reads bytes, frames them
(``sse``), types them (``stream``) and hands each event out with what a voice composer
should do about it::

    async with stream:                      # closes the response, whatever happens
        async for step in stream:           # ends after EndOfTurn
            step.event                      # ProgressIndicator, TextChunk, Message, ...
            step.speech                     # [Speak(...), Retract(), Commit()]
        reply = stream.reply                # the complete messages: the answer

Timeouts: ``idle`` seconds at most between two events (progress indicators count; SSE
comments do not: a heartbeat proves the connection, not the agent), and an optional
``deadline`` (trio clock) for the whole turn.

Never reconnected (§4.3): a POST that may have been processed is not sent again. Once the
response headers said 200 the turn may be under way upstream, so any end but EndOfTurn — a
connection lost, an idle or deadline timeout, the server closing early, an event too large
— raises ``StreamBroken``: an unknown outcome, like a send that was lost. It carries the
complete messages received before the break (``partial``), so the caller can still deliver
an answer that arrived whole and otherwise apologise once, never ask again.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import NoReturn

import httpx
import trio

from daemon import upstream
from daemon.agentforce import stream as events
from daemon.agentforce.sse import SseParser, SseTooLarge
from daemon.agentforce.wire import UPSTREAM
from daemon.errors import UpstreamUnavailable
from daemon.model import AgentReply

log = logging.getLogger(__name__)

# Called once when the turn ended: the sum so far, and whether EndOfTurn was seen.
OnEnd = Callable[[AgentReply, bool], Awaitable[None]]


# After EndOfTurn: how long and how much to read, waiting for the server to close.
_DRAIN_SECONDS = 0.5
_DRAIN_BYTES = 64 * 1024


class StreamBroken(UpstreamUnavailable):
    """The stream ended without EndOfTurn after the server accepted the message.

    The message may have been processed (``sent`` is True), so it is never sent again;
    ``partial`` holds the complete messages that did arrive, ``events`` how many events."""

    def __init__(self, message: str, *, partial: AgentReply, events: int) -> None:
        super().__init__(UPSTREAM, message, sent=True)
        self.partial = partial
        self.events = events


@dataclass(frozen=True, slots=True)
class StreamStep:
    event: events.AgentEvent
    speech: list[events.SpeechOp]


class AgentStream:
    """One streamed turn. Built by ``AgentforceClient.open_stream``; see the module doc."""

    def __init__(
        self,
        response: httpx.Response | None,
        *,
        idle: float,
        deadline: float | None = None,
        before: Iterable[events.AgentEvent] = (),
        on_end: OnEnd | None = None,
        fell_back: bool = False,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._response = response
        self._chunks: AsyncIterator[bytes] | None = (
            response.aiter_bytes() if response is not None else None
        )
        self._idle = idle
        self._deadline = deadline
        self._clock = clock
        self._on_end = on_end
        self._parser = SseParser()
        self._queue: deque[events.AgentEvent] = deque(before)
        self._turn = events.StreamedTurn()
        self._ended = False
        self._closed = False
        # True when the answer came from the synchronous endpoint (the stream endpoint was
        # refused for this session): the events are then a replay of the whole reply.
        self.fell_back = fell_back

    @classmethod
    def replay(cls, reply: AgentReply, *, fell_back: bool) -> AgentStream:
        """A finished reply served as the events a stream of it would have carried."""
        before: list[events.AgentEvent] = [events.Message(m) for m in reply.messages]
        before.append(events.EndOfTurn())
        return cls(None, idle=0.0, before=before, fell_back=fell_back)

    @property
    def reply(self) -> AgentReply:
        """The answer so far (the whole answer once iteration ended)."""
        return self._turn.reply()

    @property
    def done(self) -> bool:
        return self._turn.done

    # -- iteration -------------------------------------------------------------------------

    def __aiter__(self) -> AgentStream:
        return self

    async def __anext__(self) -> StreamStep:
        if self._turn.done or self._closed:
            raise StopAsyncIteration
        event = await self._next_event()
        speech = self._turn.apply(event)
        if isinstance(event, events.EndOfTurn):
            await self._end(complete=True)
        return StreamStep(event, speech)

    async def _next_event(self) -> events.AgentEvent:
        idle_until = self._clock() + self._idle
        while not self._queue:
            if self._chunks is None:
                await self._broken("the stream ended before the end of the turn")
            limit = idle_until if self._deadline is None else min(idle_until, self._deadline)
            chunk = b""
            with trio.move_on_at(limit) as scope:
                try:
                    chunk = await self._chunks.__anext__()
                except StopAsyncIteration:
                    self._chunks = None
                    self._take_last()
                    continue
                except upstream.READ_ERRORS as exc:
                    await self._broken(f"the stream broke: {upstream.describe(exc)}")
            if scope.cancelled_caught:
                late = self._deadline is not None and self._clock() >= self._deadline
                await self._broken(
                    "the turn's deadline passed mid-stream"
                    if late
                    else f"no event for {self._idle:g} s"
                )
            try:
                sse_events = self._parser.feed(chunk)
            except SseTooLarge as exc:
                await self._broken(str(exc))
            for sse_event in sse_events:
                self._queue.extend(events.parse_event(sse_event))
        return self._queue.popleft()

    def _take_last(self) -> None:
        last, discarded = self._parser.close()
        if discarded:
            log.warning("agentforce stream ended inside an event (no closing blank line)")
        for sse_event in last:
            self._queue.extend(events.parse_event(sse_event))

    async def _broken(self, why: str) -> NoReturn:
        partial = self._turn.reply()
        await self._end(complete=False)
        raise StreamBroken(why, partial=partial, events=self._turn.events)

    async def _end(self, *, complete: bool) -> None:
        if self._ended:
            return
        self._ended = True
        if complete:
            await self._drain()
        await self.aclose()
        if self._on_end is not None:
            await self._on_end(self._turn.reply(), complete)

    async def _drain(self) -> None:
        """Read to the end of the body after EndOfTurn: the server closes right after it
        (§4.3), and a body read to its end leaves no half-read generators in httpcore's
        stack to the garbage collector. Bounded: a server that keeps talking is cut off."""
        chunks = self._chunks
        if chunks is None:
            return
        left = _DRAIN_BYTES
        with trio.move_on_after(_DRAIN_SECONDS):
            try:
                async for chunk in chunks:
                    left -= len(chunk)
                    if left < 0:
                        break
            except upstream.READ_ERRORS:
                pass  # the answer is whole already

    # -- closing ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the response (idempotent). Shielded and bounded: a turn that is being
        cancelled must still give the connection back."""
        if self._closed:
            return
        self._closed = True
        chunks, self._chunks = self._chunks, None
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            # Finalize the reading generator now, not in the garbage collector.
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
            if self._response is not None:
                await self._response.aclose()

    async def __aenter__(self) -> AgentStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._ended:
            # Left before the end (the caller gave up, or was cancelled): the session must
            # still be saved (its sequence moved on); the outcome is unknown.
            self._ended = True
            await self.aclose()
            if self._on_end is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(5.0):
                    await self._on_end(self._turn.reply(), False)
