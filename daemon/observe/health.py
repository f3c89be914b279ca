"""What /readyz answers: can the daemon take work right now, and if not, why.

Three sources of reasons, each cheap to read on every request:

- ``UpstreamHealth``: fed with the outcome of every upstream call. An upstream whose last
  ``threshold`` calls all failed (timeouts, connection errors, 5xx, 429) is reported down
  until a call succeeds again, so a load balancer or an operator sees at once that the
  daemon can't answer right now and why. It complements the circuit breakers
  (daemon/resilience/), which /readyz reports too: a breaker needs a window of calls to
  open, this notices a short run of failures.
- ``StoreProbe``: can the state store still commit a write? Every webhook writes to it
  before answering 200, so a store that can't is a daemon that can't take messages.
- ``Readiness`` puts them together with the draining flag and the open circuits.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from daemon.instrumentation.events import Event, UpstreamCallDone

log = logging.getLogger(__name__)


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

    def __call__(self, event: Event) -> None:
        if isinstance(event, UpstreamCallDone):
            self.record(event.upstream, event.status)

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
        return True  # timeout, error, circuit_open
    code = int(status)
    return code >= 500 or code == 429


class StoreProbe:
    """Whether the state store takes writes: the result of a tiny write transaction.

    Why a write and not ``os.access(dir, W_OK)``: access() says nothing about a full disk,
    a database locked by another process (an operator's ``sqlite3`` shell in a transaction)
    or a file system remounted read-only after errors, and as root it says yes to
    everything. A committed write meets each of those the way accepting a webhook would.

    Why not on every /readyz: a load balancer may ask many times a second, and the write
    waits behind the store's other work (one connection, one thread at a time). So /readyz
    reads the last result and asks for a fresh one; ``run`` writes at most once per
    ``every`` seconds, and only while someone asks (no writes on an idle host nobody polls).
    A write that has not come back after ``stall_after`` seconds is a reason by itself:
    the disk hangs, and so does every webhook behind it.
    """

    def __init__(
        self,
        write: Callable[[], Awaitable[None]],
        *,
        every: float = 5.0,
        stall_after: float = 10.0,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._write = write
        self._every = every
        self._stall_after = stall_after
        self._clock = clock
        self._wanted = trio.Event()
        self._since: float | None = None  # when the write in progress started
        self.error = ""  # why the last write failed; "" when it succeeded (or none ran yet)
        self.checks = 0  # writes done, for tests and curiosity

    async def run(self) -> None:
        """Probe once now, then whenever asked, at most once per ``every`` seconds."""
        while True:
            await self.check()
            await trio.sleep(self._every)
            await self._wanted.wait()
            self._wanted = trio.Event()

    async def check(self) -> None:
        self._since = self._clock()
        try:
            await self._write()
        except Exception as exc:  # sqlite3.Error, OSError, StoreClosed: all mean "can't write"
            error = f"{type(exc).__name__}: {exc}"
            if error != self.error:
                log.warning("state store can't take writes: %s", error)
            self.error = error
        else:
            if self.error:
                log.info("state store takes writes again")
            self.error = ""
        finally:
            self._since = None
            self.checks += 1

    def problem(self) -> str | None:
        """The reason the store is not ready, from what is known now; asks for a fresh probe."""
        self._wanted.set()
        if self._since is not None and (waited := self._clock() - self._since) >= self._stall_after:
            return f"state store not answering (a write has waited {waited:.0f}s)"
        if self.error:
            return f"state store not writable ({self.error})"
        return None


class Readiness:
    """``() -> (ready?, reason)`` for /readyz: every reason at once, ``; ``-separated, so one
    look tells the whole story. Config being loaded needs no check: the daemon runs."""

    def __init__(
        self,
        *,
        draining: Callable[[], bool],
        store: StoreProbe | None,
        circuits: Callable[[], list[str]],
        upstreams: UpstreamHealth,
    ) -> None:
        self._draining = draining
        self._store = store
        self._circuits = circuits
        self._upstreams = upstreams

    def __call__(self) -> tuple[bool, str]:
        problems: list[str] = []
        if self._draining():
            problems.append("draining")
        if self._store is not None and (store := self._store.problem()):
            problems.append(store)
        problems += self._circuits()
        problems += self._upstreams.down()
        return (not problems, "; ".join(problems) or "ready")
