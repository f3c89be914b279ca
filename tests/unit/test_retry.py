"""Retry policy, backoff, Retry-After, budget and the retry loop."""

from __future__ import annotations

import email.utils
import logging
import random
from typing import NoReturn

import httpx
import pytest
import trio
import trio.testing

from daemon.errors import (
    Reason,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from daemon.resilience.breaker import CircuitOpen
from daemon.resilience.retry import (
    MAX_RETRY_AFTER,
    Policy,
    RetryBudget,
    backoff,
    retry_after_seconds,
    retry_policy,
    retryable,
    was_sent,
    with_retries,
)

# ------------------------------------------------------------------ backoff


@pytest.mark.parametrize("attempt", range(7))
def test_full_jitter_stays_within_bounds_and_spreads(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling = min(8.0, 0.5 * 2**attempt)
    draws = [backoff(attempt, rng=rng) for _ in range(4000)]
    assert all(0.0 <= d <= ceiling for d in draws)
    # Full jitter is uniform over the whole range, not clustered near the ceiling.
    assert min(draws) < 0.05 * ceiling
    assert max(draws) > 0.95 * ceiling
    assert sum(draws) / len(draws) == pytest.approx(ceiling / 2, rel=0.05)


def test_backoff_caps_large_attempts_without_overflow() -> None:
    rng = random.Random(0)
    assert all(backoff(5000, base=1.0, cap=3.0, rng=rng) <= 3.0 for _ in range(100))
    with pytest.raises(ValueError):
        backoff(-1, rng=rng)


# ------------------------------------------------------------------ Retry-After

NOW = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example date)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("99999", MAX_RETRY_AFTER),
        (email.utils.formatdate(NOW + 42, usegmt=True), 42.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),
        ("Sun, 06 Nov 1994 08:48:37 GMT", 0.0),  # in the past
        ("Sunday, 06-Nov-94 08:50:07 GMT", 30.0),  # RFC 850
        ("Sun Nov  6 08:50:37 1994", 60.0),  # asctime, no zone: GMT
        ("soon", None),
        ("", None),
        ("Sun, 06 Nov 1994 25:99:37 GMT", None),
        ("1e3", None),
        ("inf", None),
    ],
)
def test_retry_after_forms(value: str, expected: float | None) -> None:
    assert retry_after_seconds({"retry-after": value}, NOW) == expected


def test_retry_after_header_name_is_case_insensitive() -> None:
    assert retry_after_seconds({"Retry-After": "7"}, NOW) == 7.0
    assert retry_after_seconds(httpx.Headers({"RETRY-AFTER": "8"}), NOW) == 8.0
    assert retry_after_seconds({"content-type": "text/plain"}, NOW) is None


# ------------------------------------------------------------------ budget


async def test_budget_allows_ratio_of_requests(autojump_clock: trio.testing.MockClock) -> None:
    budget = RetryBudget(ratio=0.1, min_per_second=0.0, window=10.0)
    assert not budget.try_retry()  # no requests, no floor
    for _ in range(20):
        budget.record_request()
    assert budget.try_retry()
    assert budget.try_retry()
    assert not budget.try_retry()  # 20 requests x 0.1 = 2 retries
    autojump_clock.jump(10.5)
    for _ in range(10):
        budget.record_request()  # the old deposits and withdrawals have expired
    assert budget.try_retry()
    assert not budget.try_retry()


async def test_budget_floor_refills_over_time(autojump_clock: trio.testing.MockClock) -> None:
    budget = RetryBudget(ratio=0.1, min_per_second=1.0, window=10.0)
    granted = sum(budget.try_retry() for _ in range(50))
    assert granted == 10  # 1/s over a 10 s window, with no requests at all
    autojump_clock.jump(5.0)
    assert not budget.try_retry()
    autojump_clock.jump(5.5)
    assert budget.balance() == pytest.approx(10.0)
    assert budget.try_retry()


# ------------------------------------------------------------------ which errors


def _sent_timeout() -> UpstreamError:
    return UpstreamTimeout("agentforce", 30.0)


SLOW, PAIR = Reason.SLOW_DOWN, Reason.USER_BUSY


