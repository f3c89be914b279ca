"""What ``GET /admin/status`` answers: the daemon's state now, as one JSON document.

``wa-agentd status`` (daemon/status.py) prints it as a table; scripts read it with
``--json``. The document, ``"format": 1`` (a key is only ever added to it, never renamed)::

    version, provider, ready, reason      the /readyz verdict and its reasons
    started_at, uptime_seconds            wall clock (epoch seconds), and seconds up
    turns {in_flight, queued, deferred, lanes}
    bounds {queue_size, max_lanes, max_concurrent_turns}
    circuits {<upstream>: {state, calls, failure_rate, slow_call_rate, retry_in}}
    caches {<cache>: {hits, misses, hit_rate, saves}}      hit_rate null before any lookup
    errors [{kind, count, last_at, detail}]                most recent first

Everything here is read from the objects that own it (lanes, breakers, caches, the store),
as /metrics does: no second bookkeeping. The deferred count asks the store, within a short
time: a store that hangs gets the last count instead, so the status still answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from daemon import __version__
from daemon.lanes import Lanes
from daemon.observe.recent import RecentErrors

if TYPE_CHECKING:
    from daemon.resilience.breaker import CircuitBreaker

log = logging.getLogger(__name__)

FORMAT = 1
STORE_SECONDS = 2.0  # how long the deferred count may wait for the store

# cache name in wa_agentd_cache_lookups_total -> the upstream call one hit saves
SAVES = {
    "response": "agent call",
    "transcript": "speech-to-text call",
    "audio": "text-to-speech call",
    "media_id": "media upload",
}


@dataclass
class StatusSources:
    provider: str
    started_at: float  # wall clock
    ready: Callable[[], tuple[bool, str]]
    lanes: Lanes
    count_deferred: Callable[[], Awaitable[int]]
    last_deferred: Callable[[], int]  # the last count, for when the store does not answer
    bounds: Mapping[str, int]
    breakers: Mapping[str, CircuitBreaker]
    cache_lookups: Callable[[], Mapping[str, int]]  # as wa_agentd_cache_lookups_total
    errors: RecentErrors
    clock: Callable[[], float] = time.time

    async def snapshot(self) -> dict[str, Any]:
        ok, reason = self.ready()
        now = self.clock()
        return {
            "format": FORMAT,
            "version": __version__,
            "provider": self.provider,
            "ready": ok,
            "reason": reason,
            "started_at": self.started_at,
            "uptime_seconds": max(0.0, now - self.started_at),
            "turns": {
                "in_flight": self.lanes.running,
                "queued": self.lanes.queued,
                "deferred": await self._deferred(),
                "lanes": self.lanes.active,
            },
            "bounds": dict(self.bounds),
            "circuits": self._circuits(),
            "caches": cache_rates(self.cache_lookups()),
            "errors": [
                {"kind": e.kind, "count": e.count, "last_at": e.last_at, "detail": e.detail}
                for e in self.errors.latest()
            ],
        }

    async def _deferred(self) -> int:
        try:
            with trio.move_on_after(STORE_SECONDS):
                return await self.count_deferred()
        except Exception as exc:  # the status must answer whatever the store does
            log.info("status: counting deferred turns failed: %s", exc)
        return self.last_deferred()

    def _circuits(self) -> dict[str, dict[str, Any]]:
        circuits: dict[str, dict[str, Any]] = {}
        for name, breaker in sorted(self.breakers.items()):
            s = breaker.snapshot()
            circuits[name] = {
                "state": s.state.value,
                "calls": s.calls,
                "failure_rate": s.failure_rate,
                "slow_call_rate": s.slow_call_rate,
                "retry_in": s.seconds_until_half_open,
            }
        return circuits


def cache_rates(lookups: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """``{"response": {"hits", "misses", "hit_rate", "saves"}, ...}`` from the counts of
    wa_agentd_cache_lookups_total (``<cache>_hit``, ``<cache>_miss``)."""
    rates: dict[str, dict[str, Any]] = {}
    for cache, saves in SAVES.items():
        if f"{cache}_hit" not in lookups:
            continue  # that cache is off
        hits, misses = lookups[f"{cache}_hit"], lookups.get(f"{cache}_miss", 0)
        total = hits + misses
        rates[cache] = {
            "hits": hits,
            "misses": misses,
            "hit_rate": hits / total if total else None,
            "saves": saves,
        }
    return rates
