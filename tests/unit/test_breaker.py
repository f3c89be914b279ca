"""CircuitBreaker: every timing runs on trio's MockClock (autojump_clock)."""

from __future__ import annotations

import logging
from typing import NoReturn

import pytest
import trio
import trio.testing

from daemon.errors import Reason, UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from daemon.instrumentation.events import CircuitChanged, Event
from daemon.instrumentation.hooks import Hook
from daemon.resilience.breaker import CircuitBreaker, CircuitOpen, State
from daemon.resilience.retry import was_sent

Change = tuple[State, State]


def make(changes: list[Change] | None = None, **overrides: float) -> CircuitBreaker:
    settings: dict[str, float] = {
        "window": 10,
        "min_calls": 4,
        "failure_rate": 0.5,
        "slow_call_rate": 0.5,
        "slow_call_seconds": 1.0,
        "open_seconds": 30.0,
        "half_open_calls": 2,
        "half_open_timeout": 5.0,
        "half_open_max_seconds": 60.0,
    }
    settings.update(overrides)
    sink = changes if changes is not None else []
    return CircuitBreaker(
        "up",
        window=int(settings["window"]),
        min_calls=int(settings["min_calls"]),
        failure_rate=settings["failure_rate"],
        slow_call_rate=settings["slow_call_rate"],
        slow_call_seconds=settings["slow_call_seconds"],
        open_seconds=settings["open_seconds"],
        half_open_calls=int(settings["half_open_calls"]),
        half_open_timeout=settings["half_open_timeout"],
        half_open_max_seconds=settings["half_open_max_seconds"],
        hook=changes_into(sink),
    )


def changes_into(sink: list[Change]) -> Hook:
    """A hook that keeps every state change the breaker reports."""

    def hook(event: Event) -> None:
        assert isinstance(event, CircuitChanged) and event.upstream == "up"
        sink.append((event.old, event.new))

    return hook


async def ok() -> str:
    await trio.sleep(0.1)
    return "ok"


async def slow() -> str:
    await trio.sleep(2.0)  # slow_call_seconds is 1.0
    return "slow"


async def down() -> NoReturn:
    await trio.sleep(0.1)
    raise UpstreamUnavailable("up", "HTTP 503", status=503)


async def refused() -> NoReturn:
    await trio.sleep(0.1)
    raise UpstreamRejected("up", "HTTP 400", status=400)


async def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(UpstreamUnavailable):
            await breaker.call(down)


async def open_breaker(breaker: CircuitBreaker) -> None:
    await fail(breaker, 4)
    assert breaker.snapshot().state is State.OPEN


