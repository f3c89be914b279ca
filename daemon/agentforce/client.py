"""The Agentforce Agent API client: OAuth token, one session per user, synchronous sends.

Section numbers (§) refer to reference/agentforce.md; the wire format lives in ``wire.py``.

The client sets no timeouts of its own: the caller wraps ``ask`` in a trio cancel scope
(config ``[timeouts] agent``), and the injected ``httpx.AsyncClient`` fails fast on connect
and pool waits. A cancellation at any await leaves the client usable:

- token fetch: the cached token is untouched, the lock is released;
- session start: nothing is stored; a session the server created anyway is reaped upstream;
- message send: the session's sequence counter already moved on (§9), so the next send
  uses a fresh number; if the server is still busy with the cancelled turn, the next send
  gets 423 (§10).

No retries here: a 423, 429 or 503 is raised as ``UpstreamUnavailable`` with
``Reason.SLOW_DOWN`` and the server's Retry-After, and the caller's retry layer (the Guard:
one layer, one budget, anchors.md §C.2) decides whether to repeat the ask. What stays here is
protocol, each at most once per ask: a new token after a 401, a new session when the old one
is gone (404) or ended without answering (§8).

Streaming (§4, ``open_stream``): the same message to ``.../messages/stream``, read as
server-sent events by ``streaming.AgentStream``. The protocol steps above happen before the
first event, while nothing was processed; after the 200 nothing is ever sent again (a
broken stream is ``StreamBroken``, an unknown outcome). A stream endpoint that refuses the
message before any event (``_refuses_streaming``: 404 other than a gone session, 405, 406,
501, or a 400/403 that names streaming) is not tried again for that session: the message
goes to the synchronous endpoint, once.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import httpx
import trio

from daemon.agentforce import wire
from daemon.agentforce.sessions import AgentSession, SessionStore
from daemon.agentforce.stream import Message
from daemon.agentforce.streaming import AgentStream
from daemon.errors import UpstreamError, UpstreamRejected, UpstreamUnavailable
from daemon.model import AgentMessage, AgentReply
from daemon.observe.logs import hashed
from daemon.resilience.retry import with_retry_after
from daemon.state.base import SessionLog

log = logging.getLogger(__name__)

UPSTREAM = wire.UPSTREAM

# Ending a session upstream (DELETE, §5) answers 200 with a SessionEnded body, maybe 204
# (§5 [C]), and 404 when the session had already ended: all mean "it is gone".
_ENDED_STATUSES = frozenset({200, 204, 404})

# Ending idle sessions: a few at a time, not thousands of DELETEs at once.
_END_CONCURRENCY = 4

_JSON = "application/json"
_EVENT_STREAM = "text/event-stream"

# Answers of the stream endpoint that say "no streaming here" rather than "not now" or "bad
# message" (§4; what the real API answers for an agent without streaming is not documented,
# so every refusal that cannot mean anything else counts): no such route (404 that is not
# the session's, 405 method, 501), the event-stream not offered (406).
_NO_STREAM_STATUSES = frozenset({404, 405, 406, 501})


class _SessionGone(Exception):
    """The session no longer exists upstream (404 on send, §8)."""

    def __init__(self, error: UpstreamError) -> None:
        super().__init__(error.message)
        self.error = error


class _NoStream(Exception):
    """The stream endpoint refused the message before processing it (see the module doc)."""

    def __init__(self, error: UpstreamError) -> None:
        super().__init__(error.message)
        self.error = error


class AgentforceClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        token_url: str,
        api_url: str,
        instance_endpoint: str,
        agent_id: str,
        client_id: str,
        client_secret: str,
        sessions: SessionStore,
        token_ttl: float = 1500.0,
        forward_greeting: bool = False,
        bypass_user: bool = True,
        stream_idle: float = 30.0,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._http = http
        self._token_url = token_url
        self._api_url = api_url.rstrip("/")
        self._instance_endpoint = instance_endpoint
        self._agent_id = agent_id
        self._client_id = client_id
        self._client_secret = client_secret
        self._sessions = sessions
        self._token_ttl = token_ttl
        self._forward_greeting = forward_greeting
        self._bypass_user = bypass_user
        # Seconds at most between two events of a streamed answer ([timeouts] agent_idle).
        self._stream_idle = stream_idle
        self._clock = clock
        self._token: wire.Token | None = None
        # One fetch at a time; callers that waited find the fresh token (checked again).
        self._token_lock = trio.Lock()
        # Sessions the store pushed out (size bound, replacement) that still need a DELETE.
        # Ending them inside ask would make the user wait for someone else's cleanup, so
        # end_idle_sessions does it. Bounded: if it overflows, the oldest are left to the
        # server's own reaper (§8), which is what would happen without a DELETE anyway.
        self._to_end: deque[str] = deque(maxlen=max(sessions.max_sessions, 100))
        # A session start in progress per user: a pre-warm and the ask right after it must
        # share one session, not open two.
        self._starting: dict[str, trio.Event] = {}
        # Greetings of sessions opened by prepare(), for the user's next ask (forward_greeting).
        self._greetings: dict[str, tuple[AgentMessage, ...]] = {}
        self._journal: SessionLog | None = None

    def persist_to(self, journal: SessionLog) -> None:
        """Write every session change through to ``journal`` (the durable store)."""
        self._journal = journal

    def restore(self, user_key: str, session_id: str, next_sequence: int, idle: float) -> None:
        """Take back a session saved before a restart, last used ``idle`` seconds ago."""
        now = self._clock()
        session = AgentSession(
            session_id, next_sequence=next_sequence, last_used=now - idle, started_at=now - idle
        )
        pushed_out = self._sessions.put(user_key, session)
        if pushed_out is not None:
            self._to_end.append(pushed_out[1].session_id)

    async def _save(self, user_key: str, session: AgentSession) -> None:
        if self._journal is not None:
            # Wall-clock time: the trio clock starts anew with every process.
            idle = self._clock() - session.last_used
            await self._journal.save_session(
                user_key, session.session_id, session.next_sequence, time.time() - idle
            )

    async def _forget(self, user_key: str, session_id: str) -> None:
        if self._journal is not None:
            await self._journal.drop_session(user_key, session_id)

    @property
    def sessions_open(self) -> int:
        return len(self._sessions)

    def in_conversation(self, user_key: str) -> bool:
        """Whether the user's next message continues a conversation: a session in which at
        least one message was sent. A session opened ahead of time (the pre-warm of a voice
        note) with nothing said in it yet does not count."""
        session = self._sessions.get(user_key)
        return session is not None and session.next_sequence > 1

    async def cached(self, user_key: str, text: str, *, language: str | None = None) -> None:
        """No answer without asking: this client keeps no cache (daemon/answers.py does)."""
        return None

    # -- the turn's entry point ------------------------------------------------------------

    async def ask(self, user_key: str, text: str, *, language: str | None = None) -> AgentReply:
        """Send the user's text to the agent in the user's session; return the agent's reply.

        The session is started on first use. When the session turns out to be gone (404) or
        the agent ends it without answering, a new one is started and the text sent once
        more (§8); conversation context is lost then, which the agent cannot help.
        """
        retried = False
        while True:
            session, greeting = await self._use_session(user_key)
            try:
                reply = await self._send(session, text)
            except _SessionGone as gone:
                await self._gone(user_key, session)
                if retried:
                    raise gone.error from None
                retried = True
                continue
            self._sessions.touch(user_key)
            if reply.has("SessionEnded"):
                # The agent ended the session itself (§8): the next message needs a new one.
                self._sessions.drop(user_key, session.session_id)
                await self._forget(user_key, session.session_id)
                log.info("agentforce ended the session of %s", hashed(user_key))
                if not _answers(reply):
                    if retried:
                        raise UpstreamRejected(
                            UPSTREAM, "the session ended without an answer", code="SessionEnded"
                        )
                    retried = True
                    continue
            await self._save(user_key, session)
            return AgentReply(greeting + reply.messages) if greeting else reply

    async def open_stream(
        self, user_key: str, text: str, *, deadline: float | None = None
    ) -> AgentStream:
        """Send the user's text to the stream endpoint (§4); the answer, as it is written.

        Returns once the server answered the POST, with the stream open: the caller reads it
        (``async with stream: async for step in stream``). Sessions, tokens, 404 and 423 are
        handled as in ``ask``. A session whose stream endpoint refused a message answers from
        the synchronous endpoint from then on (``stream.fell_back``); the events are then a
        replay of the whole reply. ``deadline`` (trio clock) bounds the reading.
        """
        current = self._sessions.get(user_key)
        if current is not None and not current.streaming:
            return AgentStream.replay(await self.ask(user_key, text), fell_back=True)
        retried = False
        while True:
            session, greeting = await self._use_session(user_key)
            try:
                return await self._send_stream(user_key, session, text, greeting, deadline)
            except _SessionGone as gone:
                await self._gone(user_key, session)
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
                    self._greetings[user_key] = greeting  # ask() forwards it
                return AgentStream.replay(await self.ask(user_key, text), fell_back=True)

    async def prepare(self, user_key: str) -> None:
        """Open the user's session now, if there is none (a voice note is still being
        transcribed: the session start need not wait for it). Errors propagate; the turn
        treats them as best effort, and ``ask`` meets the same problem again."""
        if self._sessions.get(user_key) is not None:
            return
        _, greeting = await self._session_for(user_key)
        if greeting:
            if len(self._greetings) >= self._sessions.max_sessions:
                self._greetings.pop(next(iter(self._greetings)))  # bounded like the sessions
            self._greetings[user_key] = greeting

    # -- session lifecycle -------------------------------------------------------------------

    async def _use_session(self, user_key: str) -> tuple[AgentSession, tuple[AgentMessage, ...]]:
        """The session to send the user's next message in, with the greeting still owed to
        the user (a session opened by ``prepare``, or just now)."""
        session = self._sessions.get(user_key)
        greeting: tuple[AgentMessage, ...] = self._greetings.pop(user_key, ())
        if session is None:
            session, greeting = await self._session_for(user_key)
        else:
            self._sessions.touch(user_key)
        return session, greeting

    async def _gone(self, user_key: str, session: AgentSession) -> None:
        """Forget a session the server no longer knows (404 on send, §8)."""
        self._sessions.drop(user_key, session.session_id)
        await self._forget(user_key, session.session_id)
        log.info("agentforce session of %s is gone upstream", hashed(user_key))

    async def _session_for(self, user_key: str) -> tuple[AgentSession, tuple[AgentMessage, ...]]:
        """The user's session, started if needed; one start at a time per user."""
        while (starting := self._starting.get(user_key)) is not None:
            await starting.wait()
        session = self._sessions.get(user_key)
        if session is not None:
            return session, self._greetings.pop(user_key, ())
        done = self._starting[user_key] = trio.Event()
        try:
            return await self._start_session(user_key)
        finally:
            del self._starting[user_key]
            done.set()

    async def _start_session(self, user_key: str) -> tuple[AgentSession, tuple[AgentMessage, ...]]:
        # A fresh random key per session, as the docs ask (§2.1); never the phone number,
        # which would put it into Salesforce's event logs.
        body = wire.start_session_body(
            str(uuid.uuid4()), self._instance_endpoint, bypass_user=self._bypass_user
        )
        response = await self._request(
            "POST",
            f"{self._api_url}/agents/{self._agent_id}/sessions",
            json=body,
            headers={"Content-Type": _JSON},
        )
        if not response.is_success:
            raise with_retry_after(
                wire.parse_error(response.status_code, response.content), response.headers
            )
        session_id, greeting = wire.parse_session_start(response.content)
        now = self._clock()
        session = AgentSession(session_id, next_sequence=1, last_used=now, started_at=now)
        pushed_out = self._sessions.put(user_key, session)
        if pushed_out is not None:
            self._to_end.append(pushed_out[1].session_id)
        log.info("agentforce session %s started for %s", session_id, hashed(user_key))
        if not self._forward_greeting:
            return session, ()
        return session, greeting.messages

    async def _post_message(
        self, session: AgentSession, text: str, *, stream: bool = False
    ) -> httpx.Response:
        """The user's text to the session's synchronous (§3) or stream (§4) endpoint, under
        the session's next sequenceId."""
        sequence_id = session.next_sequence
        session.next_sequence += 1  # before the await: see the module docstring
        log.debug(
            "agentforce %s %s seq %d (%d chars)",
            "stream" if stream else "send",
            session.session_id,
            sequence_id,
            len(text),
        )
        return await self._request(
            "POST",
            f"{self._api_url}/sessions/{session.session_id}/messages"
            + ("/stream" if stream else ""),
            json=wire.message_body(sequence_id, text),
            headers={"Accept": _EVENT_STREAM if stream else _JSON, "Content-Type": _JSON},
            stream=stream,
        )

    async def _send(self, session: AgentSession, text: str) -> AgentReply:
        response = await self._post_message(session, text)
        if response.is_success:
            return wire.parse_messages(response.content)
        if response.status_code == 404:
            raise _SessionGone(wire.parse_error(404, response.content))
        if response.status_code == 423:
            # Not retried here (it used to be, 4 POSTs under the Guard's 3 attempts): the
            # Guard repeats it, within the budget and honouring a Retry-After.
            log.info("agentforce session %s busy (423)", session.session_id)
        raise with_retry_after(
            wire.parse_error(response.status_code, response.content), response.headers
        )

    async def _send_stream(
        self,
        user_key: str,
        session: AgentSession,
        text: str,
        greeting: tuple[AgentMessage, ...],
        deadline: float | None,
    ) -> AgentStream:
        response = await self._post_message(session, text, stream=True)
        ended = partial(self._stream_ended, user_key, session)
        if response.is_success and _media_type(response) == _EVENT_STREAM:
            return AgentStream(
                response,
                idle=self._stream_idle,
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
        error = wire.parse_error(status, body)
        if status == 404 and _names_session(body):
            raise _SessionGone(error)
        if _refuses_streaming(status, body):
            raise _NoStream(error)
        if status == 423:
            log.info("agentforce session %s busy (423)", session.session_id)
        raise with_retry_after(error, response.headers)

    async def _stream_ended(
        self, user_key: str, session: AgentSession, reply: AgentReply, complete: bool
    ) -> None:
        """Book a streamed turn that ended, whole (EndOfTurn) or not."""
        self._sessions.touch(user_key)
        if reply.has("SessionEnded"):
            # The agent ended the session itself (§8). Unlike ask(), the message is not sent
            # again in a new one: the stream may have said things already.
            self._sessions.drop(user_key, session.session_id)
            await self._forget(user_key, session.session_id)
            log.info("agentforce ended the session of %s", hashed(user_key))
            return
        if not complete:
            log.info("agentforce stream of session %s ended early", session.session_id)
        await self._save(user_key, session)

    async def end_session(self, user_key: str, reason: str = "UserRequest") -> bool:
        """End the user's session upstream, if there is one. True if it is gone."""
        if reason not in wire.END_REASONS:
            raise ValueError(f"x-session-end-reason must be one of {wire.END_REASONS}")
        session = self._sessions.drop(user_key)
        if session is None:
            return True
        await self._forget(user_key, session.session_id)
        return await self._end(session.session_id, reason)

    async def end_idle_sessions(self) -> int:
        """End (reason Expiration) the sessions idle too long and those the size bound pushed
        out. Returns how many are gone upstream; failures are logged, never raised. Meant to
        be called periodically by the runtime.
        """
        idle = self._sessions.take_idle(self._clock())
        for user_key, session in idle:
            await self._forget(user_key, session.session_id)
        pending = [session.session_id for _, session in idle]
        pending.extend(self._to_end)
        self._to_end.clear()
        if not pending:
            return 0
        remaining = set(pending)
        ended = 0
        limiter = trio.CapacityLimiter(_END_CONCURRENCY)

        async def end_one(session_id: str) -> None:
            nonlocal ended
            async with limiter:
                if await self._end(session_id, "Expiration"):
                    ended += 1
                remaining.discard(session_id)

        try:
            async with trio.open_nursery() as nursery:
                for session_id in pending:
                    nursery.start_soon(end_one, session_id)
        finally:
            # Cancelled midway: keep what was not ended for the next sweep.
            self._to_end.extend(sid for sid in pending if sid in remaining)
        log.info("agentforce ended %d of %d idle sessions", ended, len(pending))
        return ended

    async def _end(self, session_id: str, reason: str) -> bool:
        try:
            response = await self._request(
                "DELETE",
                f"{self._api_url}/sessions/{session_id}",
                headers={"x-session-end-reason": reason},
            )
        except UpstreamError as exc:
            log.warning("agentforce could not end session %s: %s", session_id, exc)
            return False
        if response.status_code in _ENDED_STATUSES:
            return True
        error = wire.parse_error(response.status_code, response.content)
        log.warning("agentforce could not end session %s: %s", session_id, error)
        return False

    # -- HTTP and the token ------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str],
        stream: bool = False,
    ) -> httpx.Response:
        """One Agent API call with a bearer token; on 401 a new token and one more try.

        Returns the response whatever its status (a second 401 included): the caller
        decides what the status means. ``stream``: the body is not read yet; the caller
        reads or closes it.
        """
        for attempt in (1, 2):
            token = await self._access_token()
            try:
                request = self._http.build_request(
                    method,
                    url,
                    json=json,
                    headers={**headers, "Authorization": f"Bearer {token}"},
                )
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                raise UpstreamUnavailable(UPSTREAM, f"{method} failed: {exc!r}") from exc
            except httpx.HTTPError as exc:  # e.g. a body that does not decode
                raise UpstreamRejected(UPSTREAM, f"{method} failed: {exc!r}") from exc
            if response.status_code == 401 and attempt == 1:
                log.info("agentforce answered 401, fetching a new token")
                if stream:
                    await response.aclose()
                self._forget_token(token)
                continue
            return response
        raise AssertionError("unreachable: the second attempt returns")

    async def warm_up(self) -> None:
        """Fetch the OAuth token ahead of the first question (at start-up), so the first
        user after a restart does not wait for it. Errors are the first ask's to report."""
        await self._access_token()

    async def _access_token(self) -> str:
        token = self._token
        if token is not None and token.expires_at > self._clock():
            return token.access_token
        async with self._token_lock:
            token = self._token  # another task may have fetched it while we waited
            if token is None or token.expires_at <= self._clock():
                token = await self._fetch_token()
                self._token = token
            return token.access_token

    def _forget_token(self, rejected: str) -> None:
        # Only if it is still the cached one: a concurrent caller may have replaced it.
        if self._token is not None and self._token.access_token == rejected:
            self._token = None

    async def _fetch_token(self) -> wire.Token:
        try:
            response = await self._http.post(
                self._token_url,
                data=wire.token_form(self._client_id, self._client_secret),
                headers={"Accept": _JSON},
            )
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(UPSTREAM, f"token request failed: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise UpstreamRejected(UPSTREAM, f"token request failed: {exc!r}") from exc
        if not response.is_success:
            raise with_retry_after(
                wire.parse_error(response.status_code, response.content), response.headers
            )
        token = wire.parse_token(
            response.content,
            self._clock(),
            fallback_ttl=self._token_ttl,
            wall_now=time.time(),
        )
        if token.missing_scopes:
            log.warning(
                "agentforce token lacks the scopes %s (reference §1.1)",
                " ".join(token.missing_scopes),
            )
        log.info("agentforce token fetched, used for %.0f s", token.expires_at - self._clock())
        return token


def _answers(reply: AgentReply) -> bool:
    """Whether a reply that ended the session still says something to act on: text for the
    user, or an Escalate (the cue to hand the user to a human, §6) that must not be lost."""
    return bool(reply.text.strip()) or reply.has("Escalate")


def _media_type(response: httpx.Response) -> str:
    content_type: str = response.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower()


async def _read(response: httpx.Response) -> bytes:
    """The whole body of a response opened with ``stream=True``; closed in any case."""
    try:
        return await response.aread()
    except httpx.TransportError as exc:
        raise UpstreamUnavailable(UPSTREAM, f"reading the answer failed: {exc!r}") from exc
    except httpx.HTTPError as exc:
        raise UpstreamRejected(UPSTREAM, f"reading the answer failed: {exc!r}") from exc
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
