"""The Guard: per-attempt timeout, circuit breaker and retries around one upstream call.

Time is trio's MockClock (autojump_clock): waits, timeouts and Retry-After are exact and cost
no real time. The calls are fakes; every test still runs under ``trio.fail_after``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import NoReturn

import pytest
import trio
import trio.testing

from daemon.config import Settings
from daemon.errors import Reason, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from daemon.instrumentation.events import Event, RetryDecided
from daemon.instrumentation.hooks import Hook, Hooks, ignore
from daemon.observe.eventlog import EventLog
from daemon.observe.metrics import Metrics
from daemon.resilience.breaker import CircuitBreaker, CircuitOpen, State
from daemon.resilience.guard import Guard
from daemon.resilience.retry import RetryBudget
from daemon.runtime import build_guard

AGENT, TTS = "agentforce", "elevenlabs-tts"
LIMIT = 5.0  # seconds (virtual) any one test may take; far above what each needs


def breaker(name: str, *, min_calls: int = 10) -> CircuitBreaker:
    return CircuitBreaker(
        name,
        window=10,
        min_calls=min_calls,
        slow_call_seconds=100.0,
        open_seconds=30.0,
        half_open_timeout=10.0,
        half_open_max_seconds=60.0,
    )


class Retries:
    """Collects the guard's ``RetryDecided`` events."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, event: Event) -> None:
        assert isinstance(event, RetryDecided)
        self.seen.append((event.upstream, event.outcome))


def guard(
    *,
    min_calls: int = 10,
    new_budget: Callable[[], RetryBudget] | None = None,
    max_attempts: int = 3,
    hook: Hook = ignore,
) -> Guard:
    return Guard(
        {name: breaker(name, min_calls=min_calls) for name in (AGENT, TTS)},
        new_budget=new_budget,
        max_attempts=max_attempts,
        rng=random.Random(7),
        hook=hook,
    )


class Script:
    """A fake upstream call: raises or returns what it is told to, attempt by attempt, and
    notes when each attempt started."""

    def __init__(self, *steps: UpstreamError | float | str) -> None:
        self.steps = list(steps)  # an error to raise, seconds to hang, or a result
        self.started: list[float] = []

    async def __call__(self) -> str:
        self.started.append(trio.current_time())
        step = self.steps.pop(0) if self.steps else "ok"
        if isinstance(step, UpstreamError):
            raise step
        if isinstance(step, float):
            await trio.sleep(step)
            return "late"
        return step


def busy(retry_after: float | None = None) -> UpstreamUnavailable:
    exc = UpstreamUnavailable(AGENT, "HTTP 423", status=423, reason=Reason.SLOW_DOWN)
    exc.retry_after = retry_after
    return exc


def down() -> UpstreamUnavailable:
    return UpstreamUnavailable(TTS, "HTTP 500", status=500)


# ------------------------------------------------------------------ retries and the breaker


async def test_every_attempt_is_seen_by_the_breaker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    g = guard()
    call = Script(down(), down(), "audio")
    with trio.fail_after(LIMIT):
        assert await g.call(TTS, 10.0, call, idempotent=True) == "audio"
    snap = g.breakers[TTS].snapshot()
    # Retry outside, breaker inside (anchors.md §C.2): three calls, two failures recorded.
    assert (snap.calls, snap.failure_rate) == (3, pytest.approx(2 / 3))


async def test_an_open_circuit_fails_at_once_and_is_not_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    retries = Retries()
    g = guard(min_calls=2, hook=retries)
    with trio.fail_after(LIMIT):
        for _ in range(2):  # max_attempts 1 per call here: two failures open it
            with pytest.raises(UpstreamUnavailable):
                await g.call(TTS, 10.0, Script(down()), idempotent=False)
        assert g.breakers[TTS].state is State.OPEN
        call = Script("audio")
        before = trio.current_time()
        with pytest.raises(CircuitOpen) as raised:
            await g.call(TTS, 10.0, call, idempotent=True)
    assert call.started == []  # never called
    assert trio.current_time() == before  # no backoff slept either
    assert raised.value.sent is False
    assert retries.seen == []
    assert g.open_circuits() == [f"{TTS} circuit open"]


async def test_the_circuit_opening_mid_call_stops_the_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    g = guard(min_calls=2, max_attempts=5)
    call = Script(down(), down(), "audio")
    with trio.fail_after(LIMIT), pytest.raises(CircuitOpen):
        await g.call(TTS, 10.0, call, idempotent=True)
    assert len(call.started) == 2  # the third attempt met the open circuit, not the upstream


# ------------------------------------------------------------------ timeouts


async def test_a_hanging_call_times_out_into_upstream_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    g = guard()
    call = Script(1e9)  # a send that never answers
    before = trio.current_time()
    with trio.fail_after(LIMIT * 10), pytest.raises(UpstreamTimeout) as raised:
        await g.call(AGENT, 7.0, call, idempotent=False)
    assert (raised.value.upstream, raised.value.seconds) == (AGENT, 7.0)
    assert trio.current_time() - before == pytest.approx(7.0)
    # It may have been processed: an unknown outcome is not repeated.
    assert len(call.started) == 1
    assert g.breakers[AGENT].snapshot().failure_rate == 1.0


