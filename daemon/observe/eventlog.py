"""The log sink: events an operator reads in the journal.

Only what no other module logs already: a circuit opening is WARNING (what an operator greps
for, README "Operations"), its other moves INFO. Retries are logged by the retry loop itself,
with the error that caused them (daemon/resilience/retry.py), and turns by their summary line.
"""

from __future__ import annotations

import logging

from daemon.instrumentation.events import CircuitChanged, Event

log = logging.getLogger("wa_agentd")


class EventLog:
    def __call__(self, event: Event) -> None:
        if isinstance(event, CircuitChanged):
            level = logging.WARNING if event.new.value == "open" else logging.INFO
            log.log(level, "circuit %s: %s -> %s", event.upstream, event.old.value, event.new.value)