@pytest.mark.parametrize(
    ("exc", "idempotent", "sent", "expected"),
    [
        # A send whose outcome is unknown is not blindly repeated.
        pytest.param(_sent_timeout(), False, True, False, id="post-timeout-after-send"),
        pytest.param(
            UpstreamUnavailable("whatsapp", "HTTP 500", status=500), False, True, False,
            id="post-500",
        ),
        pytest.param(
            UpstreamUnavailable("agentforce", "HTTP 503", status=503), False, True, False,
            id="post-503-without-reason-is-unknown",
        ),
        pytest.param(
            UpstreamUnavailable("agentforce", "ConnectError"), False, False, True,
            id="connect-error-before-send",
        ),
        pytest.param(_sent_timeout(), False, False, True, id="connect-timeout-before-send"),
        pytest.param(
            UpstreamUnavailable("whatsapp", "ReadTimeout"), True, True, True, id="get-unavailable"
        ),
        pytest.param(_sent_timeout(), True, True, True, id="get-timeout"),
        # "Not processed": safe to repeat even for a send, whichever upstream said it.
        pytest.param(
            UpstreamUnavailable("agentforce", "busy", status=423, reason=SLOW), False, True,
            True, id="agentforce-423",
        ),
        pytest.param(
            UpstreamUnavailable("agentforce", "slow down", status=429, reason=SLOW), False,
            True, True, id="429",
        ),
        pytest.param(
            UpstreamUnavailable("agentforce", "unavailable", status=503, reason=SLOW), False,
            True, True, id="503",
        ),
        pytest.param(
            UpstreamRejected("twilio", "HTTP 429", status=429, reason=SLOW), False, True, True,
            id="reason-beats-class",
        ),
        pytest.param(
            UpstreamUnavailable("whatsapp", "throughput", status=400, code="130429", reason=SLOW),
            False, True, True, id="graph-throughput",
        ),
        pytest.param(
            UpstreamUnavailable("whatsapp", "pair rate", status=400, code="131056", reason=PAIR),
            False, True, True, id="graph-pair-rate",
        ),
        pytest.param(
            UpstreamUnavailable("elevenlabs-tts", "busy", status=429, reason=SLOW), False, True,
            True, id="elevenlabs-busy",
        ),
        # Provider codes alone decide nothing here any more: the client sets the reason.
        pytest.param(
            UpstreamUnavailable("whatsapp", "throughput", status=400, code="130429"), False,
            True, False, id="code-without-reason-is-not-read",
        ),
        pytest.param(
            UpstreamRejected("twilio", "HTTP 429", status=429), False, True, False,
            id="429-status-without-reason-is-not-read",
        ),
        # Reasons that no repeat can fix, even when the class or idempotence would allow it.
        pytest.param(
            UpstreamRejected("whatsapp", "window closed", status=400, reason=Reason.RECIPIENT),
            False, True, False, id="recipient",
        ),
        pytest.param(
            UpstreamUnavailable("twilio", "bad number", reason=Reason.RECIPIENT), True, False,
            False, id="recipient-even-if-unsent-and-idempotent",
        ),
        pytest.param(
            UpstreamUnavailable("whatsapp", "no such media", reason=Reason.MEDIA_GONE), True,
            True, False, id="media-gone",
        ),
        pytest.param(
            UpstreamRejected("agentforce", "bad request", status=400), True, True, False,
            id="400",
        ),
        pytest.param(
            UpstreamRejected("twilio", "media URL refused"), True, False, False,
            id="refused-locally",
        ),
        pytest.param(CircuitOpen("agentforce", 12.0), True, False, False, id="circuit-open"),
    ],
)  # fmt: skip
def test_retryable(exc: UpstreamError, idempotent: bool, sent: bool, expected: bool) -> None:
    assert retryable(exc, idempotent=idempotent, sent=sent) is expected


def _raised_from(cause: BaseException) -> UpstreamUnavailable:
    try:
        try:
            raise cause
        except httpx.TransportError as exc:
            raise UpstreamUnavailable("whatsapp", type(exc).__name__) from exc
    except UpstreamUnavailable as err:
        return err


def test_was_sent_reads_the_cause_chain_and_the_explicit_flag() -> None:
    assert not was_sent(_raised_from(httpx.ConnectError("refused")))
    assert not was_sent(_raised_from(httpx.ConnectTimeout("slow")))
    assert not was_sent(_raised_from(httpx.PoolTimeout("full")))
    assert was_sent(_raised_from(httpx.ReadTimeout("slow")))
    assert was_sent(_raised_from(httpx.RemoteProtocolError("closed")))
    assert was_sent(UpstreamTimeout("agentforce", 30.0))
    flagged = UpstreamTimeout("agentforce", 30.0)
    flagged.sent = False
    assert not was_sent(flagged)


