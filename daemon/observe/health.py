"""Is each upstream answering? A small tracker behind /readyz.

Fed with the outcome of every upstream call. An upstream whose last ``threshold`` calls all
failed (timeouts, connection errors, 5xx, 429) is reported down until a call succeeds again,
so a load balancer or an operator sees at once that the daemon can't answer right now and
why. It complements the circuit breakers (daemon/resilience/), which /readyz reports too:
a breaker needs a window of calls to open, this notices a short run of failures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import trio


@dataclass
class _State:
    failures: int = 0
    last_failure: float = 0.0
    last_status: str = ""


class UpstreamHealth:
    def __init__(
        self,
        *,
        threshold: int = 5,
        memory: float = 300.0,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._threshold = threshold
        self._memory = memory  # a failure streak older than this no longer counts
        self._clock = clock
        self._states: dict[str, _State] = {}

    def record(self, upstream: str, status: str) -> None:
        """``status`` is an HTTP status code, "timeout" or "error"."""
        state = self._states.setdefault(upstream, _State())
        if is_failure(status):
            state.failures += 1
            state.last_failure = self._clock()
            state.last_status = status
        else:
            state.failures = 0

    def down(self) -> list[str]:
        """Human-readable reasons, one per upstream that is failing now."""
        now = self._clock()
        return [
            f"{name} failing ({s.failures} calls in a row, last: {s.last_status})"
            for name, s in sorted(self._states.items())
            if s.failures >= self._threshold and now - s.last_failure < self._memory
        ]


def is_failure(status: str) -> bool:
    if not status.isdigit():
        return True  # timeout, error
    code = int(status)
    return code >= 500 or code == 429