async def test_opens_on_failure_rate_once_min_calls_reached(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = make()
    assert breaker.state is State.CLOSED
    await fail(breaker, 3)
    assert breaker.snapshot().state is State.CLOSED  # 100 % failures, but only 3 < min_calls calls
    assert await breaker.call(ok) == "ok"
    assert breaker.snapshot().state is State.OPEN  # 3 of 4 failed >= 50 %


async def test_stays_closed_below_failure_rate(autojump_clock: trio.testing.MockClock) -> None:
    breaker = make()
    for _ in range(3):
        await breaker.call(ok)
    await fail(breaker, 1)
    snap = breaker.snapshot()
    assert (snap.state, snap.calls, snap.failure_rate) == (State.CLOSED, 4, 0.25)


async def test_window_forgets_old_outcomes(autojump_clock: trio.testing.MockClock) -> None:
    breaker = make(window=4, min_calls=4)
    await fail(breaker, 1)
    for _ in range(4):
        await breaker.call(ok)
    await fail(breaker, 1)  # the first failure has left the window: 1 of 4
    assert breaker.snapshot().failure_rate == 0.25
    assert breaker.snapshot().state is State.CLOSED


async def test_opens_on_slow_call_rate(autojump_clock: trio.testing.MockClock) -> None:
    breaker = make()
    for _ in range(3):
        assert await breaker.call(slow) == "slow"
    assert breaker.snapshot().state is State.CLOSED
    await breaker.call(slow)
    assert breaker.snapshot().state is State.OPEN


async def test_rejection_is_not_a_failure(autojump_clock: trio.testing.MockClock) -> None:
    breaker = make()
    for _ in range(8):
        with pytest.raises(UpstreamRejected):
            await breaker.call(refused)
    snap = breaker.snapshot()
    assert (snap.state, snap.calls, snap.failure_rate) == (State.CLOSED, 8, 0.0)


async def test_is_failure_can_be_overridden(autojump_clock: trio.testing.MockClock) -> None:
    breaker = make()
    for _ in range(4):
        with pytest.raises(UpstreamRejected):
            await breaker.call(refused, is_failure=lambda exc: True)
    assert breaker.snapshot().state is State.OPEN


async def test_pair_rate_is_not_a_failure(autojump_clock: trio.testing.MockClock) -> None:
    # One user writing too fast says nothing about the upstream, which serves everyone else.
    async def pair_rate() -> NoReturn:
        raise UpstreamUnavailable("up", "HTTP 400", status=400, reason=Reason.USER_BUSY)

    breaker = make()
    for _ in range(8):
        with pytest.raises(UpstreamUnavailable):
            await breaker.call(pair_rate)
    snap = breaker.snapshot()
    assert (snap.state, snap.calls, snap.failure_rate) == (State.CLOSED, 8, 0.0)
    # Slowing down for everyone is a health signal, though.
    breaker = make()
    for _ in range(4):
        with pytest.raises(UpstreamUnavailable):
            await breaker.call(
                lambda: _raise(UpstreamUnavailable("up", "429", reason=Reason.SLOW_DOWN))
            )
    assert breaker.snapshot().state is State.OPEN


async def _raise(exc: Exception) -> NoReturn:
    raise exc


async def test_timeouts_count_as_failures(autojump_clock: trio.testing.MockClock) -> None:
    async def timed_out() -> NoReturn:
        raise UpstreamTimeout("up", 3.0)

    breaker = make()
    for _ in range(4):
        with pytest.raises(UpstreamTimeout):
            await breaker.call(timed_out)
    assert breaker.snapshot().state is State.OPEN


async def test_open_fails_fast_without_calling_fn(autojump_clock: trio.testing.MockClock) -> None:
    breaker = make()
    await open_breaker(breaker)
    await trio.sleep(10.0)
    called = False

    async def must_not_run() -> str:
        nonlocal called
        called = True
        return "ran"

    before = trio.current_time()
    with pytest.raises(CircuitOpen) as raised:
        await breaker.call(must_not_run)
    assert not called
    assert trio.current_time() == before
    assert isinstance(raised.value, UpstreamUnavailable)
    assert raised.value.upstream == "up"
    assert raised.value.message == "circuit open"
    assert raised.value.retry_after == pytest.approx(20.0)
    # Refused here, so it never left: a send refused by an open circuit is a refusal the turn
    # can apologise for, not an unknown outcome that must be met with silence.
    assert raised.value.sent is False
    assert not was_sent(raised.value)
    assert not breaker.allow()
    assert breaker.snapshot().seconds_until_half_open == pytest.approx(20.0)


async def test_half_open_after_open_seconds(autojump_clock: trio.testing.MockClock) -> None:
    breaker = make()
    await open_breaker(breaker)
    await trio.sleep(29.9)
    assert breaker.snapshot().state is State.OPEN
    await trio.sleep(0.2)
    assert breaker.snapshot().state is State.HALF_OPEN
    assert breaker.snapshot().seconds_until_half_open == 0.0


async def test_successful_trials_close_with_an_empty_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = make()
    await open_breaker(breaker)
    await trio.sleep(30.0)
    assert await breaker.call(ok) == "ok"
    assert breaker.snapshot().state is State.HALF_OPEN  # 1 of 2 trials
    await breaker.call(ok)
    snap = breaker.snapshot()
    assert (snap.state, snap.calls, snap.failure_rate) == (State.CLOSED, 0, 0.0)


async def test_failed_trial_reopens(autojump_clock: trio.testing.MockClock) -> None:
    breaker = make()
    await open_breaker(breaker)
    await trio.sleep(30.0)
    await breaker.call(ok)
    await fail(breaker, 1)
    assert breaker.snapshot().state is State.OPEN
    assert breaker.snapshot().seconds_until_half_open == pytest.approx(30.0)


async def test_slow_trial_reopens(autojump_clock: trio.testing.MockClock) -> None:
    breaker = make()
    await open_breaker(breaker)
    await trio.sleep(30.0)
    assert await breaker.call(slow) == "slow"
    assert breaker.snapshot().state is State.OPEN


async def test_trials_beyond_half_open_calls_fail_fast(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = make()
    await open_breaker(breaker)
    await trio.sleep(30.0)
    release = trio.Event()
    started = 0

    async def held() -> str:
        nonlocal started
        started += 1
        await release.wait()
        return "ok"

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(breaker.call, held)
            nursery.start_soon(breaker.call, held)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(CircuitOpen) as raised:
                await breaker.call(held)
            assert started == 2
            assert 0.0 < raised.value.retry_after <= 5.0
            release.set()
    assert breaker.snapshot().state is State.CLOSED


async def test_hanging_trial_times_out_and_reopens(autojump_clock: trio.testing.MockClock) -> None:
    changes: list[Change] = []
    breaker = make(changes)
    await open_breaker(breaker)
    await trio.sleep(30.0)
    before = trio.current_time()
    with trio.fail_after(100), pytest.raises(UpstreamTimeout) as raised:
        await breaker.call(trio.sleep_forever)
    assert trio.current_time() - before == pytest.approx(5.0)  # its own half_open_timeout
    assert raised.value.upstream == "up"
    assert breaker.snapshot().state is State.OPEN
    assert changes[-1] == (State.HALF_OPEN, State.OPEN)


async def test_half_open_without_verdict_reopens(autojump_clock: trio.testing.MockClock) -> None:
    # Callers that use allow()/record() can leave a trial hanging; HALF_OPEN has its own cap.
    breaker = make()
    await open_breaker(breaker)
    await trio.sleep(30.0)
    assert breaker.allow()
    assert breaker.allow()
    assert not breaker.allow()  # both trial slots taken, never recorded
    await trio.sleep(59.0)
    assert breaker.snapshot().state is State.HALF_OPEN
    await trio.sleep(1.5)
    assert breaker.snapshot().state is State.OPEN


async def test_outer_cancellation_is_not_counted(autojump_clock: trio.testing.MockClock) -> None:
    breaker = make()
    for _ in range(6):
        with trio.move_on_after(0.5) as scope:
            await breaker.call(trio.sleep_forever)
        assert scope.cancelled_caught  # the Cancelled reached the caller's scope
    snap = breaker.snapshot()
    assert (snap.state, snap.calls) == (State.CLOSED, 0)


async def test_outer_cancellation_gives_the_trial_slot_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = make()
    await open_breaker(breaker)
    await trio.sleep(30.0)
    with trio.move_on_after(1.0) as scope:  # shorter than half_open_timeout
        await breaker.call(trio.sleep_forever)
    assert scope.cancelled_caught
    assert breaker.snapshot().state is State.HALF_OPEN
    await breaker.call(ok)
    await breaker.call(ok)  # would be refused had the cancelled trial kept its slot
    assert breaker.snapshot().state is State.CLOSED


async def test_late_outcome_of_an_earlier_state_is_ignored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A call let through while CLOSED returns only once the breaker is HALF_OPEN again: it must
    # not count as one of the trials.
    breaker = make()
    release = trio.Event()

    async def held() -> str:
        await release.wait()
        return "ok"

    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(breaker.call, held)
            await trio.testing.wait_all_tasks_blocked()
            await open_breaker(breaker)
            await trio.sleep(30.0)
            await breaker.call(ok)  # trial 1 of 2
            release.set()
        assert breaker.snapshot().state is State.HALF_OPEN
        await breaker.call(ok)  # trial 2 of 2
    assert breaker.snapshot().state is State.CLOSED


async def test_the_hook_sees_every_transition_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    changes: list[Change] = []
    breaker = make(changes)
    await open_breaker(breaker)
    await trio.sleep(30.0)
    await fail(breaker, 1)
    await trio.sleep(30.0)
    await breaker.call(ok)
    await breaker.call(ok)
    assert changes == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]


async def test_state_changes_are_logged(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = make()
    with caplog.at_level(logging.INFO, logger="daemon.resilience.breaker"):
        await open_breaker(breaker)
        await trio.sleep(30.0)
        assert breaker.state is State.HALF_OPEN  # time-driven: logged when next looked at
    lines = [r.getMessage() for r in caplog.records if r.name == "daemon.resilience.breaker"]
    assert lines == [
        "circuit breaker up: closed -> open",
        "circuit breaker up: open -> half_open",
    ]


async def test_broken_hook_does_not_break_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("metrics down")

    breaker = CircuitBreaker(
        "up", min_calls=2, slow_call_seconds=1.0, half_open_timeout=5.0,
        half_open_max_seconds=60.0, hook=broken,
    )  # fmt: skip
    await fail(breaker, 2)
    assert breaker.snapshot().state is State.OPEN


async def test_allow_and_record_for_callers_that_cannot_wrap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = make()
    for _ in range(3):
        assert breaker.allow()
        breaker.record(False, 0.2)
    breaker.check()
    breaker.record(True, 0.2)
    assert breaker.snapshot().state is State.OPEN
    with pytest.raises(CircuitOpen):
        breaker.check()
    await trio.sleep(30.0)
    assert breaker.allow()
    breaker.record(True, 0.2)
    assert breaker.allow()
    breaker.record(True, 0.2)
    assert breaker.snapshot().state is State.CLOSED


def test_rejects_settings_that_cannot_work() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(
            "up", window=5, min_calls=6, slow_call_seconds=1.0, half_open_timeout=1.0,
            half_open_max_seconds=2.0,
        )  # fmt: skip
    with pytest.raises(ValueError):
        CircuitBreaker(
            "up", failure_rate=0.0, slow_call_seconds=1.0, half_open_timeout=1.0,
            half_open_max_seconds=2.0,
        )  # fmt: skip


async def test_failure_inside_an_exception_group_counts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def grouped() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(down)

    breaker = make()
    for _ in range(4):
        with pytest.raises(ExceptionGroup):
            await breaker.call(grouped)
    assert breaker.snapshot().state is State.OPEN
