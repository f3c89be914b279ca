"""The last error of each kind, for ``wa-agentd status``: what went wrong lately, at a glance.

Two sources, both events (daemon/instrumentation/events.py) this sink is a hook for:

- turn reports whose outcome is not a business outcome (``agent_down``, ``timeout``,
  ``deferred``, ``send_failed``, ...) and voice notes that failed while the text stood: the
  kind is ``turn <outcome>`` / ``voice failed``, the detail the report's error text (the same
  text the turn's summary log line carries, so it holds no phone number);
- upstream calls answered 4xx or 5xx, or not answered (timeout, connection error, circuit
  open): the kind is ``<upstream> <status>``. Wider than what /readyz counts as the
  upstream failing: a 400 is our request refused (Graph's 130429 "slow down" comes as one),
  which is what an operator asking "what went wrong" wants to see.

Per kind: how many since start, when the last one was (wall clock) and its detail. Kinds
are bounded by construction (outcomes and HTTP statuses are small sets), and the table by
``max_kinds`` besides: the kind seen least recently goes first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from daemon.instrumentation.events import Event, TurnFinished, UpstreamCallDone
from daemon.limits.base import Limit

if TYPE_CHECKING:  # the turn imports observe, not the other way round
    from daemon.turn.report import TurnReport


# Outcomes that are the answer (or the polite reply the message called for), not a failure.
# A user held to a per-user limit (limited_*) or a voice note over [voice] max_seconds
# (too_long) is the policy working, not something that went wrong: listing them would bury
# the real errors under one flooding user (WaAgentdUsersLimited watches the limits). The
# daemon's own global budget spent (over_budget) stays: the operator must act on it.
FINE = frozenset(
    {"answered", "escalated", "unsupported", "no_speech", "too_long"}
    | {f"limited_{limit.value}" for limit in Limit}
)
DETAIL_CHARS = 200


@dataclass
class ErrorKind:
    kind: str
    count: int
    last_at: float  # wall clock
    detail: str


class RecentErrors:
    def __init__(self, *, max_kinds: int = 50, clock: Callable[[], float] = time.time) -> None:
        self._max_kinds = max_kinds
        self._clock = clock
        self._kinds: OrderedDict[str, ErrorKind] = OrderedDict()

    def __call__(self, event: Event) -> None:
        if isinstance(event, TurnFinished):
            self.turn(event.report)
        elif isinstance(event, UpstreamCallDone):
            self.upstream(event.upstream, event.status)

    def turn(self, report: TurnReport) -> None:
        if report.outcome not in FINE:
            self._note(f"turn {report.outcome}", report.error)
        if report.voice == "failed":
            self._note("voice failed", report.voice_error)

    def upstream(self, upstream: str, status: str) -> None:
        if not status.isdigit() or int(status) >= 400:
            self._note(f"{upstream} {status}", "")

    def _note(self, kind: str, detail: str) -> None:
        entry = self._kinds.pop(kind, None) or ErrorKind(kind, 0, 0.0, "")
        entry.count += 1
        entry.last_at = self._clock()
        entry.detail = detail[:DETAIL_CHARS] or entry.detail
        self._kinds[kind] = entry  # most recent last
        while len(self._kinds) > self._max_kinds:
            self._kinds.popitem(last=False)

    def latest(self) -> list[ErrorKind]:
        """Every kind, the most recent first."""
        return list(reversed(self._kinds.values()))
