"""A circuit breaker for one upstream, for trio, with an injected clock.

Usage — one breaker per upstream, shared by every turn::

    agentforce = CircuitBreaker("agentforce", slow_call_seconds=10.0,
                                half_open_timeout=15.0, half_open_max_seconds=60.0,
                                hook=hooks)  # CircuitChanged events

    reply = await agentforce.call(lambda: client.send(session, text))

``call`` raises ``CircuitOpen`` (an ``UpstreamUnavailable``, so the turn's existing error
handling applies) without calling ``fn`` while the breaker is open. Callers that cannot wrap
their call (a stream consumed elsewhere) use ``allow()`` before and ``record()`` after, exactly
once per ``allow()`` that returned True. ``snapshot()`` is for /readyz and metrics.

Semantics (reference/anchors.md §C.1; resilience4j's count-based window):

- CLOSED: the last ``window`` outcomes are kept. Once at least ``min_calls`` are recorded, a
  failure rate >= ``failure_rate`` or a slow-call rate >= ``slow_call_rate`` opens it.
- OPEN: every call fails fast for ``open_seconds``; ``CircuitOpen.retry_after`` says how long
  is left (Polly's ``BrokenCircuitException.RetryAfter``).
- HALF_OPEN: up to ``half_open_calls`` trial calls are let through; more fail fast. Each trial
  run by ``call`` has its own ``half_open_timeout`` cancel scope, and HALF_OPEN itself lasts at
  most ``half_open_max_seconds`` without a verdict: in resilience4j a hanging trial keeps the
  breaker half-open for good (resilience4j#903, the §C.1 gotcha). All trials good → CLOSED
  with an empty window; one bad trial (failed, timed out, or slow) → OPEN again.

What counts as a failure: ``UpstreamUnavailable`` and ``UpstreamTimeout`` by default, except a
``Reason.USER_BUSY`` (one user's limit, not the upstream's health). An ``UpstreamRejected`` (a
400, a bad parameter) is our fault, not a sign of the upstream's health, so it counts as a
success — the upstream answered (resilience4j does the same with exceptions it does not
record). A ``trio.Cancelled`` from an outer scope (the turn's deadline, shutdown)
says nothing about the upstream: it is not recorded at all and propagates; a trial slot it held
is given back.

Time-driven transitions (OPEN → HALF_OPEN, a too-long HALF_OPEN → OPEN) are evaluated lazily,
when the breaker is next used or looked at; there is no background task. The ``hook`` gets a
``CircuitChanged`` event (daemon/instrumentation/events.py) then, after the state has changed.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import trio

from daemon.errors import Reason, UpstreamTimeout, UpstreamUnavailable
from daemon.instrumentation.events import CircuitChanged
from daemon.instrumentation.hooks import Hook, emit, ignore

log = logging.getLogger(__name__)

T = TypeVar("T")


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(UpstreamUnavailable):
    """The breaker refused the call without trying it; ``retry_after`` seconds until a trial."""

    def __init__(self, upstream: str, retry_after: float) -> None:
        # sent=False: the request never left. Without it a send refused here looked like one
        # whose outcome is unknown (no status, no connect error in its chain), and the turn,
        # fearing a double answer, told the user nothing at all.
        super().__init__(upstream, "circuit open", retry_after=retry_after, sent=False)


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """What /readyz and the metrics show of one breaker."""

    name: str
    state: State
    calls: int  # outcomes in the window (CLOSED only; the window is empty otherwise)
    failure_rate: float
    slow_call_rate: float
    seconds_until_half_open: float  # 0.0 unless OPEN


def default_is_failure(exc: BaseException) -> bool:
    """Unavailable and timeouts are the upstream's health; a rejection is our own request.

    A pair-rate refusal (too many messages to one user) is not either: the upstream is fine
    and serves every other user, so one chatty user must not open the circuit for all.
    """
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(_is_failure) is not None
    return _is_failure(exc)


def _is_failure(exc: BaseException) -> bool:
    if isinstance(exc, UpstreamUnavailable) and exc.reason == Reason.USER_BUSY:
        return False
    return isinstance(exc, UpstreamUnavailable | UpstreamTimeout)


@dataclass(frozen=True, slots=True)
class _Permit:
    generation: int  # the breaker's generation when the call was let through
    trial: bool  # a HALF_OPEN trial: runs under half_open_timeout, decides the verdict


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        window: int = 20,
        min_calls: int = 10,
        failure_rate: float = 0.5,
        slow_call_rate: float = 0.8,
        slow_call_seconds: float,
        open_seconds: float = 30.0,
        half_open_calls: int = 3,
        half_open_timeout: float,
        half_open_max_seconds: float,
        clock: Callable[[], float] = trio.current_time,
        hook: Hook = ignore,
    ) -> None:
        if window < 1 or not 1 <= min_calls <= window:
            raise ValueError("need 1 <= min_calls <= window")
        if not (0.0 < failure_rate <= 1.0 and 0.0 < slow_call_rate <= 1.0):
            raise ValueError("rates must be in (0, 1]")
        if half_open_calls < 1:
            raise ValueError("half_open_calls must be >= 1")
        if min(slow_call_seconds, open_seconds, half_open_timeout, half_open_max_seconds) <= 0:
            raise ValueError("durations must be > 0")
        self.name = name
        self._min_calls = min_calls
        self._failure_rate = failure_rate
        self._slow_call_rate = slow_call_rate
        self._slow_call_seconds = slow_call_seconds
        self._open_seconds = open_seconds
        self._half_open_calls = half_open_calls
        self._half_open_timeout = half_open_timeout
        self._half_open_max_seconds = half_open_max_seconds
        self._clock = clock
        self._hook = hook

        self._state = State.CLOSED
        # Bumped on every transition: an outcome of a call let through in an earlier state
        # (a trial that returns after HALF_OPEN was given up) must not decide the new one.
        self._generation = 0
        self._outcomes: deque[tuple[bool, bool]] = deque(maxlen=window)  # (failed, slow)
        self._since = 0.0  # when the current state began (clock time)
        self._trials_started = 0
        self._trials_ok = 0

    # ------------------------------------------------------------------ looking at it

    @property
    def state(self) -> State:
        self._tick()
        return self._state

    def snapshot(self) -> BreakerSnapshot:
        self._tick()
        calls = len(self._outcomes)
        failed = sum(1 for f, _ in self._outcomes if f)
        slow = sum(1 for _, s in self._outcomes if s)
        return BreakerSnapshot(
            name=self.name,
            state=self._state,
            calls=calls,
            failure_rate=failed / calls if calls else 0.0,
            slow_call_rate=slow / calls if calls else 0.0,
            seconds_until_half_open=self._open_remaining(),
        )

    # ------------------------------------------------------------------ wrapping a call

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        is_failure: Callable[[BaseException], bool] = default_is_failure,
    ) -> T:
        """``await fn()`` if the breaker lets it through, recording how it went.

        Raises ``CircuitOpen`` without calling ``fn`` when open (or when every trial slot of
        HALF_OPEN is taken), and ``UpstreamTimeout`` when a trial exceeds its own timeout.
        """
        permit = self._acquire()
        started = self._clock()
        try:
            if not permit.trial:
                return self._succeeded(permit, started, await fn())
            with trio.move_on_after(self._half_open_timeout):
                return self._succeeded(permit, started, await fn())
            # Only reached when the trial's own scope cancelled fn: handled below, outside
            # the ``try``, so the UpstreamTimeout raised for it is not settled twice.
        except Exception as exc:
            self._settle(permit, failed=is_failure(exc), seconds=self._clock() - started)
            raise
        except BaseException:
            # trio.Cancelled from the caller's scope (ours is caught by the ``with`` above;
            # when both are cancelled trio lets it through to the outer one), or
            # KeyboardInterrupt: nothing learnt about the upstream. Free the trial slot.
            self._release(permit)
            raise
        self._settle(permit, failed=True, seconds=self._clock() - started)
        raise UpstreamTimeout(self.name, self._half_open_timeout)

    def _succeeded(self, permit: _Permit, started: float, result: T) -> T:
        self._settle(permit, failed=False, seconds=self._clock() - started)
        return result

    # ------------------------------------------------------------------ for callers that can't wrap

    def allow(self) -> bool:
        """May a call go now? True takes a trial slot in HALF_OPEN: ``record()`` it after."""
        try:
            self._acquire()
        except CircuitOpen:
            return False
        return True

    def check(self) -> None:
        """``allow()`` that raises ``CircuitOpen`` instead of returning False."""
        self._acquire()

    def record(self, success: bool, seconds: float) -> None:
        """The outcome of one call let through by ``allow()`` or ``check()``."""
        self._settle(
            _Permit(self._generation, self._state is State.HALF_OPEN), not success, seconds
        )

    # ------------------------------------------------------------------ internals

    def _acquire(self) -> _Permit:
        self._tick()
        if self._state is State.CLOSED:
            return _Permit(self._generation, trial=False)
        if self._state is State.HALF_OPEN and self._trials_started < self._half_open_calls:
            self._trials_started += 1
            return _Permit(self._generation, trial=True)
        if self._state is State.OPEN:
            retry_after = self._open_remaining()
        else:
            # Every trial slot is taken; a verdict comes within a trial's timeout at the latest.
            left = self._since + self._half_open_max_seconds - self._clock()
            retry_after = max(0.0, min(self._half_open_timeout, left))
        raise CircuitOpen(self.name, retry_after)

    def _release(self, permit: _Permit) -> None:
        """Give back a trial slot whose call ended without an outcome (cancelled)."""
        if permit.trial and permit.generation == self._generation:
            self._trials_started -= 1

    def _settle(self, permit: _Permit, failed: bool, seconds: float) -> None:
        self._tick()
        if permit.generation != self._generation:
            return  # let through in an earlier state; that state is over
        slow = seconds >= self._slow_call_seconds
        if self._state is State.CLOSED:
            self._outcomes.append((failed, slow))
            if self._tripped():
                self._move(State.OPEN)
        elif self._state is State.HALF_OPEN:
            # A slow trial is a bad verdict too: the upstream has not recovered.
            if failed or slow:
                self._move(State.OPEN)
            else:
                self._trials_ok += 1
                if self._trials_ok >= self._half_open_calls:
                    self._move(State.CLOSED)

    def _tripped(self) -> bool:
        calls = len(self._outcomes)
        if calls < self._min_calls:
            return False
        failed = sum(1 for f, _ in self._outcomes if f)
        slow = sum(1 for _, s in self._outcomes if s)
        return failed / calls >= self._failure_rate or slow / calls >= self._slow_call_rate

    def _open_remaining(self) -> float:
        if self._state is not State.OPEN:
            return 0.0
        return max(0.0, self._since + self._open_seconds - self._clock())

    def _tick(self) -> None:
        """Apply the transitions that are due to time alone."""
        now = self._clock()
        if self._state is State.OPEN and now - self._since >= self._open_seconds:
            self._move(State.HALF_OPEN)
        elif self._state is State.HALF_OPEN and now - self._since > self._half_open_max_seconds:
            self._move(State.OPEN)

    def _move(self, new: State) -> None:
        old = self._state
        self._state = new
        self._generation += 1
        self._since = self._clock()
        self._trials_started = 0
        self._trials_ok = 0
        self._outcomes.clear()  # a new CLOSED starts from nothing; OPEN/HALF_OPEN keep none
        log.info("circuit breaker %s: %s -> %s", self.name, old.value, new.value)
        # emit: a broken metrics hook must not break the calls going through the breaker.
        emit(self._hook, CircuitChanged(self.name, old, new))
