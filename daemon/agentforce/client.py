"""The Agentforce Agent API client: one session per user, synchronous and streamed asks.

Section numbers (§) refer to reference/agentforce.md. The parts, one module each:

    wire.py          payloads to build, bodies to parse (pure)
    auth.py          the OAuth token source (client credentials, §1)
    api.py           every call with the bearer token; a new token after a 401
    lifecycle.py     sessions started on first use, written through, ended when idle
    stream_open.py   the stream endpoint (§4) and its fallback to the synchronous one
    streaming.py     reading one streamed turn off the wire (``AgentStream``)

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
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import trio

from daemon import upstream
from daemon.agentforce import wire
from daemon.agentforce.api import AgentApi
from daemon.agentforce.auth import TokenSource
from daemon.agentforce.lifecycle import SessionGone, SessionJournal, SessionKeeper
from daemon.agentforce.sessions import AgentSession, SessionStore
from daemon.agentforce.stream_open import StreamOpener
from daemon.agentforce.streaming import AgentStream
from daemon.errors import UpstreamRejected
from daemon.model import AgentReply

log = logging.getLogger(__name__)

UPSTREAM = wire.UPSTREAM


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
        self._tokens = TokenSource(
            http,
            token_url=token_url,
            client_id=client_id,
            client_secret=client_secret,
            ttl=token_ttl,
            clock=clock,
        )
        self._api = AgentApi(http, self._tokens, api_url=api_url, agent_id=agent_id)
        self._sessions = SessionKeeper(
            self._api,
            sessions,
            instance_endpoint=instance_endpoint,
            bypass_user=bypass_user,
            forward_greeting=forward_greeting,
            clock=clock,
        )
        self._streams = StreamOpener(
            self._api, self._sessions, ask=self.ask, idle=stream_idle, clock=clock
        )

    def persist_to(self, journal: SessionJournal) -> None:
        """Write every session change through to ``journal`` (the durable store)."""
        self._sessions.persist_to(journal)

    def restore(self, user_key: str, session_id: str, next_sequence: int, idle: float) -> None:
        """Take back a session saved before a restart, last used ``idle`` seconds ago."""
        self._sessions.restore(user_key, session_id, next_sequence, idle)

    @property
    def sessions_open(self) -> int:
        return len(self._sessions)

    def in_conversation(self, user_key: str) -> bool:
        """Whether the user's next message continues a conversation: a session in which at
        least one message was sent. A session opened ahead of time (the pre-warm of a voice
        note) with nothing said in it yet does not count."""
        session = self._sessions.get(user_key)
        return session is not None and session.next_sequence > 1

    def cached(self, user_key: str, text: str, *, language: str | None = None) -> None:
        """No answer without asking: this client keeps no cache (daemon/answers.py does)."""
        return None

    async def warm_up(self) -> None:
        """Fetch the OAuth token ahead of the first question (at start-up), so the first
        user after a restart does not wait for it. Errors are the first ask's to report."""
        await self._tokens.get()

    # -- the turn's entry points -----------------------------------------------------------

    async def ask(self, user_key: str, text: str, *, language: str | None = None) -> AgentReply:
        """Send the user's text to the agent in the user's session; return the agent's reply.

        The session is started on first use. When the session turns out to be gone (404) or
        the agent ends it without answering, a new one is started and the text sent once
        more (§8); conversation context is lost then, which the agent cannot help.
        """
        retried = False
        while True:
            session, greeting = await self._sessions.use(user_key)
            try:
                reply = await self._send(session, text)
            except SessionGone as gone:
                await self._sessions.gone(user_key, session)
                if retried:
                    raise gone.error from None
                retried = True
                continue
            self._sessions.touch(user_key)
            if reply.has("SessionEnded"):
                await self._sessions.ended_by_agent(user_key, session)
                if not _answers(reply):
                    if retried:
                        raise UpstreamRejected(
                            UPSTREAM, "the session ended without an answer", code="SessionEnded"
                        )
                    retried = True
                    continue
            await self._sessions.save(user_key, session)
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
        return await self._streams.open(user_key, text, deadline=deadline)

    async def prepare(self, user_key: str) -> None:
        """Open the user's session now, if there is none (a voice note is still being
        transcribed: the session start need not wait for it). Errors propagate; the turn
        treats them as best effort, and ``ask`` meets the same problem again."""
        await self._sessions.prepare(user_key)

    async def end_session(self, user_key: str, reason: str = "UserRequest") -> bool:
        """End the user's session upstream, if there is one. True if it is gone."""
        return await self._sessions.end(user_key, reason)

    async def end_idle_sessions(self) -> int:
        """End (reason Expiration) the sessions idle too long and those the size bound pushed
        out. Returns how many are gone upstream; failures are logged, never raised. Meant to
        be called periodically by the runtime.
        """
        return await self._sessions.end_idle()

    # -- the synchronous send (§3) ---------------------------------------------------------

    async def _send(self, session: AgentSession, text: str) -> AgentReply:
        response = await self._api.post_message(session, text)
        if response.is_success:
            return wire.parse_messages(response.content)
        if response.status_code == 404:
            raise SessionGone(wire.parse_error(404, response.content))
        if response.status_code == 423:
            # Not retried here (it used to be, 4 POSTs under the Guard's 3 attempts): the
            # Guard repeats it, within the budget and honouring a Retry-After.
            log.info("agentforce session %s busy (423)", session.session_id)
        raise wire.parse_error(
            response.status_code, response.content, retry_after=upstream.retry_after(response)
        )


def _answers(reply: AgentReply) -> bool:
    """Whether a reply that ended the session still says something to act on: text for the
    user, or an Escalate (the cue to hand the user to a human, §6) that must not be lost."""
    return bool(reply.text.strip()) or reply.has("Escalate")
