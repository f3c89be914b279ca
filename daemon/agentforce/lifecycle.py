"""The users' Agentforce sessions upstream: started on first use, ended when idle.

Section numbers (§) refer to reference/agentforce.md. ``SessionStore`` (sessions.py) is the
bounded map of user -> session; ``SessionKeeper`` is what happens around it on the wire and
on disk:

- one session start at a time per user: a pre-warm (``prepare``) and the ask right after it
  share one session, not two; the greeting of a session nobody has asked in yet is kept for
  the user's first ask (``[agentforce] forward_greeting``);
- every change written through to the ``SessionJournal``, so a conversation survives a
  restart (``restore`` takes them back);
- a session the server no longer knows (404 on send, §8) or that the agent ended is
  forgotten; idle ones, and those the size bound pushed out, are ended upstream (DELETE,
  reason Expiration, §5) a few at a time by ``end_idle``, never inside a user's ask.

A cancelled start stores nothing; a session the server created anyway is reaped upstream.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Protocol

import trio

from daemon import upstream
from daemon.agentforce import wire
from daemon.agentforce.api import AgentApi
from daemon.agentforce.sessions import AgentSession, SessionStore
from daemon.errors import UpstreamError
from daemon.model import AgentMessage
from daemon.observe.logs import hashed

log = logging.getLogger(__name__)

# Ending a session upstream (DELETE, §5) answers 200 with a SessionEnded body, maybe 204
# (§5 [C]), and 404 when the session had already ended: all mean "it is gone".
_ENDED_STATUSES = frozenset({200, 204, 404})

# Ending idle sessions: a few at a time, not thousands of DELETEs at once.
_END_CONCURRENCY = 4

Greeting = tuple[AgentMessage, ...]


class SessionGone(Exception):
    """The session no longer exists upstream (404 on send, §8)."""

    def __init__(self, error: UpstreamError) -> None:
        super().__init__(error.message)
        self.error = error


class SessionJournal(Protocol):
    """Where sessions are written through, so a conversation survives a restart."""

    async def save_session(
        self, user: str, session_id: str, next_sequence: int, last_used: float
    ) -> None: ...

    async def drop_session(self, user: str, session_id: str | None = None) -> bool: ...


class SessionKeeper:
    def __init__(
        self,
        api: AgentApi,
        store: SessionStore,
        *,
        instance_endpoint: str,
        bypass_user: bool = True,
        forward_greeting: bool = False,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._api = api
        self._store = store
        self._instance_endpoint = instance_endpoint
        self._bypass_user = bypass_user
        self._forward_greeting = forward_greeting
        self._clock = clock
        # Sessions the store pushed out (size bound, replacement) that still need a DELETE.
        # Ending them inside ask would make the user wait for someone else's cleanup, so
        # end_idle does it. Bounded: if it overflows, the oldest are left to the server's
        # own reaper (§8), which is what would happen without a DELETE anyway.
        self._to_end: deque[str] = deque(maxlen=max(store.max_sessions, 100))
        # A session start in progress per user: a pre-warm and the ask right after it must
        # share one session, not open two.
        self._starting: dict[str, trio.Event] = {}
        # Greetings of sessions opened by prepare(), for the user's next ask (forward_greeting).
        self._greetings: dict[str, Greeting] = {}
        self._journal: SessionJournal | None = None

    # -- the store and the journal ---------------------------------------------------------

    def persist_to(self, journal: SessionJournal) -> None:
        """Write every session change through to ``journal`` (the durable store)."""
        self._journal = journal

    def restore(self, user_key: str, session_id: str, next_sequence: int, idle: float) -> None:
        """Take back a session saved before a restart, last used ``idle`` seconds ago."""
        now = self._clock()
        session = AgentSession(
            session_id, next_sequence=next_sequence, last_used=now - idle, started_at=now - idle
        )
        pushed_out = self._store.put(user_key, session)
        if pushed_out is not None:
            self._to_end.append(pushed_out[1].session_id)

    async def save(self, user_key: str, session: AgentSession) -> None:
        if self._journal is not None:
            # Wall-clock time: the trio clock starts anew with every process.
            idle = self._clock() - session.last_used
            await self._journal.save_session(
                user_key, session.session_id, session.next_sequence, time.time() - idle
            )

    async def _forget(self, user_key: str, session_id: str) -> None:
        if self._journal is not None:
            await self._journal.drop_session(user_key, session_id)

    def __len__(self) -> int:
        return len(self._store)

    def get(self, user_key: str) -> AgentSession | None:
        return self._store.get(user_key)

    def touch(self, user_key: str) -> None:
        self._store.touch(user_key)

    # -- using a session ---------------------------------------------------------------------

    async def use(self, user_key: str) -> tuple[AgentSession, Greeting]:
        """The session to send the user's next message in, with the greeting still owed to
        the user (a session opened by ``prepare``, or just now)."""
        session = self._store.get(user_key)
        greeting: Greeting = self._greetings.pop(user_key, ())
        if session is None:
            session, greeting = await self._session_for(user_key)
        else:
            self._store.touch(user_key)
        return session, greeting

    async def prepare(self, user_key: str) -> None:
        """Open the user's session now, if there is none; its greeting waits for ``use``."""
        if self._store.get(user_key) is not None:
            return
        _, greeting = await self._session_for(user_key)
        if greeting:
            if len(self._greetings) >= self._store.max_sessions:
                self._greetings.pop(next(iter(self._greetings)))  # bounded like the sessions
            self._greetings[user_key] = greeting

    def owe_greeting(self, user_key: str, greeting: Greeting) -> None:
        """Keep a greeting that was not delivered for the user's next ``use``."""
        self._greetings[user_key] = greeting

    async def gone(self, user_key: str, session: AgentSession) -> None:
        """Forget a session the server no longer knows (404 on send, §8)."""
        self._store.drop(user_key, session.session_id)
        await self._forget(user_key, session.session_id)
        log.info("agentforce session of %s is gone upstream", hashed(user_key))

    async def ended_by_agent(self, user_key: str, session: AgentSession) -> None:
        """The agent ended the session itself (§8): the next message needs a new one."""
        self._store.drop(user_key, session.session_id)
        await self._forget(user_key, session.session_id)
        log.info("agentforce ended the session of %s", hashed(user_key))

    async def _session_for(self, user_key: str) -> tuple[AgentSession, Greeting]:
        """The user's session, started if needed; one start at a time per user."""
        while (starting := self._starting.get(user_key)) is not None:
            await starting.wait()
        session = self._store.get(user_key)
        if session is not None:
            return session, self._greetings.pop(user_key, ())
        done = self._starting[user_key] = trio.Event()
        try:
            return await self._start(user_key)
        finally:
            del self._starting[user_key]
            done.set()

    async def _start(self, user_key: str) -> tuple[AgentSession, Greeting]:
        # A fresh random key per session, as the docs ask (§2.1); never the phone number,
        # which would put it into Salesforce's event logs.
        body = wire.start_session_body(
            str(uuid.uuid4()), self._instance_endpoint, bypass_user=self._bypass_user
        )
        response = await self._api.start_session(body)
        if not response.is_success:
            raise wire.parse_error(
                response.status_code, response.content, retry_after=upstream.retry_after(response)
            )
        session_id, greeting = wire.parse_session_start(response.content)
        now = self._clock()
        session = AgentSession(session_id, next_sequence=1, last_used=now, started_at=now)
        pushed_out = self._store.put(user_key, session)
        if pushed_out is not None:
            self._to_end.append(pushed_out[1].session_id)
        log.info("agentforce session %s started for %s", session_id, hashed(user_key))
        if not self._forward_greeting:
            return session, ()
        return session, greeting.messages

    # -- ending sessions ---------------------------------------------------------------------

    async def end(self, user_key: str, reason: str = "UserRequest") -> bool:
        """End the user's session upstream, if there is one. True if it is gone."""
        if reason not in wire.END_REASONS:
            raise ValueError(f"x-session-end-reason must be one of {wire.END_REASONS}")
        session = self._store.drop(user_key)
        if session is None:
            return True
        await self._forget(user_key, session.session_id)
        return await self._end(session.session_id, reason)

    async def end_idle(self) -> int:
        """End (reason Expiration) the sessions idle too long and those the size bound pushed
        out. Returns how many are gone upstream; failures are logged, never raised."""
        idle = self._store.take_idle(self._clock())
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
            response = await self._api.end_session(session_id, reason)
        except UpstreamError as exc:
            log.warning("agentforce could not end session %s: %s", session_id, exc)
            return False
        if response.status_code in _ENDED_STATUSES:
            return True
        error = wire.parse_error(response.status_code, response.content)
        log.warning("agentforce could not end session %s: %s", session_id, error)
        return False
