"""Per-user limits shared by all hosts: a token bucket on turns and daily caps, one script.

The Redis counterpart of the per-host limits of issue 10 (daemon/limits.py): a user who
spreads a flood over several hosts meets one bucket and one day's counters. One script
decides and charges in the same step, on Redis' clock, so two hosts can't both spend the
last token.

- **Bucket** (turns only): ``burst`` tokens, refilled at ``refill_per_second``; a turn takes
  one. ``P{u}:bucket`` lives as long as a full refill takes (an absent bucket is a full one).
- **Day** (UTC, on Redis' clock): turns, STT seconds and TTS characters, each with a cap.
  ``P{u}:day`` holds the day number and its counters, and starts afresh when the day
  changes; it lives two days at most. A cap refuses the use that would exceed it, and
  charges nothing then.
- **Notice once**: a refusal says ``notify`` only the first time in its window (until the
  bucket has a token again; until the day ends), so the user gets one polite "slow down",
  not one per message.

``take`` is the whole interface: ``take(user, turn=True)`` at intake, ``take(user,
stt_seconds=x)`` before speech-to-text, ``take(user, tts_chars=n)`` before text-to-speech.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.state.redis.client import RedisClient
from daemon.state.redis.keys import Keys, user_tag
from daemon.state.redis.scripts import call, text

DAY_SECONDS = 86400

# KEYS: bucket, day. ARGV: burst, refill per ms, turns, stt seconds, tts chars, cap turns,
# cap stt, cap tts. Returns {allowed, limit, notify, retry after ms}.
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local today = tostring(math.floor(tonumber(t[1]) / 86400))
local to_midnight = (86400 - tonumber(t[1]) % 86400) * 1000
if redis.call('HGET', KEYS[2], 'day') ~= today then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'day', today)
end
redis.call('PEXPIRE', KEYS[2], 2 * 86400 * 1000)
local uses = {{'turns', ARGV[3], ARGV[6]}, {'stt_seconds', ARGV[4], ARGV[7]},
              {'tts_chars', ARGV[5], ARGV[8]}}
for _, use in ipairs(uses) do
  local amount = tonumber(use[2])
  if amount > 0 then
    local used = tonumber(redis.call('HGET', KEYS[2], use[1]) or '0')
    if used + amount > tonumber(use[3]) then
      local first = redis.call('HSETNX', KEYS[2], 'noticed:' .. use[1], '1')
      return {0, use[1], first, to_midnight}
    end
  end
end
if tonumber(ARGV[3]) > 0 then
  local burst, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
  local full_ms = math.ceil(burst / rate)
  local b = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'noticed')
  local tokens = tonumber(b[1] or burst)
  local at = tonumber(b[2] or now)
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  if tokens < 1 then
    redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now, 'noticed', '1')
    redis.call('PEXPIRE', KEYS[1], full_ms)
    return {0, 'burst', b[3] and 0 or 1, math.ceil((1 - tokens) / rate)}
  end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'at', now)
  redis.call('HDEL', KEYS[1], 'noticed')
  redis.call('PEXPIRE', KEYS[1], full_ms)
end
redis.call('HINCRBY', KEYS[2], 'turns', ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[2], 'stt_seconds', ARGV[4])
redis.call('HINCRBY', KEYS[2], 'tts_chars', ARGV[5])
return {1, '', 0, 0}
"""


@dataclass(frozen=True, slots=True)
class LimitRules:
    burst: int = 10  # turns a user may start at once
    refill_per_second: float = 1 / 30  # then one more every 30 s
    turns_per_day: int = 200
    stt_seconds_per_day: float = 1800.0
    tts_chars_per_day: int = 50_000

    def __post_init__(self) -> None:
        values = (self.burst, self.refill_per_second, self.turns_per_day,
                  self.stt_seconds_per_day, self.tts_chars_per_day)  # fmt: skip
        if min(values) <= 0:
            raise ValueError("limits must be > 0")


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: str = ""  # "burst", "turns", "stt_seconds" or "tts_chars" when refused
    notify: bool = False  # the first refusal of its window: say "slow down" once
    retry_after: float = 0.0  # seconds until it would be allowed again


class RedisLimits:
    def __init__(self, client: RedisClient, keys: Keys, rules: LimitRules = LimitRules()) -> None:
        self._keys = keys
        self.rules = rules
        self._take = client.register_script(TAKE)

    async def take(
        self, user: str, *, turn: bool = False, stt_seconds: float = 0.0, tts_chars: int = 0
    ) -> Verdict:
        """Charge the uses if every limit allows them; otherwise charge nothing."""
        if stt_seconds < 0 or tts_chars < 0:
            raise ValueError("uses must be >= 0")
        tag = user_tag(user)
        r = self.rules
        reply = await call(
            self._take,
            [self._keys.user(tag, "bucket"), self._keys.user(tag, "day")],
            [
                r.burst,
                repr(r.refill_per_second / 1000),
                int(turn),
                repr(float(stt_seconds)),
                tts_chars,
                r.turns_per_day,
                repr(r.stt_seconds_per_day),
                r.tts_chars_per_day,
            ],
        )
        allowed, limit, notify, wait_ms = reply
        return Verdict(bool(allowed), text(limit), bool(notify), int(wait_ms) / 1000)


__all__ = ["LimitRules", "RedisLimits", "Verdict"]
