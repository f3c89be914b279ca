"""What limits look like to the rest of the daemon: verdicts and two small protocols.

Two kinds of limit, kept apart because they are shared differently:

- ``UserLimits``: per user. A token bucket on turns (``burst`` in a row, then ``per_minute``)
  and daily allowances: turns, seconds of speech-to-text, characters of text-to-speech. Every
  refusal drops one thing (a message, a transcription, a voice note) and says whether the user
  is owed the one polite notice of its window. Async: a backend shared by several hosts
  (Redis, issue 13) answers over the network, and a per-user count must be right across them.
- ``Budget``: the whole daemon's daily spend per upstream (agent calls, STT seconds, TTS
  characters, WhatsApp messages), for the operator. Synchronous: it is read before every
  billed call and charged after it; a shared backend keeps a local view and settles its
  deltas periodically, since a budget that is off by a few calls still does its job.

A day is the UTC calendar day (``utc_day``): every daily count starts again at 00:00 UTC.
Not a rolling 24 hours: that needs a time series per user, and a calendar day is what the
upstreams bill in and what an operator reads on a dashboard. The cost: a user can spend a
day's allowance just before midnight and another one just after.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

DAY = 86_400.0


def utc_day(wall: float) -> int:
    """The UTC calendar day (days since the epoch) of a wall-clock time."""
    return int(wall // DAY)


class Limit(enum.StrEnum):
    """What refused, per user; the ``limit`` label of ``wa_agentd_limited_total``."""

    RATE = "rate"
    DAILY_TURNS = "daily_turns"
    DAILY_STT_SECONDS = "daily_stt_seconds"
    DAILY_TTS_CHARACTERS = "daily_tts_characters"


class Upstream(enum.StrEnum):
    """What a global budget is spent on; the ``upstream`` label of the budget gauges."""

    AGENT = "agent"
    STT = "stt"
    TTS = "tts"
    WHATSAPP = "whatsapp"


@dataclass(frozen=True, slots=True)
class Verdict:
    """``allowed``, or refused by ``limit``; ``notify``: the first refusal of its window, so
    the user gets the one polite notice (later refusals in the window are silent)."""

    allowed: bool
    limit: Limit | None = None
    notify: bool = False


ALLOWED = Verdict(True)


class UserLimits(Protocol):
    async def admit(self, user: str) -> Verdict:
        """A new message of ``user``: within the rate bucket and the daily turn count? An
        allowed message is counted against both; a refused one against neither."""
        ...

    async def spend(self, user: str, limit: Limit, amount: float) -> Verdict:
        """Take ``amount`` of a daily allowance (``DAILY_STT_SECONDS``,
        ``DAILY_TTS_CHARACTERS``). Refused, and nothing taken, when it would go over."""
        ...

    async def first_notice(self, user: str, reason: str) -> bool:
        """True the first time this UTC day that ``user`` is told ``reason`` (a budget of the
        daemon is spent): one notice per user and day, then silence."""
        ...

    def refusals(self) -> Mapping[str, int]:
        """Refusals since start, by limit (this host's), for /metrics."""
        ...


class Budget(Protocol):
    def exhausted(self, upstream: Upstream) -> bool:
        """Whether today's budget for ``upstream`` is spent (always False without one)."""
        ...

    def charge(self, upstream: Upstream, amount: float) -> None:
        """Count ``amount`` spent on ``upstream`` today."""
        ...

    def used_ratios(self) -> Mapping[str, float]:
        """Per upstream, the share of today's budget spent (0 without a budget)."""
        ...
