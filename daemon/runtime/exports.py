"""State /metrics reads at scrape time: web counters, lanes, caches, limits, the edge.

The collector reads each value from the object that owns it (daemon/observe/metrics.py:
one source of truth, no second bookkeeping); this module tells it where they are. The
names and help texts are the contract the alerts and the dashboard are held to
(deploy/, tests/deploy/).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from daemon import web_guard
from daemon.agentforce.client import AgentforceClient
from daemon.answers import CachedAgent
from daemon.config import Settings
from daemon.limits import Limit, MemoryBudget, MemoryUserLimits
from daemon.observe import cgroup
from daemon.observe.metrics import Metrics
from daemon.resilience.breaker import State
from daemon.resilience.guard import Guard
from daemon.runtime.compose import Caches, Graph
from daemon.runtime.jobs import Counts
from daemon.web_context import WebContext

CIRCUIT_VALUES = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}


def export_all(
    graph: Graph,
    ctx: WebContext,
    counts: Counts,
    listeners: Sequence[web_guard.ListenerConfig],
) -> None:
    """Everything /metrics reads at scrape time, besides the events it counts."""
    metrics = graph.obs.metrics
    export_state(metrics, ctx, graph.agent, counts)
    export_caches(metrics, graph.caches, graph.cached_agent)
    export_limits(metrics, graph.limits, graph.budget)
    export_bounds(metrics, graph.settings)
    metrics.sources.gauges["wa_agentd_turns_deferred"] = (
        "Turns accepted and not finished that no lane holds: deferred because nothing "
        "could be delivered (tried again every [inbox] retry_every), or left by the last "
        "run. Counted every [inbox] retry_every.",
        lambda: counts.deferred,
    )
    export_circuits(metrics, graph.guard)
    export_edge(metrics, ctx, listeners)


def configured_bounds(settings: Settings) -> dict[str, int]:
    """The bounds the queue, lanes and turns are held to (wa_agentd_capacity, the status)."""
    return {
        "queue_size": settings.server.queue_size,
        "max_lanes": settings.lanes.max_lanes,
        "max_concurrent_turns": settings.lanes.max_concurrent_turns,
    }


def export_circuits(metrics: Metrics, guard: Guard) -> None:
    metrics.sources.labelled_gauges["wa_agentd_circuit_state"] = (
        "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open.",
        "upstream",
        lambda: {
            name: CIRCUIT_VALUES[breaker.snapshot().state]
            for name, breaker in guard.breakers.items()
        },
    )


def export_state(
    metrics: Metrics, ctx: WebContext, agent: AgentforceClient, counts: Counts
) -> None:
    """State the collector reads at scrape time (one source of truth, no copies)."""
    stats, lanes = ctx.stats, ctx.lanes
    metrics.sources.counters.update(
        {
            "wa_agentd_webhooks": (
                "Webhook deliveries by outcome.",
                "outcome",
                lambda: stats.webhooks,
            ),
            "wa_agentd_messages": (
                "Inbound messages by what became of them.",
                "outcome",
                lambda: stats.messages,
            ),
            "wa_agentd_statuses": (
                "Outbound message statuses reported by WhatsApp.",
                "status",
                lambda: stats.statuses,
            ),
        }
    )
    metrics.sources.gauges.update(
        {
            "wa_agentd_queue_depth": (
                "Messages accepted and not yet started.",
                lambda: lanes.queued,
            ),
            "wa_agentd_turns_in_flight": ("Turns running now.", lambda: lanes.running),
            "wa_agentd_lanes": (
                "Users with a lane (work queued or running).",
                lambda: lanes.active,
            ),
            "wa_agentd_users_waiting": (
                "Users whose lane is full, with messages waiting in the inbox for it.",
                lambda: len(lanes.parked()),
            ),
            "wa_agentd_agent_sessions": ("Agentforce sessions open.", lambda: agent.sessions_open),
            "wa_agentd_dedupe_ids": (
                "Message ids remembered for dedupe (durable inbox rows).",
                lambda: sum(counts.store_rows.values()),
            ),
        }
    )


def export_edge(
    metrics: Metrics, ctx: WebContext, listeners: Sequence[web_guard.ListenerConfig]
) -> None:
    """The HTTP edge under load or attack: connections, refusals, bodies being read."""
    # The first listener is the public one, the second (if any) the admin one.
    caps = {
        name: cfg.connections
        for name, cfg in zip(("public", "admin"), listeners, strict=False)
        if cfg.connections is not None
    }
    metrics.sources.labelled_gauges["wa_agentd_http_connections"] = (
        "Connections open now, per listener (public, admin).",
        "listener",
        lambda: {name: len(cap) for name, cap in caps.items()},
    )
    metrics.sources.counters["wa_agentd_http_connections_shed"] = (
        "Connections closed at a listener's cap ([server] max_connections): evicted (the"
        " oldest idle one, to make room) or refused (none idle: 503).",
        "outcome",
        lambda: {
            "evicted": sum(cap.evicted for cap in caps.values()),
            "refused": sum(cap.refused for cap in caps.values()),
        },
    )
    metrics.sources.counters["wa_agentd_http_protocol_errors"] = (
        "Connections ended by an HTTP protocol error the server did not handle, by exception.",
        "error",
        lambda: web_guard.protocol_errors,
    )
    metrics.sources.gauges["wa_agentd_webhook_bodies_reading"] = (
        "Webhook bodies being read or held now ([server] max_body_reads).",
        lambda: ctx.bodies.held_reads,
    )
    metrics.sources.gauges["wa_agentd_webhook_body_bytes"] = (
        "Bytes reserved by the webhook bodies being read ([server] body_memory_bytes).",
        lambda: ctx.bodies.held_bytes,
    )


def cache_lookups(caches: Caches, cached_agent: CachedAgent | None) -> dict[str, int]:
    """Lookups per cache and result, as wa_agentd_cache_lookups_total and the status show."""
    audio, stt, ids = caches.audio.stats(), caches.transcripts.stats(), caches.media_ids.stats()
    counts = {
        "audio_hit": audio.memory_hits + audio.disk_hits,
        "audio_miss": audio.misses,
        "transcript_hit": stt.hits,
        "transcript_miss": stt.misses,
        "media_id_hit": ids.hits,
        "media_id_miss": ids.misses,
        "media_id_gone": ids.gone,
    }
    if caches.responses is not None:
        responses = caches.responses.stats()
        counts |= {"response_hit": responses.hits, "response_miss": responses.misses}
    if cached_agent is not None:
        counts["response_shared"] = cached_agent.stats.shared
        counts["response_unshared"] = cached_agent.stats.unshared
    return counts


def export_caches(metrics: Metrics, caches: Caches, cached_agent: CachedAgent | None) -> None:
    """Hits, misses, entries and bytes of every cache, read at scrape time."""

    def entries() -> dict[str, int]:
        audio = caches.audio.stats()
        counts = {
            "audio_memory": audio.memory_entries,
            "audio_disk": audio.disk_entries,
            "media_ids": len(caches.media_ids),
            "transcripts": len(caches.transcripts),
        }
        if caches.responses is not None:
            counts["responses"] = caches.responses.stats().entries
        return counts

    def sizes() -> dict[str, int]:
        audio = caches.audio.stats()
        counts = {
            "audio_memory": audio.memory_bytes,
            "audio_disk": audio.disk_bytes,
            "transcripts": caches.transcripts.stats().bytes,
        }
        if caches.responses is not None:
            counts["responses"] = caches.responses.stats().bytes
        return counts

    metrics.sources.counters["wa_agentd_cache_lookups"] = (
        "Cache lookups by cache and result (hit, miss; media_id_gone: a reused id Graph refused;"
        " response_shared/unshared: FAQ askers who waited for another's agent call and got its"
        " answer, or asked the agent themselves).",
        "result",
        partial(cache_lookups, caches, cached_agent),
    )
    metrics.sources.labelled_gauges["wa_agentd_cache_entries"] = (
        "Entries held per cache.",
        "cache",
        entries,
    )
    metrics.sources.labelled_gauges["wa_agentd_cache_bytes"] = (
        "Bytes held per cache (responses, transcripts: their text).",
        "cache",
        sizes,
    )


def export_limits(metrics: Metrics, limits: MemoryUserLimits, budget: MemoryBudget) -> None:
    """What the limits refused and how much of each budget is spent, read at scrape time
    (names agreed with the alerts: brief/metrics-contract.md)."""
    metrics.sources.counters["wa_agentd_limited"] = (
        "Messages (or their transcription or voice note) dropped by a per-user limit.",
        "limit",
        lambda: {limit.value: limits.refusals().get(limit.value, 0) for limit in Limit},
    )
    metrics.sources.labelled_gauges["wa_agentd_budget_used_ratio"] = (
        "Share of today's (UTC) global budget spent per upstream; 0 without a budget.",
        "upstream",
        budget.used_ratios,
    )
    metrics.sources.labelled_gauges["wa_agentd_budget_exhausted"] = (
        "1 while the upstream's global daily budget is spent (the operator alert), else 0.",
        "upstream",
        lambda: {name: float(ratio >= 1.0) for name, ratio in budget.used_ratios().items()},
    )


def export_bounds(metrics: Metrics, settings: Settings) -> None:
    """The bounds the queue, lanes and memory are held to, so alerts compare against them
    instead of copies of the config and the unit."""
    bounds = configured_bounds(settings)
    metrics.sources.labelled_gauges["wa_agentd_capacity"] = (
        "Configured bounds: queue_size (for wa_agentd_queue_depth), max_lanes (for "
        "wa_agentd_lanes), max_concurrent_turns (for wa_agentd_turns_in_flight).",
        "bound",
        lambda: bounds,
    )
    metrics.sources.labelled_gauges["wa_agentd_memory_limit_bytes"] = (
        "The service cgroup's memory limits (systemd MemoryHigh=: high, MemoryMax=: max); "
        "absent when unlimited or not under cgroup v2.",
        "limit",
        cgroup.memory_limits,
    )
