"""Per-user limits shared by all hosts: ``UserLimits`` (daemon/limits/base.py) in Redis.

The same rules as ``MemoryUserLimits`` (daemon/limits/memory.py), decided and charged in
one script per call on Redis' clock, so that a user who spreads a flood over several hosts
meets one bucket and one day's counts, and two hosts can't both spend the last token:

- ``admit``: today's turns first (``[limits] daily_turns``), then the token bucket
  (``burst``, ``per_minute``); an allowed message counts against both, a refused one
  against neither. A rate refusal notifies at most once every ``notice_every`` seconds.
- ``spend``: a daily allowance (STT seconds, TTS characters); refused, and nothing taken,
  when it would go over.
- ``first_notice``: once per user, reason and UTC day. Daily refusals notify the same way.

Keys, under the user's tag: ``P{u}:bucket`` (tokens, last refill, last rate notice; lives
as long as a refill or a notice window takes, whichever is longer: an absent bucket is a
full one) and ``P{u}:day`` (the UTC day number on Redis' clock, today's counts and the
notices given; starts afresh when the day changes, lives two days at most). ``[limits]
users`` bounds the in-memory map only: here the TTLs are the bound. The refusal counts of
``refusals()`` are this host's, as /metrics wants them.

The daemon's global daily budgets (``Budget``) are not here: that protocol is synchronous
(read before every billed call), so a shared one keeps a local view and settles deltas
periodically (base.py) — part of wiring the several hosts, not a primitive.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from daemon.config import LimitsConfig
from daemon.limits.base import ALLOWED, Limit, Verdict
from daemon.state.redis.client import RedisClient
from daemon.state.redis.keys import Keys, user_tag
from daemon.state.redis.scripts import call, text

# Sets now (ms on Redis' clock); rolls KEYS[2], the day hash, over to today.
_NOW_AND_DAY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local today = tostring(math.floor(tonumber(t[1]) / 86400))
if redis.call('HGET', KEYS[2], 'day') ~= today then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'day', today)
end
redis.call('PEXPIRE', KEYS[2], 2 * 86400 * 1000)
"""

# KEYS: bucket, day. ARGV: burst, refill per ms, daily turns, notice every ms.
# Returns {allowed, limit, notify}.
ADMIT = (
    _NOW_AND_DAY
    + """
local cap = tonumber(ARGV[3])
if cap > 0 and tonumber(redis.call('HGET', KEYS[2], 'turns') or '0') >= cap then
  return {0, 'daily_turns', redis.call('HSETNX', KEYS[2], 'noticed:daily_turns', '1')}
end
local burst = tonumber(ARGV[1])
if burst > 0 then
  local rate, every = tonumber(ARGV[2]), tonumber(ARGV[4])
  local keep = math.max(math.ceil(burst / rate), every)
  local b = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'noticed_at')
  local tokens = tonumber(b[1] or burst)
  local at = tonumber(b[2] or now)
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  if tokens < 1 then
    local notify = 0
    if not b[3] or now - tonumber(b[3]) >= every then
      notify = 1
      redis.call('HSET', KEYS[1], 'noticed_at', now)
    end
    redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
    redis.call('PEXPIRE', KEYS[1], keep)
    return {0, 'rate', notify}
  end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'at', now)
  redis.call('PEXPIRE', KEYS[1], keep)
end
redis.call('HINCRBY', KEYS[2], 'turns', 1)
return {1, '', 0}
"""
)

# KEYS: bucket (unused), day. ARGV: limit, amount, cap. Returns {allowed, notify}.
SPEND = (
    _NOW_AND_DAY
    + """
local cap = tonumber(ARGV[3])
local used = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if cap > 0 and used + tonumber(ARGV[2]) > cap then
  return {0, redis.call('HSETNX', KEYS[2], 'noticed:' .. ARGV[1], '1')}
end
redis.call('HINCRBYFLOAT', KEYS[2], ARGV[1], ARGV[2])
return {1, 0}
"""
)

# KEYS: bucket (unused), day. ARGV: reason. 1 the first time today.
NOTICE = _NOW_AND_DAY + "return redis.call('HSETNX', KEYS[2], 'noticed:' .. ARGV[1], '1')"


class RedisUserLimits:
    """``UserLimits`` for several hosts."""

    def __init__(self, client: RedisClient, keys: Keys, config: LimitsConfig) -> None:
        self._keys = keys
        self._config = config
        self._daily: dict[Limit, float] = {
            Limit.DAILY_STT_SECONDS: config.daily_stt_seconds,
            Limit.DAILY_TTS_CHARACTERS: float(config.daily_tts_characters),
        }
        self._admit = client.register_script(ADMIT)
        self._spend = client.register_script(SPEND)
        self._notice = client.register_script(NOTICE)
        self._refusals: Counter[str] = Counter()

    def _user_keys(self, user: str) -> list[str]:
        tag = user_tag(user)
        return [self._keys.user(tag, "bucket"), self._keys.user(tag, "day")]

    def _refuse(self, limit: Limit, notify: object) -> Verdict:
        self._refusals[limit.value] += 1
        return Verdict(False, limit, bool(notify))

    async def admit(self, user: str) -> Verdict:
        c = self._config
        args = [c.burst, repr(c.per_minute / 60_000), c.daily_turns, round(c.notice_every * 1000)]
        allowed, limit, notify = await call(self._admit, self._user_keys(user), args)
        return ALLOWED if allowed else self._refuse(Limit(text(limit)), notify)

    async def spend(self, user: str, limit: Limit, amount: float) -> Verdict:
        cap = self._daily.get(limit)
        if cap is None:
            raise ValueError(f"{limit} is not a daily allowance")
        args = [limit.value, repr(float(amount)), repr(cap)]
        allowed, notify = await call(self._spend, self._user_keys(user), args)
        return ALLOWED if allowed else self._refuse(limit, notify)

    async def first_notice(self, user: str, reason: str) -> bool:
        return bool(await call(self._notice, self._user_keys(user), [reason]))

    def refusals(self) -> Mapping[str, int]:
        return self._refusals


__all__ = ["RedisUserLimits"]
