"""Every upstream call of a turn through one gate: timeout, circuit breaker, safe retries.

    attempt:  trio.fail_after(timeout) -> the call          (its own cancel scope)
    breaker:  one per upstream: fail fast while it is down  (sees every attempt)
    retries:  only what is safe (retry.retryable), full jitter or Retry-After,
              one budget per upstream

The retry loop wraps the breaker, never the other way round (anchors.md §C.2), so a
``CircuitOpen`` is never retried: while an upstream is down the user gets the apology at
once instead of waiting out timeouts. The whole turn's deadline bounds everything.

The budgets are per upstream because an outage is: with one shared budget, a dead
ElevenLabs spends the tokens that would carry a WhatsApp 130429 or an Agentforce 423.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import trio

from daemon.errors import UpstreamTimeout
from daemon.instrumentation.events import RetryDecided, RetryOutcome
from daemon.instrumentation.hooks import Hook, emit, ignore
from daemon.resilience.breaker import CircuitBreaker, State
from daemon.resilience.retry import RetryBudget, retry_policy, with_retries

log = logging.getLogger(__name__)

T = TypeVar("T")


class Guard:
    """``new_budget`` makes each upstream's retry budget on its first call (None: retries are
    not budgeted). ``hook`` is told what became of retries (``RetryDecided`` events, for the
    metrics)."""

    def __init__(
        self,
        breakers: Mapping[str, CircuitBreaker],
        *,
        new_budget: Callable[[], RetryBudget] | None = RetryBudget,
        max_attempts: int = 3,
        rng: random.Random | None = None,
        hook: Hook = ignore,
    ) -> None:
        self.breakers = dict(breakers)
        self._new_budget = new_budget
        # Keyed by upstream name: a handful, fixed by the code, so bounded.
        self._budgets: dict[str, RetryBudget] = {}
        self._max_attempts = max_attempts
        self._rng = rng or random.Random()
        self._hook = hook

    def budget(self, upstream: str) -> RetryBudget | None:
        """``upstream``'s retry budget (made on first use)."""
        if self._new_budget is None:
            return None
        budget = self._budgets.get(upstream)
        if budget is None:
            budget = self._budgets[upstream] = self._new_budget()
        return budget

    async def call(
        self,
        upstream: str,
        seconds: float,
        fn: Callable[[], Awaitable[T]],
        *,
        idempotent: bool,
        on_attempt: Callable[[], None] | None = None,
    ) -> T:
        """``fn()`` with a ``seconds`` timeout per attempt, behind ``upstream``'s breaker,
        retried when that is safe. ``idempotent``: repeating it cannot do harm twice (a
        download, a transcription, a synthesis); a send is not."""
        breaker = self.breakers.get(upstream)

        async def timed() -> T:
            if on_attempt is not None:
                on_attempt()
            try:
                with trio.fail_after(seconds):
                    return await fn()
            except trio.TooSlowError:
                raise UpstreamTimeout(upstream, seconds) from None

        async def attempt(_n: int) -> T:
            return await breaker.call(timed) if breaker is not None else await timed()

        def outcome(name: RetryOutcome) -> None:
            # emit: a broken metrics hook must not turn an answer into an apology.
            emit(self._hook, RetryDecided(upstream, name))

        return await with_retries(
            attempt,
            policy=retry_policy(idempotent=idempotent, rng=self._rng),
            budget=self.budget(upstream),
            max_attempts=self._max_attempts,
            on_outcome=outcome,
        )

    def open_circuits(self) -> list[str]:
        """Reasons for /readyz: the upstreams whose circuit is open now."""
        return [
            f"{name} circuit open"
            for name, breaker in sorted(self.breakers.items())
            if breaker.snapshot().state is State.OPEN
        ]
