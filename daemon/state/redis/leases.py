"""Per-user leases with fencing tokens: one host at a time runs a user's turns.

Why a lease per user rather than partitioned streams: see takeover.py's header.

A lease is ``P{u}:lease = "<fence> <holder>"`` with a PX expiry of ``ttl``; the holder is
one daemon process (host name, pid, random). Taking it increments the user's fencing token
``P{u}:fence`` (Kleppmann, "How to do distributed locking"; reference/redis.md §3). Every
write the holder then makes about the user — journal progress, attempts, the Agentforce
sequence number (sessions.py) — and the "may I send" check run in one script that first
compares the token with ``P{u}:fence`` and refuses (``LeaseLost``) when a newer one
exists. A holder paused past its lease (SIGSTOP, a stalled VM, a GC pause) that wakes up
after another host took the user over therefore neither writes nor sends.

Rules (checked by tests/redis/test_leases.py):

- ``acquire`` succeeds when nobody holds the lease, or when this holder already does (then
  it is renewed and keeps its token: a call that coredis retries is harmless). Otherwise it
  answers who holds it and for how long.
- Tokens only grow: a new token is ``max(last + 1, Redis' clock in µs)``, so even a fence
  key that expired (its TTL is a day, renewed on every acquire) never hands out a token a
  paused holder might still carry.
- ``renew`` keeps the lease (full ``ttl`` again) while the token is current. A lease that
  ran out while nobody took it is still the holder's (the token proves nobody else acted),
  so a short pause costs nothing.
- ``may_send`` is ``renew``: after it returns, the holder owns the user for a full ``ttl``,
  longer than a send's timeout ([redis] lease_seconds > [timeouts] whatsapp). A pause
  longer than that *between the check and the bytes leaving* is the one window where two
  hosts can send the same answer: the documented at-least-once window.
- ``release(lease, if_idle=True)`` lets go only when the user has no open turn left, in the
  same step, so a message accepted by another host meanwhile is never stranded: either the
  holder sees it and keeps the lease, or the other host's ``acquire`` after its accept
  succeeds.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass

import trio

from daemon.state.redis.client import RedisClient
from daemon.state.redis.errors import LEASE_LOST, LeaseLost
from daemon.state.redis.keys import Keys
from daemon.state.redis.scripts import Arg, call, ms, text

log = logging.getLogger(__name__)

FENCE_TTL = 86400.0

# Prepended to every fenced script: KEYS[1] is the fence key, ARGV[1] the caller's token.
FENCE_CHECK = f"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('{LEASE_LOST} fencing token ' .. ARGV[1] .. ' is not the newest')
end
"""

# acquire(lease key, fence key, holder, ttl ms, fence ttl ms) -> {1, fence} | {0, holder, pttl}
# Fences are handled as strings: Lua 5.1 prints numbers this large in exponent form.
ACQUIRE_FN = """
local function acquire(lease, fence, holder, ttl, fence_ttl)
  local current = redis.call('GET', lease)
  if current then
    local f, h = string.match(current, '^(%d+) (.+)$')
    if h == holder then
      redis.call('PEXPIRE', lease, ttl)
      return {1, f}
    end
    return {0, h, redis.call('PTTL', lease)}
  end
  local t = redis.call('TIME')
  local now = t[1] .. string.format('%06d', tonumber(t[2]))
  local last = redis.call('GET', fence)
  local f
  if last and tonumber(last) >= tonumber(now) then
    redis.call('INCR', fence)
    f = redis.call('GET', fence)
  else
    f = now
    redis.call('SET', fence, f)
  end
  redis.call('PEXPIRE', fence, fence_ttl)
  redis.call('SET', lease, f .. ' ' .. holder, 'PX', ttl)
  return {1, f}
end
"""

# KEYS: lease, fence. ARGV: holder, ttl ms, fence ttl ms.
ACQUIRE = ACQUIRE_FN + "return acquire(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])"

