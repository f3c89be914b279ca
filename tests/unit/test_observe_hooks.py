"""Instrumentation as hooks: events in, one record per sink out, a broken sink harmless."""

from __future__ import annotations

import logging

import httpx
import pytest
import trio

from daemon.instrumentation.events import (
    CircuitChanged,
    Event,
    RetryDecided,
    RetryOutcome,
    TurnFinished,
    UpstreamCallDone,
)
from daemon.instrumentation.hooks import Hooks, count_responses, emit, report_turns
from daemon.observe.eventlog import EventLog
from daemon.observe.health import UpstreamHealth
from daemon.observe.metrics import Metrics
from daemon.observe.recent import RecentErrors
from daemon.resilience.breaker import State
from daemon.turn import TurnReport


class Seen:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)


def broken(event: Event) -> None:
    raise RuntimeError("sink down")


def test_every_sink_sees_every_event_in_order_even_after_a_broken_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, last = Seen(), Seen()
    hooks = Hooks([first, broken, last])
    events = [UpstreamCallDone("whatsapp", "200"), RetryDecided("agentforce", RetryOutcome.RETRIED)]
    with caplog.at_level(logging.ERROR, logger="daemon.instrumentation.hooks"):
        for event in events:
            hooks(event)
    assert first.events == events and last.events == events
    assert caplog.text.count("instrumentation hook failed") == 2


def test_emit_never_passes_a_hooks_error_on(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="daemon.instrumentation.hooks"):
        emit(broken, UpstreamCallDone("whatsapp", "500"))
    assert "instrumentation hook failed on UpstreamCallDone" in caplog.text


def test_a_turn_report_is_the_turn_then_its_calls_without_an_answer() -> None:
    seen = Seen()
    report = TurnReport(
        turn_id="t1",
        kind="voice",
        user="u:1",
        outcome="agent_down",
        failures=[("agentforce", "timeout"), ("elevenlabs-stt", "circuit_open")],
    )
    report_turns(seen)(report)
    assert seen.events == [
        TurnFinished(report),
        UpstreamCallDone("agentforce", "timeout"),
        UpstreamCallDone("elevenlabs-stt", "circuit_open"),
    ]


async def test_a_pools_response_hook_reports_every_status() -> None:
    seen = Seen()
    statuses = iter([200, 503])
    transport = httpx.MockTransport(lambda request: httpx.Response(next(statuses)))
    hook = count_responses(seen, lambda request: request.url.path.strip("/"))
    with trio.fail_after(5):
        async with httpx.AsyncClient(
            transport=transport, event_hooks={"response": [hook]}
        ) as client:
            await client.get("http://upstream.test/a")
            await client.get("http://upstream.test/b")
    assert seen.events == [UpstreamCallDone("a", "200"), UpstreamCallDone("b", "503")]


def test_the_prometheus_sink_keeps_its_metric_names_and_labels() -> None:
    metrics = Metrics()
    metrics(UpstreamCallDone("whatsapp", "200"))
    metrics(RetryDecided("agentforce", RetryOutcome.BUDGET_SPENT))
    metrics(CircuitChanged("elevenlabs-tts", State.CLOSED, State.OPEN))
    metrics(TurnFinished(TurnReport(turn_id="t", kind="text", user="u", outcome="answered")))
    body = metrics.render()[0].decode()
    assert 'wa_agentd_upstream_calls_total{status="200",upstream="whatsapp"} 1.0' in body
    assert 'wa_agentd_retries_total{outcome="budget_spent",upstream="agentforce"} 1.0' in body
    assert 'wa_agentd_circuit_changes_total{state="open",upstream="elevenlabs-tts"} 1.0' in body
    assert 'wa_agentd_turns_total{kind="text",outcome="answered"} 1.0' in body


def test_readiness_and_recent_errors_are_sinks_of_upstream_calls() -> None:
    health, recent = UpstreamHealth(threshold=2, clock=lambda: 0.0), RecentErrors()
    hooks = Hooks([health, recent])
    for _ in range(2):
        hooks(UpstreamCallDone("agentforce", "503"))
    hooks(TurnFinished(TurnReport(turn_id="t", kind="text", user="u", outcome="timeout")))
    assert health.down() == ["agentforce failing (2 calls in a row, last: 503)"]
    assert [(e.kind, e.count) for e in recent.latest()] == [
        ("turn timeout", 1),
        ("agentforce 503", 2),
    ]


def test_the_log_sink_warns_when_a_circuit_opens(caplog: pytest.LogCaptureFixture) -> None:
    log_sink = EventLog()
    with caplog.at_level(logging.INFO, logger="wa_agentd"):
        log_sink(CircuitChanged("whatsapp", State.CLOSED, State.OPEN))
        log_sink(CircuitChanged("whatsapp", State.OPEN, State.HALF_OPEN))
        log_sink(UpstreamCallDone("whatsapp", "200"))  # not the log's business
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "circuit whatsapp: closed -> open"),
        (logging.INFO, "circuit whatsapp: open -> half_open"),
    ]
