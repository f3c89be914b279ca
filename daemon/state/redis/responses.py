"""The response cache and its pending context, shared: confirmations count across hosts.

daemon/cache/response.py's rules, kept in Redis so that the two users who confirm an answer
may have asked on two hosts, and a confirmed answer serves every host. Read that module for
why; in short: an answer is served to others only after ``confirmations`` different users
got the same text for the same key; a user who gets a different answer (or one that is not
a plain ``Inform``) makes the key *volatile* for the TTL; technical trouble proves nothing.

Per question key ``q``, under one hash tag ``{rc:q}`` so one script sees them all:

    P{rc:q}:answer    HASH messages, digest, created_at, hits   PX: the rule's TTL, from
                                                                 the confirmation (absolute)
    P{rc:q}:cand      HASH messages, digest, ttl                PX: the candidate's TTL
    P{rc:q}:users     SET of user digests who got it            PX: as the candidate
    P{rc:q}:volatile  "1"                                       PX: the TTL

Bound: the TTLs (1-24 h, [cache] rules); all are cache keys, which ``flush`` drops.

Users are identified by what the caller passes, re-hashed before it is stored (so a raw
number never is). Pass the same string for one user on every host — the user key, not the
log hash, whose salt may differ per host ([log] WA_AGENTD_LOG_SALT) and would make one user
count as several.

The pending context (a cached exchange owed to the agent as context on the user's next
agent turn) is ``P{u}:pending`` under the user's tag, living ``ttl`` (the session idle
time); ``take`` is ``GETDEL``, so exactly one turn — on whichever host — prepends it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from daemon.cache.response import (
    _TROUBLE_TYPES,
    CACHEABLE_TYPES,
    CachedAnswer,
    _answer_digest,
    _user_digest,
)
from daemon.model import AgentMessage, AgentReply
from daemon.state.redis.client import RedisClient
from daemon.state.redis.errors import mapped
from daemon.state.redis.keys import Keys, user_tag
from daemon.state.redis.scripts import call, ms, text

# KEYS: answer. Returns {messages, created_at, hits} and counts the hit, or false.
LOOKUP = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local hits = redis.call('HINCRBY', KEYS[1], 'hits', 1)
local v = redis.call('HMGET', KEYS[1], 'messages', 'created_at')
return {v[1], v[2], hits}
"""

# KEYS: answer, cand, users, volatile. ARGV: digest, messages, user, ttl ms, trusted,
# confirmations, plain (1/0), now. Returns what happened.
RECORD = """
local function volatile()
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  redis.call('SET', KEYS[4], '1', 'PX', ARGV[4])
  return 'volatile'
end
if redis.call('EXISTS', KEYS[4]) == 1 then return 'known volatile' end
if ARGV[7] ~= '1' then return volatile() end
local answer = redis.call('HGET', KEYS[1], 'digest')
if answer then
  if answer ~= ARGV[1] then return volatile() end
  return 'known'
end
local candidate = redis.call('HGET', KEYS[2], 'digest')
if candidate and candidate ~= ARGV[1] then return volatile() end
local ttl = tonumber(ARGV[4])
if not candidate then
  redis.call('HSET', KEYS[2], 'messages', ARGV[2], 'digest', ARGV[1], 'ttl', ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
else
  local before = tonumber(redis.call('HGET', KEYS[2], 'ttl'))
  if before < ttl then ttl = before end
  redis.call('HSET', KEYS[2], 'ttl', ttl)
end
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('PEXPIRE', KEYS[3], redis.call('PTTL', KEYS[2]))
if ARGV[5] == '1' or redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[6]) then
  local messages = redis.call('HGET', KEYS[2], 'messages')
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'messages', messages, 'digest', ARGV[1], 'created_at', ARGV[8],
    'hits', 0)
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 'confirmed'
end
return 'candidate'
"""

SCAN_COUNT = 500


def _messages_json(reply: AgentReply) -> str:
    return json.dumps([[m.type, m.text] for m in reply.messages], ensure_ascii=False)


def _messages(raw: object) -> tuple[AgentMessage, ...]:
    return tuple(AgentMessage(str(t), str(x)) for t, x in json.loads(text(raw)))