# ------------------------------------------------------------------ policy


def test_policy_pair_rate_waits_four_to_the_x() -> None:
    policy = retry_policy(idempotent=False, rng=random.Random(0), max_delay=100.0)
    exc = UpstreamUnavailable("twilio", "pair rate", status=429, reason=Reason.USER_BUSY)
    assert [policy(exc, x) for x in range(4)] == [1.0, 4.0, 16.0, 64.0]
    # Beyond max_delay (30 s by default): give up rather than sleep through the turn.
    assert retry_policy(idempotent=False, rng=random.Random(0))(exc, 3) is None


def test_policy_retry_after_beats_the_pair_rate_schedule() -> None:
    policy = retry_policy(idempotent=False, rng=random.Random(0))
    exc = UpstreamUnavailable("whatsapp", "pair rate", status=400, reason=Reason.USER_BUSY)
    exc.retry_after = 6.0  # the upstream knows its own window better than the 4**x rule
    assert [policy(exc, x) for x in range(3)] == [6.0, 6.0, 6.0]


def test_policy_ignores_an_unusable_retry_after() -> None:
    policy = retry_policy(idempotent=True, rng=random.Random(0), base=0.5, cap=8.0)
    exc = UpstreamUnavailable("elevenlabs-tts", "busy", status=429, reason=Reason.SLOW_DOWN)
    exc.retry_after = float("nan")
    delay = policy(exc, 0)
    assert delay is not None and 0.0 <= delay <= 0.5  # the backoff, not the NaN


def test_policy_honours_retry_after_and_max_delay() -> None:
    policy = retry_policy(idempotent=False, rng=random.Random(0), max_delay=10.0)
    exc = UpstreamUnavailable("agentforce", "busy", status=423, reason=Reason.SLOW_DOWN)
    exc.retry_after = 2.5
    assert policy(exc, 0) == 2.5
    exc.retry_after = 60.0
    assert policy(exc, 0) is None  # longer than we are willing to wait: give up now
    # Parsed from a header, it is capped before the policy sees it.
    exc.retry_after = retry_after_seconds({"Retry-After": "86400"}, NOW)
    assert exc.retry_after == MAX_RETRY_AFTER
    assert retry_policy(idempotent=False, rng=random.Random(0), max_delay=1e9)(exc, 0) == 300.0


