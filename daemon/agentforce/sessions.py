"""Which Agentforce session each user is talking in: bounded, least recently used first out.

The Agent API documents no idle lifetime (reference/agentforce.md §8), so the daemon ends
sessions itself after ``idle_seconds`` without use and keeps at most ``max_sessions``. Both
ways out hand the session back to the caller, because a session we forget must still be
ended upstream (DELETE, §5) — that is why this is an OrderedDict and not a cachetools
``TTLCache``/``LRUCache``: those drop expired or overflowing items silently.

Not thread-safe and not task-safe across awaits: every method is synchronous, so under trio
each call is atomic. The lanes keep one turn per user, so one user's session is never used
by two tasks at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import trio


@dataclass(slots=True)
class AgentSession:
    session_id: str
    # The sequenceId of the next message (§9: strictly increasing per session). Advanced
    # *before* a send goes out, so a send that is cancelled midway never reuses its number.
    next_sequence: int = 1
    last_used: float = 0.0
    started_at: float = 0.0
    # False once the stream endpoint refused this session (§4: 404/405/501, streaming not
    # enabled): its messages then go to the synchronous endpoint without trying again.
    streaming: bool = True


class SessionStore:
    """User key -> ``AgentSession``, ordered by last use (oldest first)."""

    def __init__(
        self,
        max_sessions: int,
        idle_seconds: float,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be >= 1")
        self.max_sessions = max_sessions
        self.idle_seconds = idle_seconds
        self._clock = clock
        self._by_user: OrderedDict[str, AgentSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_user)

    def __contains__(self, user: object) -> bool:
        return user in self._by_user

    def get(self, user: str) -> AgentSession | None:
        """The user's session, without counting this as a use."""
        return self._by_user.get(user)

    def put(self, user: str, session: AgentSession) -> tuple[str, AgentSession] | None:
        """Store ``session`` as the user's, used now.

        Returns the pair that had to go so the caller can end it upstream: the user's
        previous session if it was a different one, or else the least recently used entry
        when the store was full. ``None`` when nothing went.
        """
        session.last_used = self._clock()
        previous = self._by_user.pop(user, None)
        self._by_user[user] = session
        if previous is not None:
            if previous.session_id != session.session_id:
                return user, previous
            return None
        if len(self._by_user) > self.max_sessions:
            return self._by_user.popitem(last=False)
        return None

    def touch(self, user: str) -> None:
        """Count a use of the user's session now; nothing if the user has none."""
        session = self._by_user.get(user)
        if session is not None:
            session.last_used = self._clock()
            self._by_user.move_to_end(user)

    def drop(self, user: str, session_id: str | None = None) -> AgentSession | None:
        """Forget the user's session and return it.

        With ``session_id``, only if it is still that session: a caller that learned its
        session is gone must not drop a newer one that replaced it meanwhile.
        """
        session = self._by_user.get(user)
        if session is None or (session_id is not None and session.session_id != session_id):
            return None
        del self._by_user[user]
        return session

    def take_idle(self, now: float) -> list[tuple[str, AgentSession]]:
        """Remove and return every session unused for more than ``idle_seconds``."""
        idle: list[tuple[str, AgentSession]] = []
        # put and touch keep the dict ordered by last_used, so stop at the first fresh one.
        while self._by_user:
            user, session = next(iter(self._by_user.items()))
            if now - session.last_used <= self.idle_seconds:
                break
            del self._by_user[user]
            idle.append((user, session))
        return idle
