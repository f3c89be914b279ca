"""Opening a streamed answer (reference/agentforce.md §4): the POST, and what its answer means.

The same message as a synchronous send, to ``.../messages/stream``, read as server-sent
events by ``streaming.AgentStream``. Sessions, tokens, 404 and 423 are handled as for a
synchronous ask, before the first event, while nothing was processed; after the 200 nothing
is ever sent again (a broken stream is ``StreamBroken``, an unknown outcome).

A stream endpoint that refuses the message before any event (``refuses_streaming``: 404
other than a gone session, 405, 406, 501, or a 400/403 that names streaming) is not tried
again for that session: the message goes to the synchronous endpoint, once, and so does
every later message of that session.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from functools import partial

import httpx
import trio

from daemon import upstream
from daemon.agentforce import wire
from daemon.agentforce.api import AgentApi
from daemon.agentforce.lifecycle import Greeting, SessionGone, SessionKeeper
from daemon.agentforce.sessions import AgentSession
from daemon.agentforce.stream import Message
from daemon.agentforce.streaming import AgentStream
from daemon.errors import UpstreamError
from daemon.model import AgentReply

log = logging.getLogger(__name__)

UPSTREAM = wire.UPSTREAM

_EVENT_STREAM = "text/event-stream"

# Answers of the stream endpoint that say "no streaming here" rather than "not now" or "bad
# message" (§4; what the real API answers for an agent without streaming is not documented,
# so every refusal that cannot mean anything else counts): no such route (404 that is not
# the session's, 405 method, 501), the event-stream not offered (406).
_NO_STREAM_STATUSES = frozenset({404, 405, 406, 501})

Ask = Callable[[str, str], Awaitable[AgentReply]]


class _NoStream(Exception):
    """The stream endpoint refused the message before processing it (see the module doc)."""

    def __init__(self, error: UpstreamError) -> None:
        super().__init__(error.message)
        self.error = error


class StreamOpener:
    """``open`` sends one message to the stream endpoint; ``ask`` answers it synchronously
    where the endpoint refused streaming."""

    def __init__(
        self,
        api: AgentApi,
        sessions: SessionKeeper,
        *,
        ask: Ask,
        idle: float,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._api = api
        self._sessions = sessions
        self._ask = ask
        # Seconds at most between two events of a streamed answer ([timeouts] agent_idle).
        self._idle = idle
        self._clock = clock

    async def open(self, user_key: str, text: str, *, deadline: float | None) -> AgentStream:
        current = self._sessions.get(user_key)
        if current is not None and not current.streaming:
            return AgentStream.replay(await self._ask(user_key, text), fell_back=True)
        retried = False
        while True:
            session, greeting = await self._sessions.use(user_key)
            try:
                return await self._send(user_key, session, text, greeting, deadline)
            except SessionGone as gone:
                await self._sessions.gone(user_key, session)
                if retried:
                    raise gone.error from None
                retried = True
            except _NoStream as refused:
                session.streaming = False
                log.info(
                    "agentforce stream endpoint refused session %s (%s): answering it "
                    "synchronously from now on",
                    session.session_id,
                    refused.error,
                )
                if greeting:
                    self._sessions.owe_greeting(user_key, greeting)  # the ask forwards it
                return AgentStream.replay(await self._ask(user_key, text), fell_back=True)

    async def _send(
        self,
        user_key: str,
        session: AgentSession,
        text: str,
        greeting: Greeting,
        deadline: float | None,
    ) -> AgentStream:
        response = await self._api.post_message(session, text, stream=True)
        ended = partial(self._ended, user_key, session)
        if response.is_success and _media_type(response) == _EVENT_STREAM:
            return AgentStream(
                response,
                idle=self._idle,
                deadline=deadline,
                before=[Message(m) for m in greeting],
                on_end=ended,
                clock=self._clock,
            )
        body = await _read(response)
        if response.is_success:
            # Answered whole, as JSON: the body of a synchronous answer (the documented
            # stream sample of Inform has that very shape, §4.1). Processed: not asked again.
            reply = wire.parse_messages(body)
            await ended(reply, True)
            return AgentStream.replay(AgentReply(greeting + reply.messages), fell_back=False)
        status = response.status_code
        error = wire.parse_error(status, body, retry_after=upstream.retry_after(response))
        if status == 404 and _names_session(body):
            raise SessionGone(error)
        if _refuses_streaming(status, body):
            raise _NoStream(error)
        if status == 423:
            log.info("agentforce session %s busy (423)", session.session_id)
        raise error

    async def _ended(
        self, user_key: str, session: AgentSession, reply: AgentReply, complete: bool
    ) -> None:
        """Book a streamed turn that ended, whole (EndOfTurn) or not."""
        self._sessions.touch(user_key)
        if reply.has("SessionEnded"):
            # The agent ended the session itself (§8). Unlike a synchronous ask, the message
            # is not sent again in a new one: the stream may have said things already.
            await self._sessions.ended_by_agent(user_key, session)
            return
        if not complete:
            log.info("agentforce stream of session %s ended early", session.session_id)
        await self._sessions.save(user_key, session)


def _media_type(response: httpx.Response) -> str:
    content_type: str = response.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower()


async def _read(response: httpx.Response) -> bytes:
    """The whole body of a response opened with ``stream=True``; closed in any case."""
    try:
        with upstream.map_transport_errors(UPSTREAM, "reading the answer"):
            return await response.aread()
    finally:
        await response.aclose()


def _error_text(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    return " ".join(str(data.get(k, "")) for k in ("error", "message")).lower()


def _names_session(body: bytes) -> bool:
    """A 404 about the session (§7.2 mock: "V6Session not found for sessionId: ..."), not
    about the route."""
    return "session" in _error_text(body)


def _refuses_streaming(status: int, body: bytes) -> bool:
    if status in _NO_STREAM_STATUSES:
        return True
    return status in (400, 403) and "stream" in _error_text(body)
