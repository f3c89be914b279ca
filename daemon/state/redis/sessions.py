"""Agentforce sessions in Redis: each user's session id and its ``sequenceId``, shared.

The Agent API takes one request per session at a time (423 otherwise) and wants the
``sequenceId`` to increase with every message of a session (reference/agentforce.md
§9-10). With several hosts that means: the number is handed out by Redis, atomically, and
only to the holder of the user's lease (leases.py). ``next_sequence`` is one script that
checks the fencing token, checks the session is still the one the caller means, and
increments: two hosts can never get the same number, and a host whose lease was taken
over gets ``LeaseLost`` instead of a number — it never calls the agent.

As in the agent client, the number is taken *before* the request goes out: a request that
is cancelled midway never has its number reused (gaps are fine, §9).

``P{u}:session`` is a hash (user key, session id, next sequence, last use and start on the
wall clock) that lives ``ttl`` after its last use (2 x [agentforce] session_idle by
default): the agent ends idle sessions upstream after ``session_idle``, and a key it could
not end (its host died) must not outlive that by much.

The store's methods are here with their signatures (``load_sessions``, ``save_session``,
``drop_session``, ``drop_idle_sessions``); the first and the last walk the keys with SCAN,
which is fine at start-up or every few minutes, not per turn.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from daemon.state.redis.client import RedisClient
from daemon.state.redis.errors import mapped
from daemon.state.redis.keys import Keys, user_tag
from daemon.state.redis.leases import FENCE_CHECK, Lease
from daemon.state.redis.scripts import call, ms, text

SCAN_COUNT = 500

# KEYS: session. ARGV: user, session id, next sequence, last used, ttl ms.
SAVE = """
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'session_id', ARGV[2], 'next_sequence', ARGV[3],
  'last_used', ARGV[4])
redis.call('HSETNX', KEYS[1], 'started_at', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
"""

# KEYS: fence, session. ARGV: fence, user, session id, now, ttl ms.
# Start a new session for the holder; returns the session id it replaced (or false).
START = f"""
{FENCE_CHECK}
local previous = redis.call('HGET', KEYS[2], 'session_id')
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'user', ARGV[2], 'session_id', ARGV[3], 'next_sequence', 1,
  'last_used', ARGV[4], 'started_at', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if previous == ARGV[3] then return false end
return previous
"""

# KEYS: fence, session. ARGV: fence, session id, now, ttl ms.
# The sequenceId to send now (then the next one is one higher), or false when the user's
# session is not (any more) that one.
NEXT = f"""
{FENCE_CHECK}
if redis.call('HGET', KEYS[2], 'session_id') ~= ARGV[2] then return false end
local n = redis.call('HINCRBY', KEYS[2], 'next_sequence', 1)
redis.call('HSET', KEYS[2], 'last_used', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return n - 1
"""

# KEYS: session. ARGV: session id or "" (any). Returns 1 when it went.
DROP = """
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'session_id') ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""

# KEYS: session. ARGV: idle since. Returns 1 when it went.
DROP_IDLE = """
local used = tonumber(redis.call('HGET', KEYS[1], 'last_used'))
if used and used < tonumber(ARGV[1]) then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class StoredSession:
    session_id: str
    next_sequence: int
    last_used: float  # wall clock


class RedisSessions:
    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        *,
        ttl: float = 2 * 1200.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl <= 0:
            raise ValueError("session ttl must be > 0")
        self._client = client
        self._keys = keys
        self.ttl = ttl
        self._wall_clock = wall_clock
        self._save = client.register_script(SAVE)
        self._start = client.register_script(START)
        self._next = client.register_script(NEXT)
        self._drop = client.register_script(DROP)
        self._drop_idle = client.register_script(DROP_IDLE)

    # -- per turn, fenced ------------------------------------------------------------------

    async def get(self, user: str) -> StoredSession | None:
        with mapped():
            values = await self._client.hmget(
                self._keys.session(user_tag(user)), ["session_id", "next_sequence", "last_used"]
            )
        if values[0] is None:
            return None
        return StoredSession(text(values[0]), int(values[1] or 1), float(values[2] or 0))

    async def start(self, lease: Lease, user: str, session_id: str) -> str | None:
        """Record the session the holder just started (its next sequenceId is 1); returns
        the id of the session it replaced, which the caller ends upstream."""
        keys = [self._keys.fence(lease.tag), self._keys.session(lease.tag)]
        args = [lease.fence, user, session_id, repr(self._wall_clock()), ms(self.ttl)]
        previous = await call(self._start, keys, args)
        return None if previous is None else text(previous)

    async def next_sequence(self, lease: Lease, session_id: str) -> int | None:
        """The sequenceId for the holder's next message in ``session_id``, taken for good;
        ``None`` when the user's session is no longer that one (start a new one).
        ``LeaseLost`` when another host owns the user: do not call the agent."""
        keys = [self._keys.fence(lease.tag), self._keys.session(lease.tag)]
        args = [lease.fence, session_id, repr(self._wall_clock()), ms(self.ttl)]
        number = await call(self._next, keys, args)
        return None if number is None else int(number)

    # -- the store's methods ---------------------------------------------------------------

    async def load_sessions(self) -> dict[str, tuple[str, int, float]]:
        """User -> (session id, next sequence id, last use), least recently used first."""
        found: list[tuple[float, str, str, int]] = []
        with mapped():
            async for key in self._client.scan_iter(
                match=self._keys.pattern("session"), count=SCAN_COUNT
            ):
                values = await self._client.hmget(
                    key, ["user", "session_id", "next_sequence", "last_used"]
                )
                if values[0] is not None and values[1] is not None:
                    found.append(
                        (
                            float(values[3] or 0),
                            text(values[0]),
                            text(values[1]),
                            int(values[2] or 1),
                        )
                    )
        return {user: (sid, seq, used) for used, user, sid, seq in sorted(found)}

    async def save_session(
        self, user: str, session_id: str, next_sequence: int, last_used: float
    ) -> None:
        """Write through unconditionally (store.save_session; the one-host path). Several
        hosts use ``start`` and ``next_sequence``, which are fenced."""
        keys = [self._keys.session(user_tag(user))]
        await call(
            self._save, keys, [user, session_id, next_sequence, repr(last_used), ms(self.ttl)]
        )

    async def drop_session(self, user: str, session_id: str | None = None) -> bool:
        keys = [self._keys.session(user_tag(user))]
        return bool(await call(self._drop, keys, [session_id or ""]))

    async def drop_idle_sessions(self, idle_since: float) -> int:
        dropped = 0
        with mapped():
            async for key in self._client.scan_iter(
                match=self._keys.pattern("session"), count=SCAN_COUNT
            ):
                dropped += int(await call(self._drop_idle, [text(key)], [repr(idle_since)]))
        return dropped


__all__ = ["RedisSessions", "StoredSession"]
