"""Every upstream call of a turn: its own cancel scope, the guard, and the report's account.

``Calls.timed`` runs one call with its ``[timeouts]`` value behind the guard (circuit
breaker and safe retries: daemon/resilience/guard.py) and books it on the turn's report:
the seconds it took under its stage name, and, when it got no HTTP answer at all, a failure
(the HTTP ones are counted by the clients' response hooks). A turn without a guard of its
own gets ``unguarded()``: one attempt, its timeout, nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from daemon.errors import UpstreamError, UpstreamTimeout
from daemon.resilience.breaker import CircuitOpen
from daemon.resilience.guard import Guard
from daemon.turn.report import TurnReport

T = TypeVar("T")


def unguarded() -> Guard:
    """A pass-through guard: one attempt within its timeout; no breaker, no retry."""
    return Guard({}, new_budget=None, max_attempts=1)


class Calls:
    def __init__(self, guard: Guard, clock: Callable[[], float]) -> None:
        self._guard = guard
        self._clock = clock

    async def timed(
        self,
        report: TurnReport,
        stage: str,
        upstream: str,
        seconds: float,
        call: Callable[[], Awaitable[T]],
        *,
        idempotent: bool,
        on_attempt: Callable[[], None] | None = None,
    ) -> T:
        """``call()`` in its own cancel scope, behind ``upstream``'s circuit breaker and the
        retry policy (``idempotent``: safe to repeat). ``upstream`` is also the metrics label
        ("whatsapp" is the WhatsApp provider, whichever channel it is). ``on_attempt`` is
        told of every attempt (what a billed call costs)."""
        started = self._clock()
        try:
            return await self._guard.call(
                upstream, seconds, call, idempotent=idempotent, on_attempt=on_attempt
            )
        except UpstreamTimeout:
            report.failures.append((upstream, "timeout"))
            raise
        except CircuitOpen:
            report.failures.append((upstream, "circuit_open"))
            raise
        except UpstreamError as exc:
            if exc.status is None:
                report.failures.append((upstream, "error"))
            raise
        finally:
            report.stages[stage] = report.stages.get(stage, 0.0) + self._clock() - started