def test_policy_backs_off_with_jitter_and_refuses_unsafe() -> None:
    policy = retry_policy(idempotent=True, rng=random.Random(0), base=0.5, cap=8.0)
    exc = UpstreamUnavailable("whatsapp", "HTTP 502", status=502)
    delays = [policy(exc, 3) for _ in range(50)]
    assert all(d is not None and 0.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 1
    send = retry_policy(idempotent=False, rng=random.Random(0))
    assert send(UpstreamTimeout("agentforce", 30.0), 0) is None
    assert send(_raised_from(httpx.ConnectError("refused")), 0) is not None


# ------------------------------------------------------------------ with_retries


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await trio.lowlevel.checkpoint()


def always(delay: float | None) -> Policy:
    return lambda exc, attempt: delay


async def test_with_retries_returns_once_an_attempt_succeeds() -> None:
    attempts: list[int] = []
    rec = Recorder()

    async def call(attempt: int) -> str:
        attempts.append(attempt)
        if attempt < 2:
            raise UpstreamUnavailable("agentforce", "busy", status=423)
        return "reply"

    got = await with_retries(call, policy=always(0.25), budget=None, sleep=rec.sleep)
    assert got == "reply"
    assert attempts == [0, 1, 2]
    assert rec.sleeps == [0.25, 0.25]


async def test_with_retries_respects_max_attempts_and_raises_the_last_error() -> None:
    attempts: list[int] = []
    rec = Recorder()

    async def call(attempt: int) -> NoReturn:
        attempts.append(attempt)
        raise UpstreamUnavailable("whatsapp", f"failure {attempt}", status=503)

    with pytest.raises(UpstreamUnavailable) as raised:
        await with_retries(call, policy=always(1.0), budget=None, max_attempts=3, sleep=rec.sleep)
    assert attempts == [0, 1, 2]
    assert rec.sleeps == [1.0, 1.0]
    assert raised.value.message == "failure 2"


async def test_with_retries_sleeps_the_policys_delays() -> None:
    rec = Recorder()
    policy = retry_policy(idempotent=False, rng=random.Random(0), max_delay=100.0)

    async def call(attempt: int) -> NoReturn:
        raise UpstreamUnavailable("whatsapp", "pair rate", status=400, reason=Reason.USER_BUSY)

    with pytest.raises(UpstreamUnavailable):
        await with_retries(call, policy=policy, budget=None, max_attempts=4, sleep=rec.sleep)
    assert rec.sleeps == [1.0, 4.0, 16.0]


async def test_with_retries_gives_up_when_policy_says_so() -> None:
    rec = Recorder()
    calls = 0

    async def call(attempt: int) -> NoReturn:
        nonlocal calls
        calls += 1
        raise UpstreamTimeout("agentforce", 30.0)  # a send that may have been processed

    policy = retry_policy(idempotent=False, rng=random.Random(0))
    with pytest.raises(UpstreamTimeout):
        await with_retries(call, policy=policy, budget=None, sleep=rec.sleep)
    assert (calls, rec.sleeps) == (1, [])


async def test_with_retries_stops_when_the_budget_is_spent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = RetryBudget(ratio=0.5, min_per_second=0.0)
    rec = Recorder()
    calls = 0

    async def call(attempt: int) -> NoReturn:
        nonlocal calls
        calls += 1
        raise UpstreamUnavailable("agentforce", "busy", status=429)

    with pytest.raises(UpstreamUnavailable):
        await with_retries(call, policy=always(0.1), budget=budget, max_attempts=5, sleep=rec.sleep)
    # One request deposits 0.5 token: not enough for a single retry.
    assert (calls, rec.sleeps) == (1, [])
    budget.record_request()  # a second request: 1.0 token in all
    calls = 0
    with pytest.raises(UpstreamUnavailable):
        await with_retries(call, policy=always(0.1), budget=budget, max_attempts=5, sleep=rec.sleep)
    assert calls == 2  # 1.5 tokens: one retry, then refused


async def test_with_retries_does_not_retry_other_exceptions() -> None:
    calls = 0

    async def call(attempt: int) -> NoReturn:
        nonlocal calls
        calls += 1
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await with_retries(call, policy=always(0.0), budget=None, sleep=Recorder().sleep)
    assert calls == 1


async def test_with_retries_really_sleeps_by_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def call(attempt: int) -> int:
        if attempt == 0:
            raise UpstreamUnavailable("elevenlabs-tts", "busy", status=429, code="system_busy")
        return attempt

    before = trio.current_time()
    with trio.fail_after(10):
        assert await with_retries(call, policy=always(3.0), budget=None) == 1
    assert trio.current_time() - before == pytest.approx(3.0)


async def test_with_retries_logs_each_retry_without_the_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def call(attempt: int) -> str:
        if attempt == 0:
            raise UpstreamUnavailable("agentforce", "session 5f3a secret text", status=423)
        return "ok"

    with caplog.at_level(logging.INFO, logger="daemon.resilience.retry"):
        await with_retries(call, policy=always(0.5), budget=None, sleep=Recorder().sleep)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "agentforce" in lines[0] and "0.50s" in lines[0] and "status=423" in lines[0]
    assert "secret" not in lines[0]


async def test_budget_memory_is_bounded_without_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Healthy upstreams: requests only, never a retry. The memory must still be the window.
    budget = RetryBudget(ratio=0.1, window=10.0)
    for _ in range(1000):
        budget.record_request()
        await trio.sleep(0.1)
    assert len(budget) <= 101


async def test_with_retries_reports_outcomes() -> None:
    seen: list[str] = []

    async def fails(attempt: int) -> NoReturn:
        raise UpstreamUnavailable("whatsapp", "HTTP 503", status=503, reason=Reason.SLOW_DOWN)

    async def first_try(attempt: int) -> str:
        return "ok"

    with pytest.raises(UpstreamUnavailable):
        await with_retries(
            fails, policy=always(0.1), budget=None, sleep=Recorder().sleep, on_outcome=seen.append
        )
    assert seen == ["retried", "retried", "gave_up"]  # three attempts, then out of them
    seen.clear()
    await with_retries(first_try, policy=always(0.1), budget=None, on_outcome=seen.append)
    assert seen == []  # nothing to say about a call that was never retried