class RedisResponses:
    """Confirmed answers by question key, for every host. Hit and miss counts are this
    host's (for its /metrics); the entries are everybody's."""

    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        *,
        default_ttl: float,
        confirmations: int = 2,
        cacheable_types: frozenset[str] = CACHEABLE_TYPES,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if confirmations < 1:
            raise ValueError(f"confirmations must be >= 1, got {confirmations}")
        if default_ttl <= 0:
            raise ValueError(f"default_ttl must be > 0, got {default_ttl}")
        self._client = client
        self._keys = keys
        self._default_ttl = float(default_ttl)
        self._confirmations = confirmations
        self._cacheable_types = cacheable_types
        self._wall_clock = wall_clock
        self._lookup = client.register_script(LOOKUP)
        self._record = client.register_script(RECORD)
        self.hits = 0
        self.misses = 0

    def _parts(self, key: str) -> list[str]:
        return [self._keys.shared("rc", key, n) for n in ("answer", "cand", "users", "volatile")]

    async def lookup(self, key: str, *, count_miss: bool = True) -> CachedAnswer | None:
        found = await call(self._lookup, self._parts(key)[:1])
        if found is None:
            self.misses += count_miss
            return None
        self.hits += 1
        return CachedAnswer(_messages(found[0]), float(text(found[1])), int(found[2]))

    async def holds(self, key: str, reply: AgentReply) -> bool:
        with mapped():
            digest = await self._client.hget(self._parts(key)[0], "digest")
        return digest is not None and text(digest) == _answer_digest(reply).hex()

    async def record(
        self,
        key: str,
        user: str,
        reply: AgentReply,
        ttl: float | None = None,
        *,
        trusted: bool = False,
    ) -> str:
        """What the agent answered ``user`` for ``key`` (cache/response.py ``record``).
        Returns what it did: "confirmed", "candidate", "volatile", "known", "known
        volatile", or "no evidence" (trouble, an empty answer, a TTL of 0)."""
        ttl = self._default_ttl if ttl is None else float(ttl)
        if ttl <= 0 or not reply.text.strip() or reply.has(*_TROUBLE_TYPES):
            return "no evidence"
        plain = all(m.type in self._cacheable_types for m in reply.messages)
        args = [
            _answer_digest(reply).hex(),
            _messages_json(reply),
            _user_digest(user).hex(),
            ms(ttl),
            int(trusted),
            self._confirmations,
            int(plain),
            repr(self._wall_clock()),
        ]
        return text(await call(self._record, self._parts(key), args))

    async def forget(self, key: str) -> bool:
        """Drop one key's answer and evidence; True if there was an answer to drop."""
        answer, *rest = self._parts(key)
        with mapped():
            had = await self._client.exists([answer])
            await self._client.delete([answer, *rest])
        return bool(had)

    async def flush(self) -> int:
        """Drop every answer, candidate and verdict of every host; how many keys went."""
        n = 0
        with mapped():
            async for found in self._client.scan_iter(
                match=f"{self._keys.prefix}{{rc:*", count=SCAN_COUNT
            ):
                n += await self._client.delete([found])
        return n


class RedisPendingContext:
    """Per user, the last exchange served from the cache, until their next agent turn."""

    def __init__(self, client: RedisClient, keys: Keys, *, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        self._client = client
        self._keys = keys
        self.ttl = ttl

    def _key(self, user: str) -> str:
        return self._keys.user(user_tag(user), "pending")

    async def remember(self, user: str, question: str, answer: str) -> None:
        value = json.dumps([question, answer], ensure_ascii=False)
        with mapped():
            await self._client.set(self._key(user), value, px=ms(self.ttl))

    async def has(self, user: str) -> bool:
        with mapped():
            return bool(await self._client.exists([self._key(user)]))

    async def take(self, user: str) -> tuple[str, str] | None:
        with mapped():
            raw = await self._client.getdel(self._key(user))
        if raw is None:
            return None
        question, answer = json.loads(text(raw))
        return str(question), str(answer)


__all__ = ["RedisPendingContext", "RedisResponses"]
