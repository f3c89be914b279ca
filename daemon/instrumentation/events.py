"""What happened, as small frozen values: the daemon's instrumentation events.

Emitters hand these to a ``Hook`` (hooks.py) and know nothing of where they go; each sink,
in daemon/observe/, turns them into its own kind of record:

    event              emitted by                           sinks (daemon/observe/)
    UpstreamCallDone   the pools' httpx response hooks,     metrics.py (upstream_calls),
                       a turn's calls that got no answer    health.py, recent.py
    RetryDecided       resilience/guard.py                  metrics.py (retries)
    CircuitChanged     resilience/breaker.py                metrics.py (circuit_changes),
                                                            eventlog.py (the log line)
    TurnFinished       the turn's report callback           metrics.py, recent.py

stamina's ``instrumentation/`` is the model: frozen details, a hook protocol, a module per
sink. The types of other packages named here are imported for the type checker only: the
emitters (resilience, the turn) must be able to import this module without importing what
reports on them, or the sinks what they report on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.resilience.breaker import State
    from daemon.turn import TurnReport


class RetryOutcome(enum.StrEnum):
    """What became of a retry (the ``outcome`` label of wa_agentd_retries_total)."""

    RETRIED = "retried"  # one retry made
    BUDGET_SPENT = "budget_spent"  # a retry wanted, the budget said no
    RECOVERED = "recovered"  # a retried call succeeded in the end
    GAVE_UP = "gave_up"  # a retried call still failed


@dataclass(frozen=True, slots=True)
class UpstreamCallDone:
    """One upstream call ended: ``status`` is its HTTP status code ("200", "503"), or
    "timeout", "error" or "circuit_open" when no answer came."""

    upstream: str
    status: str


@dataclass(frozen=True, slots=True)
class RetryDecided:
    """The guard decided about a retry of a call to ``upstream``."""

    upstream: str
    outcome: RetryOutcome


@dataclass(frozen=True, slots=True)
class CircuitChanged:
    """``upstream``'s circuit breaker went from ``old`` to ``new``."""

    upstream: str
    old: State
    new: State


@dataclass(frozen=True, slots=True)
class TurnFinished:
    """A turn ended, whatever its outcome; the report says what it did and cost."""

    report: TurnReport


Event = UpstreamCallDone | RetryDecided | CircuitChanged | TurnFinished