async def test_each_attempt_has_its_own_timeout(autojump_clock: trio.testing.MockClock) -> None:
    g = guard()
    # Hangs past the 3 s timeout, then takes 2.5 s: fine for an attempt of its own, but past
    # the 3 s mark of the whole call. Only a per-attempt scope lets the second one finish.
    call = Script(1e9, 2.5)
    with trio.fail_after(LIMIT * 10):
        assert await g.call(TTS, 3.0, call, idempotent=True) == "late"
    first, second = call.started
    assert second - first >= 3.0
    assert trio.current_time() - second == pytest.approx(2.5)


# ------------------------------------------------------------------ Retry-After


async def test_retry_after_is_waited_before_the_next_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    g = guard()
    call = Script(busy(retry_after=7.0), "reply")
    start = trio.current_time()
    with trio.fail_after(LIMIT * 10):
        # A send: safe to repeat only because the upstream said it did not process it.
        assert await g.call(AGENT, 30.0, call, idempotent=False) == "reply"
    assert call.started == [pytest.approx(start), pytest.approx(start + 7.0)]


async def test_a_retry_after_longer_than_the_turn_can_wait_gives_up_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    g = guard()
    call = Script(busy(retry_after=120.0), "reply")
    start = trio.current_time()
    with trio.fail_after(LIMIT), pytest.raises(UpstreamUnavailable):
        await g.call(AGENT, 30.0, call, idempotent=False)
    assert len(call.started) == 1
    assert trio.current_time() == start


# ------------------------------------------------------------------ budgets and the hook


async def test_budgets_are_per_upstream(autojump_clock: trio.testing.MockClock) -> None:
    retries = Retries()
    # One token each in a 10 s window, no share of traffic: easy to spend, easy to see.
    g = guard(
        new_budget=lambda: RetryBudget(ratio=0.0, min_per_second=0.1, window=10.0),
        hook=retries,
    )
    assert g.budget(AGENT) is not g.budget(TTS)
    with trio.fail_after(LIMIT):
        with pytest.raises(UpstreamUnavailable):
            await g.call(AGENT, 30.0, Script(busy(), busy(), busy()), idempotent=False)
        # Agentforce spent its token; ElevenLabs still has its own.
        assert await g.call(TTS, 10.0, Script(down(), "audio"), idempotent=True) == "audio"
    assert retries.seen == [
        (AGENT, "retried"),
        (AGENT, "budget_spent"),
        (AGENT, "gave_up"),
        (TTS, "retried"),
        (TTS, "recovered"),
    ]


async def test_without_budgets_retries_are_only_bounded_by_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    g = guard(new_budget=None, max_attempts=4)
    call = Script(busy(), busy(), busy(), "reply")
    with trio.fail_after(LIMIT):
        assert await g.call(AGENT, 30.0, call, idempotent=False) == "reply"
    assert g.budget(AGENT) is None
    assert len(call.started) == 4


async def test_a_broken_retry_hook_does_not_break_the_call(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Event) -> NoReturn:
        raise RuntimeError("metrics down")

    g = guard(hook=broken)
    with (
        trio.fail_after(LIMIT),
        caplog.at_level(logging.ERROR, logger="daemon.instrumentation.hooks"),
    ):
        assert await g.call(TTS, 10.0, Script(down(), "audio"), idempotent=True) == "audio"
    assert "instrumentation hook failed on RetryDecided" in caplog.text


# ------------------------------------------------------------------ as the daemon builds it


async def test_the_daemons_guard_logs_circuit_changes_and_counts_retries(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    g = build_guard(Settings(), Hooks([metrics, EventLog()]))
    assert sorted(g.breakers) == ["agentforce", "elevenlabs-stt", "elevenlabs-tts", "whatsapp"]
    assert g.budget("whatsapp") is not g.budget("agentforce")
    with trio.fail_after(LIMIT * 10), caplog.at_level(logging.INFO, logger="daemon.runtime"):
        assert await g.call(TTS, 30.0, Script(down(), "audio"), idempotent=True) == "audio"
        while g.breakers[TTS].state is not State.OPEN:
            with pytest.raises(UpstreamError):
                await g.call(TTS, 30.0, Script(down()), idempotent=False)
    [opened] = [r for r in caplog.records if r.getMessage() == f"circuit {TTS}: closed -> open"]
    assert opened.levelno == logging.WARNING  # what an operator greps for (README)
    body = metrics.render()[0].decode()
    assert f'wa_agentd_retries_total{{outcome="retried",upstream="{TTS}"}} 1.0' in body
    assert f'wa_agentd_retries_total{{outcome="recovered",upstream="{TTS}"}} 1.0' in body
    assert f'wa_agentd_circuit_changes_total{{state="open",upstream="{TTS}"}} 1.0' in body
