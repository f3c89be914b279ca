"""Limits and budgets kept in this process's memory (one host; tests on trio's MockClock).

Per user: one small record (a token bucket, today's counts, the notices already given) in an
LRU of ``users`` entries. A user pushed out by ``users`` others starts afresh: under that many
active users a limit errs towards serving, never towards refusing someone who did nothing.
The bucket runs on the monotonic clock (``clock``), the days on the wall clock (``wall``).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping

import trio
from cachetools import LRUCache

from daemon.config import LimitsConfig
from daemon.limits.base import ALLOWED, Limit, Upstream, Verdict, utc_day
from daemon.limits.bucket import TokenBucket

# Notices given today, as bits of one int: a set per user would cost ~200 bytes each.
_NOTICE_BITS: dict[str, int] = {}


def _notice_bit(reason: str) -> int:
    """The bit of a notice reason (a handful, fixed by the code: Limit values, budget names)."""
    bit = _NOTICE_BITS.get(reason)
    if bit is None:
        bit = _NOTICE_BITS[reason] = 1 << len(_NOTICE_BITS)
    return bit


class _User:
    """One user's counts: ~200 bytes (bench/bounds.py measures the whole map)."""

    __slots__ = ("bucket", "day", "noticed", "rate_noticed_at", "stt", "tts", "turns")

    def __init__(self, bucket: TokenBucket, day: int) -> None:
        self.bucket = bucket
        self.day = day
        self.turns = 0
        self.stt = 0.0  # daily allowances used today
        self.tts = 0.0
        self.noticed = 0  # _notice_bit()s of the daily notices given today
        self.rate_noticed_at = -math.inf

    def roll(self, day: int) -> None:
        """A new UTC day: today's counts and notices start from nothing."""
        if day != self.day:
            self.day, self.turns, self.stt, self.tts, self.noticed = day, 0, 0.0, 0.0, 0

    def notice(self, reason: str) -> bool:
        """True the first time today ``reason`` is noticed."""
        bit = _notice_bit(reason)
        if self.noticed & bit:
            return False
        self.noticed |= bit
        return True


class MemoryUserLimits:
    """``UserLimits`` (daemon/limits/base.py) for one host."""

    def __init__(
        self,
        config: LimitsConfig,
        *,
        clock: Callable[[], float] = trio.current_time,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._rate = config.per_minute / 60.0
        self._daily: dict[Limit, float] = {
            Limit.DAILY_STT_SECONDS: config.daily_stt_seconds,
            Limit.DAILY_TTS_CHARACTERS: float(config.daily_tts_characters),
        }
        self._clock = clock
        self._wall = wall
        self._users: LRUCache[str, _User] = LRUCache(maxsize=config.users)
        self._refusals: Counter[str] = Counter()

    def _user(self, key: str) -> _User:
        day = utc_day(self._wall())
        user = self._users.get(key)
        if user is None:
            user = self._users[key] = _User(
                TokenBucket.full(self._config.burst, self._clock()), day
            )
        user.roll(day)
        return user

    def _refuse(self, limit: Limit, notify: bool) -> Verdict:
        self._refusals[limit.value] += 1
        return Verdict(False, limit, notify)

    async def admit(self, user: str) -> Verdict:
        record, config = self._user(user), self._config
        if config.daily_turns and record.turns >= config.daily_turns:
            return self._refuse(Limit.DAILY_TURNS, record.notice(Limit.DAILY_TURNS.value))
        now = self._clock()
        if config.burst and not record.bucket.take(now, burst=config.burst, rate=self._rate):
            notify = now - record.rate_noticed_at >= config.notice_every
            if notify:
                record.rate_noticed_at = now
            return self._refuse(Limit.RATE, notify)
        record.turns += 1
        return ALLOWED

    async def spend(self, user: str, limit: Limit, amount: float) -> Verdict:
        cap = self._daily.get(limit)
        if cap is None:
            raise ValueError(f"{limit} is not a daily allowance")
        record = self._user(user)
        stt = limit is Limit.DAILY_STT_SECONDS
        used = record.stt if stt else record.tts
        if cap and used + amount > cap:
            return self._refuse(limit, record.notice(limit.value))
        if stt:
            record.stt = used + amount
        else:
            record.tts = used + amount
        return ALLOWED

    async def first_notice(self, user: str, reason: str) -> bool:
        return self._user(user).notice(reason)

    def refusals(self) -> Mapping[str, int]:
        return self._refusals

    def __len__(self) -> int:
        return len(self._users)


class MemoryBudget:
    """``Budget`` (daemon/limits/base.py) for one host: today's spend per upstream."""

    def __init__(self, config: LimitsConfig, *, wall: Callable[[], float] = time.time) -> None:
        self._limits: dict[Upstream, float] = {
            Upstream.AGENT: float(config.budget_agent_calls),
            Upstream.STT: config.budget_stt_seconds,
            Upstream.TTS: float(config.budget_tts_characters),
            Upstream.WHATSAPP: float(config.budget_whatsapp_messages),
        }
        self._wall = wall
        self._day = utc_day(wall())
        self._used: dict[Upstream, float] = dict.fromkeys(Upstream, 0.0)

    def _today(self) -> dict[Upstream, float]:
        day = utc_day(self._wall())
        if day != self._day:
            self._day = day
            self._used = dict.fromkeys(Upstream, 0.0)
        return self._used

    def exhausted(self, upstream: Upstream) -> bool:
        limit = self._limits[upstream]
        return limit > 0 and self._today()[upstream] >= limit

    def charge(self, upstream: Upstream, amount: float) -> None:
        self._today()[upstream] += amount

    def used_ratios(self) -> Mapping[str, float]:
        used = self._today()
        return {
            upstream.value: (used[upstream] / limit if limit > 0 else 0.0)
            for upstream, limit in self._limits.items()
        }
