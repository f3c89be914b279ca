"""Prometheus metrics (prometheus-client, text format on ``GET /metrics``).

Two kinds of numbers, kept apart on purpose:

- *events* the daemon counts as they happen: turns by kind and outcome, stage latencies,
  upstream calls by upstream and status, retries, circuit changes. These are
  prometheus-client Counters/Histograms, fed by the events of daemon/instrumentation/events.py:
  ``Metrics`` is the Prometheus sink, a hook (daemon/instrumentation/hooks.py).
- *state* that already lives somewhere (web counters, queue depth, lanes, agent sessions,
  turns in flight, cache sizes): read at scrape time by a collector, so there is one source
  of truth and no second bookkeeping to drift.

All names start with ``wa_agentd_``. The process collector adds ``process_resident_memory_bytes``
and friends from /proc.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from daemon.instrumentation.events import (
    CircuitChanged,
    Event,
    RetryDecided,
    TurnFinished,
    UpstreamCallDone,
)

if TYPE_CHECKING:  # the turn imports observe, not the other way round
    from daemon.turn.report import TurnReport

# Stage latencies run from a few ms (a cache hit, a send) to a minute (a slow agent).
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120)


@dataclass
class StateSources:
    """Callables the collector reads at scrape time. Each returns a number or a mapping."""

    counters: dict[str, tuple[str, str, Callable[[], Mapping[str, int]]]] = field(
        default_factory=dict
    )  # name -> (help, label name, read)
    gauges: dict[str, tuple[str, Callable[[], float]]] = field(default_factory=dict)
    labelled_gauges: dict[str, tuple[str, str, Callable[[], Mapping[str, float]]]] = field(
        default_factory=dict
    )  # name -> (help, label name, read)


class _StateCollector(Collector):
    def __init__(self, sources: StateSources) -> None:
        self._sources = sources

    def collect(self) -> Iterable[Metric]:
        for name, (help_text, label, read) in self._sources.counters.items():
            family = CounterMetricFamily(name, help_text, labels=[label])
            for value, count in sorted(read().items()):
                family.add_metric([value], count)
            yield family
        for name, (help_text, gauge) in self._sources.gauges.items():
            yield GaugeMetricFamily(name, help_text, value=gauge())
        for name, (help_text, label, gauge_read) in self._sources.labelled_gauges.items():
            gauges = GaugeMetricFamily(name, help_text, labels=[label])
            for value, level in sorted(gauge_read().items()):
                gauges.add_metric([value], level)
            yield gauges


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.sources = StateSources()
        self.registry.register(_StateCollector(self.sources))
        self.turns = Counter(
            "wa_agentd_turns",
            "Turns finished, by kind of message and outcome.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.voice_notes = Counter(
            "wa_agentd_voice_replies",
            "Voice replies by result (sent, failed, skipped).",
            ["result"],
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "wa_agentd_stage_seconds",
            "Time spent per turn stage (download, stt, agent, tts, send, voice_send, total).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.upstream_calls = Counter(
            "wa_agentd_upstream_calls",
            "Upstream HTTP calls by upstream and status (HTTP code, timeout or error).",
            ["upstream", "status"],
            registry=self.registry,
        )

        # What the daemon spends (names agreed with the alerts, brief/metrics-contract.md).
        self.agent_calls = Counter(
            "wa_agentd_agent_calls",
            "Agentforce message calls made, by the outcome of the turn that made them.",
            ["outcome"],
            registry=self.registry,
        )
        self.stt_seconds = Counter(
            "wa_agentd_stt_seconds",
            "Seconds of audio sent to speech-to-text (once per attempt), by turn outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.tts_characters = Counter(
            "wa_agentd_tts_characters",
            "Characters sent to text-to-speech (once per attempt), by turn outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.whatsapp_messages = Counter(
            "wa_agentd_whatsapp_messages_sent",
            "WhatsApp messages sent, each billed: text (answer parts), voice, canned (an "
            "apology or notice in place of the answer), extra (holding, echo).",
            ["kind"],
            registry=self.registry,
        )

        self.circuit_changes = Counter(
            "wa_agentd_circuit_changes",
            "Circuit breaker state changes, by upstream and the state entered.",
            ["upstream", "state"],
            registry=self.registry,
        )
        self.retries = Counter(
            "wa_agentd_retries",
            "Upstream call retries, by upstream and outcome: retried (one retry made), "
            "budget_spent (a retry wanted, the budget said no), recovered / gave_up (a retried "
            "call succeeded / still failed).",
            ["upstream", "outcome"],
            registry=self.registry,
        )

    def __call__(self, event: Event) -> None:
        match event:
            case UpstreamCallDone(upstream, status):
                self.observe_upstream(upstream, status)
            case RetryDecided(upstream, outcome):
                self.retries.labels(upstream, outcome.value).inc()
            case CircuitChanged(upstream, _, new):
                self.circuit_changes.labels(upstream, new.value).inc()
            case TurnFinished(report):
                self.observe_turn(report)

    def observe_turn(self, report: TurnReport) -> None:
        self.turns.labels(report.kind, report.outcome).inc()
        if report.voice != "none":
            self.voice_notes.labels(report.voice).inc()
        for stage, seconds in report.stages.items():
            self.stage_seconds.labels(stage).observe(seconds)
        outcome = report.outcome
        if report.agent_calls:
            self.agent_calls.labels(outcome).inc(report.agent_calls)
        if report.stt_seconds:
            self.stt_seconds.labels(outcome).inc(report.stt_seconds)
        if report.tts_characters:
            self.tts_characters.labels(outcome).inc(report.tts_characters)
        for kind, messages in report.sent.items():
            self.whatsapp_messages.labels(kind).inc(messages)

    def observe_upstream(self, upstream: str, status: str) -> None:
        self.upstream_calls.labels(upstream, status).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
