"""Per-user limits and the daemon's budgets, on trio's MockClock (and a wall clock built on it,
so a test can step over midnight UTC)."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

import daemon.limits
from daemon.config import LimitsConfig
from daemon.limits import (
    Limit,
    MemoryBudget,
    MemoryUserLimits,
    Upstream,
    Verdict,
    utc_day,
)
from daemon.limits.bucket import TokenBucket

MIDNIGHT = 1_800_000_000.0 - 1_800_000_000.0 % 86_400  # 00:00 UTC of some day


def wall_from(start: float) -> object:
    return lambda: start + trio.current_time()


def limits(**config: object) -> MemoryUserLimits:
    return MemoryUserLimits(
        LimitsConfig(**config),  # type: ignore[arg-type]
        wall=wall_from(MIDNIGHT + 3600),  # type: ignore[arg-type]
    )


def test_the_public_surface() -> None:
    names = {n for n in dir(daemon.limits) if not n.startswith("_")}
    assert names >= {"ALLOWED", "Budget", "Limit", "Upstream", "UserLimits", "Verdict"}
    assert names >= {"utc_day", "MemoryBudget", "MemoryUserLimits"}
    assert [limit.value for limit in Limit] == [
        "rate",
        "daily_turns",
        "daily_stt_seconds",
        "daily_tts_characters",
    ]
    assert [u.value for u in Upstream] == ["agent", "stt", "tts", "whatsapp"]


def test_utc_day() -> None:
    assert utc_day(MIDNIGHT) == utc_day(MIDNIGHT + 86_399.9) == utc_day(MIDNIGHT - 0.1) + 1


def test_a_token_bucket_takes_a_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket.full(3, now=0.0)
    assert [bucket.take(0.0, burst=3, rate=0.1) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(9.9, burst=3, rate=0.1) is False
    assert bucket.take(10.0, burst=3, rate=0.1) is True
    assert bucket.take(1000.0, burst=3, rate=0.1) is True  # refills to the burst, not beyond
    assert bucket.tokens == pytest.approx(2.0)
    assert bucket.take(5.0, burst=3, rate=0.1) is True  # a clock stepping back refills nothing


async def test_200_messages_in_two_seconds_admit_burst_plus_refill(
    autojump_clock: trio.testing.MockClock,
) -> None:
    user_limits = limits(burst=10, per_minute=6)
    verdicts: list[Verdict] = []
    for _ in range(200):
        verdicts.append(await user_limits.admit("u1"))
        await trio.sleep(0.01)
    allowed = sum(v.allowed for v in verdicts)
    assert allowed <= 10 + math.ceil(2.0 * 6 / 60)
    assert allowed == 10
    refused = [v for v in verdicts if not v.allowed]
    assert {v.limit for v in refused} == {Limit.RATE}
    assert sum(v.notify for v in refused) == 1  # one "slow down" for the whole flood
    assert refused[0].notify
    assert user_limits.refusals() == {"rate": 190}


async def test_the_rate_notice_comes_again_only_after_notice_every(
    autojump_clock: trio.testing.MockClock,
) -> None:
    user_limits = limits(burst=1, per_minute=1, notice_every=600)
    assert (await user_limits.admit("u1")).allowed
    first = await user_limits.admit("u1")
    assert (first.allowed, first.notify) == (False, True)
    await trio.sleep(59)
    assert (await user_limits.admit("u1")).notify is False  # still limited, told already
    await trio.sleep(1)
    assert (await user_limits.admit("u1")).allowed  # a token came back
    assert (await user_limits.admit("u1")).notify is False  # limited again within 600 s
    await trio.sleep(600)
    assert (await user_limits.admit("u1")).allowed
    assert (await user_limits.admit("u1")).notify is True


async def test_other_users_have_their_own_buckets(autojump_clock: trio.testing.MockClock) -> None:
    user_limits = limits(burst=2, per_minute=1)
    assert [(await user_limits.admit("u1")).allowed for _ in range(3)] == [True, True, False]
    assert (await user_limits.admit("u2")).allowed


async def test_daily_turns_end_at_the_cap_with_one_notice_and_start_again_at_midnight_utc(
    autojump_clock: trio.testing.MockClock,
) -> None:
    user_limits = limits(burst=0, per_minute=0, daily_turns=3)
    results = [await user_limits.admit("u1") for _ in range(6)]
    assert [r.allowed for r in results] == [True, True, True, False, False, False]
    assert [r.notify for r in results[3:]] == [True, False, False]
    assert {r.limit for r in results[3:]} == {Limit.DAILY_TURNS}
    await trio.sleep(86_400 - 3600 - 1)  # 23:59:59 UTC
    assert not (await user_limits.admit("u1")).allowed
    await trio.sleep(1)  # 00:00 UTC: a new day
    assert (await user_limits.admit("u1")).allowed


async def test_refused_messages_do_not_count_towards_the_daily_turns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    user_limits = limits(burst=1, per_minute=6, daily_turns=2)
    assert (await user_limits.admit("u1")).allowed
    assert (await user_limits.admit("u1")).limit is Limit.RATE
    await trio.sleep(10)
    assert (await user_limits.admit("u1")).allowed  # the second turn of the day
    await trio.sleep(10)
    assert (await user_limits.admit("u1")).limit is Limit.DAILY_TURNS


async def test_daily_allowances_refuse_what_would_go_over_and_take_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    user_limits = limits(daily_stt_seconds=100, daily_tts_characters=1000)
    stt = Limit.DAILY_STT_SECONDS
    assert (await user_limits.spend("u1", stt, 60)).allowed
    over = await user_limits.spend("u1", stt, 50)
    assert (over.allowed, over.limit, over.notify) == (False, stt, True)
    assert (await user_limits.spend("u1", stt, 40)).allowed  # 100 in all: the cap itself
    assert (await user_limits.spend("u1", stt, 1)).notify is False  # told once a day
    assert (await user_limits.spend("u1", Limit.DAILY_TTS_CHARACTERS, 1000)).allowed
    assert (await user_limits.spend("u2", stt, 100)).allowed
    await trio.sleep(86_400)
    assert (await user_limits.spend("u1", stt, 100)).allowed
    assert user_limits.refusals() == {"daily_stt_seconds": 2}
    with pytest.raises(ValueError):
        await user_limits.spend("u1", Limit.RATE, 1)


async def test_a_limit_of_zero_is_off(autojump_clock: trio.testing.MockClock) -> None:
    user_limits = limits(
        burst=0, per_minute=0, daily_turns=0, daily_stt_seconds=0, daily_tts_characters=0
    )
    for _ in range(1000):
        assert (await user_limits.admit("u1")).allowed
    assert (await user_limits.spend("u1", Limit.DAILY_STT_SECONDS, 10**9)).allowed


async def test_first_notice_once_per_user_and_day(autojump_clock: trio.testing.MockClock) -> None:
    user_limits = limits()
    assert await user_limits.first_notice("u1", "budget_agent")
    assert not await user_limits.first_notice("u1", "budget_agent")
    assert await user_limits.first_notice("u1", "budget_stt")
    assert await user_limits.first_notice("u2", "budget_agent")
    await trio.sleep(86_400)
    assert await user_limits.first_notice("u1", "budget_agent")


async def test_the_users_kept_are_bounded(autojump_clock: trio.testing.MockClock) -> None:
    user_limits = limits(burst=1, per_minute=1, users=2)
    for user in ("u1", "u2", "u3"):
        assert (await user_limits.admit(user)).allowed
    assert len(user_limits) == 2
    # u1 was forgotten (least recently seen): it starts afresh, never wrongly refused.
    assert (await user_limits.admit("u1")).allowed
    assert not (await user_limits.admit("u3")).allowed


async def test_a_budget_is_spent_and_starts_again_the_next_utc_day(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = MemoryBudget(
        LimitsConfig(budget_agent_calls=3, budget_stt_seconds=60.0),
        wall=wall_from(MIDNIGHT + 10),  # type: ignore[arg-type]
    )
    assert not budget.exhausted(Upstream.AGENT)
    for _ in range(2):
        budget.charge(Upstream.AGENT, 1)
    assert not budget.exhausted(Upstream.AGENT)
    budget.charge(Upstream.AGENT, 1)
    budget.charge(Upstream.STT, 15)
    budget.charge(Upstream.TTS, 10**6)  # no TTS budget: never spent
    assert budget.exhausted(Upstream.AGENT)
    assert not budget.exhausted(Upstream.TTS)
    assert budget.used_ratios() == {"agent": 1.0, "stt": 0.25, "tts": 0.0, "whatsapp": 0.0}
    await trio.sleep(86_400)
    assert not budget.exhausted(Upstream.AGENT)
    assert budget.used_ratios()["agent"] == 0.0