# KEYS: lease, fence. ARGV: holder, fence, ttl ms.
_OWN = f"""
local mine = ARGV[2] .. ' ' .. ARGV[1]
local current = redis.call('GET', KEYS[1])
if current ~= mine then
  if current or redis.call('GET', KEYS[2]) ~= ARGV[2] then
    return redis.error_reply('{LEASE_LOST} lease of ' .. mine .. ' is gone')
  end
end
"""
RENEW = _OWN + "redis.call('SET', KEYS[1], mine, 'PX', ARGV[3]) return 1"

# KEYS: lease, fence, open. ARGV: holder, fence, ttl ms, if idle (1/0).
# Returns 1 when let go, 0 when kept because open turns remain (renewed).
RELEASE = (
    _OWN
    + """
if ARGV[4] == '1' and redis.call('ZCARD', KEYS[3]) > 0 then
  redis.call('SET', KEYS[1], mine, 'PX', ARGV[3])
  return 0
end
redis.call('DEL', KEYS[1])
return 1
"""
)


def holder_id() -> str:
    """Who this process is, readable in ``GET <lease>``: host, pid, and 48 random bits
    (a pid is reused after a restart; the new process must not pass for the old one)."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(6)}"


@dataclass(frozen=True, slots=True)
class Lease:
    tag: str  # the user's tag (keys.user_tag)
    fence: int
    holder: str


@dataclass(frozen=True, slots=True)
class Held:
    """Somebody else's lease: who, and for how many more seconds."""

    holder: str
    seconds_left: float


def parse_acquired(reply: object, tag: str, holder: str) -> Lease | Held:
    """The reply of ``acquire`` (also takeover's claim) as a value."""
    assert isinstance(reply, list)
    if int(reply[0]) == 1:
        return Lease(tag, int(text(reply[1])), holder)
    return Held(text(reply[1]), max(0, int(reply[2])) / 1000)


class Leases:
    def __init__(
        self, client: RedisClient, keys: Keys, *, ttl: float, holder: str | None = None
    ) -> None:
        if ttl <= 0:
            raise ValueError("lease ttl must be > 0")
        self._keys = keys
        self.ttl = ttl
        self.holder = holder or holder_id()
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)

    async def acquire(self, tag: str) -> Lease | Held:
        keys = [self._keys.lease(tag), self._keys.fence(tag)]
        reply = await call(self._acquire, keys, [self.holder, ms(self.ttl), ms(FENCE_TTL)])
        return parse_acquired(reply, tag, self.holder)

    async def renew(self, lease: Lease) -> None:
        """Keep ``lease`` for a full ``ttl`` from now; ``LeaseLost`` when it is not ours."""
        keys = [self._keys.lease(lease.tag), self._keys.fence(lease.tag)]
        await call(self._renew, keys, [lease.holder, lease.fence, ms(self.ttl)])

    async def may_send(self, lease: Lease) -> None:
        """Right before a send: ``LeaseLost`` means another host owns the user now, and
        this host must not send. On return the lease is good for a full ``ttl``."""
        await self.renew(lease)

    async def release(self, lease: Lease, *, if_idle: bool = True) -> bool:
        """Let go of ``lease``. ``if_idle``: only when the user has no open turn left
        (otherwise the lease is kept, renewed, and this returns False: run the next one).
        ``if_idle=False`` lets go regardless (a deferred turn leaves the rest to later)."""
        tag = lease.tag
        keys = [self._keys.lease(tag), self._keys.fence(tag), self._keys.open(tag)]
        args: list[Arg] = [lease.holder, lease.fence, ms(self.ttl), int(if_idle)]
        return bool(await call(self._release, keys, args))

    async def keep(self, lease: Lease, on_lost: Callable[[], None]) -> None:
        """Renew ``lease`` every third of its ``ttl`` until cancelled; when it is lost, call
        ``on_lost`` (cancel the turn's scope) and return. Redis being down is not a loss:
        the next renewal tries again, and the fence still guards every write."""
        while True:
            await trio.sleep(self.ttl / 3)
            try:
                await self.renew(lease)
            except LeaseLost:
                log.warning("lease lost: another host took this user over")
                on_lost()
                return
            except Exception as exc:  # RedisUnavailable: keep trying while the turn runs
                log.warning("lease renewal failed: %s", exc)


__all__ = ["FENCE_CHECK", "Held", "Lease", "Leases", "holder_id"]
