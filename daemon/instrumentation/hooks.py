"""The hook protocol, and how emitters and sinks meet.

An emitter holds one ``Hook`` and calls it with an event (daemon/instrumentation/events.py); the
runtime hands it a ``Hooks`` of every sink. Instrumentation is never allowed to cost a user
an answer: ``emit`` keeps a sink that raises from breaking the call that reported, and
``Hooks`` keeps it from starving the other sinks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Protocol

import httpx

from daemon.instrumentation.events import Event, TurnFinished, UpstreamCallDone

if TYPE_CHECKING:
    from daemon.turn import TurnReport

log = logging.getLogger(__name__)


class Hook(Protocol):
    def __call__(self, event: Event) -> None: ...


def ignore(event: Event) -> None:
    """The hook of an emitter nobody listens to (unit tests, tools)."""


class Hooks:
    """Several sinks as one hook: each sees every event, in the order given."""

    def __init__(self, sinks: Iterable[Hook]) -> None:
        self.sinks = tuple(sinks)

    def __call__(self, event: Event) -> None:
        for sink in self.sinks:
            emit(sink, event)


def emit(hook: Hook, event: Event) -> None:
    """``hook(event)``; a hook that raises is logged, never passed on to the emitter."""
    try:
        hook(event)
    except Exception:
        log.exception("instrumentation hook failed on %s", type(event).__name__)


def report_turns(hook: Hook) -> Callable[[TurnReport], None]:
    """The turn's ``on_report`` as events: the turn, then each of its upstream calls that got
    no HTTP answer at all (those that did are counted by the pools, ``count_responses``)."""

    def on_report(report: TurnReport) -> None:
        emit(hook, TurnFinished(report))
        for upstream, status in report.failures:
            emit(hook, UpstreamCallDone(upstream, status))

    return on_report


def count_responses(
    hook: Hook, upstream: Callable[[httpx.Request], str]
) -> Callable[[httpx.Response], Awaitable[None]]:
    """An httpx response hook for one pool: every answer, whatever its status, as an
    ``UpstreamCallDone`` of ``upstream(request)``."""

    async def on_response(response: httpx.Response) -> None:
        emit(hook, UpstreamCallDone(upstream(response.request), str(response.status_code)))

    return on_response
