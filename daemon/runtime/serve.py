"""The trio main: builds the object graph, owns the nurseries, serves, drains, stops.

    run()
     ├── signal watcher          SIGTERM/SIGINT -> graceful stop
     ├── session reaper          ends idle Agentforce sessions (DELETE, reason Expiration)
     ├── watchdog                WATCHDOG=1 from the event loop, when systemd asks for it
     └── lanes nursery           the turns (owned here, never by the web framework)
          └── http nursery       hypercorn: webhook (+ admin routes, or a second listener)

Stop sequence: stop asked -> webhooks answered 503 (Meta retries) -> lanes finish the turns
they hold within [server] drain_timeout (the rest resume after the restart: durable inbox) ->
the listener closes (requests in flight get graceful_timeout) -> pooled clients and the store
closed -> return.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial

import trio
from hypercorn.trio import serve

from daemon import web_guard
from daemon.agentforce.client import AgentforceClient
from daemon.config import Settings
from daemon.lanes import Lanes
from daemon.limits import MemoryBudget, MemoryUserLimits
from daemon.model import Inbound
from daemon.observe import logs
from daemon.observe.health import Readiness, StoreProbe, UpstreamHealth
from daemon.observe.hooks import report_turns
from daemon.observe.metrics import Metrics
from daemon.observe.notify import StatusLine, notify, watchdog, watchdog_interval
from daemon.observe.snapshot import StatusSources
from daemon.resilience.guard import Guard
from daemon.resume import count_deferred, keep_resuming, resume_unfinished
from daemon.runtime.compose import (
    CIRCUIT_VALUES,
    Observability,
    Upstreams,
    build_guard,
    build_upstreams,
    configured_bounds,
    webhook_body_limit,
)
from daemon.runtime.exports import (
    cache_lookups,
    export_bounds,
    export_caches,
    export_edge,
    export_limits,
    export_state,
)
from daemon.runtime.jobs import (
    Backlog,
    keep_counting_deferred,
    maintain_store,
    reap_sessions,
    restore_sessions,
    warm_agent,
    warm_caches,
)
from daemon.runtime.listener import listener_config
from daemon.state.store import Store
from daemon.turn import Turn, TurnReport
from daemon.web import WebContext, create_admin_app, create_app
from daemon.web_body import BodyBudget

log = logging.getLogger("wa_agentd")


@dataclass
class Running:
    """A started daemon, as tests and the demo see it."""

    url: str  # base URL of the webhook listener
    admin_url: str  # base URL of the admin routes (== url unless [admin] bind is set)
    webhook_url: str
    stop: trio.Event  # set it to ask for a graceful stop
    web: WebContext
    lanes: Lanes
    agent: AgentforceClient


async def _watch_signals(
    stop: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            log.info("received %s, stopping gracefully", signal.Signals(signum).name)
            stop.set()


def _status(url: str, lanes: Lanes, ctx: WebContext) -> str:
    """The STATUS= line: what an operator wants from `systemctl status` at a glance."""
    work = f"{lanes.running} turns in flight, {lanes.queued} queued"
    if ctx.draining:
        return f"draining: {work}"
    return f"listening on {url}; {work}, {lanes.active} users active"


async def run(
    settings: Settings,
    *,
    handle_signals: bool = True,
    stop: trio.Event | None = None,
    upstreams: Callable[[Settings, AsyncExitStack, Observability], Upstreams] = build_upstreams,
    on_report: Callable[[TurnReport], None] | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until ``stop`` is set (or SIGTERM/SIGINT), then drain and return."""
    web_guard.install()
    stop = stop or trio.Event()
    async with AsyncExitStack() as stack, trio.open_nursery() as top:
        if handle_signals:
            await top.start(_watch_signals, stop)
        obs = Observability(Metrics(), UpstreamHealth())
        ups = upstreams(settings, stack, obs)
        guard = build_guard(settings, obs.hook)
        state_dir = settings.state_dir()
        # Before the first message is seen: every hash of a user is keyed with this salt.
        logs.use_salt(logs.load_salt(state_dir, settings.secrets.get("WA_AGENTD_LOG_SALT")))
        store = await Store.open(
            state_dir / "wa-agentd.sqlite3",
            dedupe_ttl=settings.inbox.dedupe_ttl,
            max_ids=settings.inbox.dedupe_max_ids,
        )
        stack.push_async_callback(store.close)
        await restore_sessions(settings, store, ups.agent)
        ups.agent.persist_to(store)
        async with _serving(settings, ups, obs, guard, store, stop, on_report, top) as running:
            task_status.started(running)
            await stop.wait()
        top.cancel_scope.cancel()
    log.info("stopped")


@asynccontextmanager
async def _serving(
    settings: Settings,
    ups: Upstreams,
    obs: Observability,
    guard: Guard,
    store: Store,
    stop: trio.Event,
    on_report: Callable[[TurnReport], None] | None,
    top: trio.Nursery,
) -> AsyncIterator[Running]:
    observe_turn = report_turns(obs.hook)

    def report(r: TurnReport) -> None:
        observe_turn(r)
        if on_report is not None:
            on_report(r)

    store_counts: dict[str, int] = {}  # refreshed by maintain_store, read by /metrics
    limits = MemoryUserLimits(settings.limits)
    budget = MemoryBudget(settings.limits)
    started_at = time.time()  # "up since" in the status

    turn = Turn(
        channel=ups.channel,
        agent=ups.answers,
        speech=ups.voice,
        transcripts=ups.caches.transcripts,
        guard=guard,
        journal=store,
        timeouts=settings.timeouts,
        voice=settings.voice,
        texts=settings.texts,
        ux=settings.ux,
        on_report=report,
        remembered_users=settings.lanes.remembered_users,
        remembered_ttl=settings.lanes.remembered_ttl,
        limits=limits,
        budget=budget,
    )

    async def handle(message: Inbound) -> None:
        await turn.run(message)

    lanes_cfg = settings.lanes
    top.start_soon(
        reap_sessions,
        ups.agent,
        min(60.0, settings.agentforce.session_idle / 4),
        settings.timeouts.agent,
    )
    top.start_soon(warm_caches, settings, ups)
    top.start_soon(warm_agent, ups.agent, settings.timeouts.agent)

    async with Lanes.open(
        handle,
        max_lanes=lanes_cfg.max_lanes,
        max_pending=lanes_cfg.max_pending,
        queue_size=settings.server.queue_size,
        idle_seconds=lanes_cfg.idle_seconds,
        max_concurrent_turns=lanes_cfg.max_concurrent_turns,
    ) as lanes:
        probe = StoreProbe(store.probe)
        ctx = WebContext(
            channel=ups.channel,
            inbox=store,
            lanes=lanes,
            webhook_path=settings.server.webhook_path,
            max_body_bytes=webhook_body_limit(settings),
            bodies=BodyBudget(
                max_bytes=settings.server.body_memory_bytes,
                max_reads=settings.server.max_body_reads,
            ),
            ready=Readiness(
                draining=lambda: lanes.closed,
                store=probe,
                circuits=guard.open_circuits,
                upstreams=obs.health,
            ),
            metrics=obs.metrics,
            public_media=ups.public_media,
            admin_token=settings.secrets.get("WA_AGENTD_ADMIN_TOKEN"),
            flush_caches=ups.caches.flush,
            limits=limits,
            max_waiting=lanes_cfg.max_waiting,
        )
        top.start_soon(probe.run)
        export_state(obs.metrics, ctx, ups.agent, store_counts)
        inbox = settings.inbox
        await resume_unfinished(store, lanes, window=inbox.retry_window)
        top.start_soon(
            partial(keep_resuming, store, lanes, every=inbox.retry_every, window=inbox.retry_window)
        )
        top.start_soon(maintain_store, settings, store, store_counts)
        export_caches(obs.metrics, ups.caches)
        export_limits(obs.metrics, limits, budget)
        export_bounds(obs.metrics, settings)
        backlog = Backlog()
        top.start_soon(keep_counting_deferred, store, lanes, backlog, inbox.retry_every)
        obs.metrics.sources.gauges["wa_agentd_turns_deferred"] = (
            "Turns accepted and not finished that no lane holds: deferred because nothing "
            "could be delivered (tried again every [inbox] retry_every), or left by the last "
            "run. Counted every [inbox] retry_every.",
            lambda: backlog.deferred,
        )
        ctx.status = StatusSources(
            provider=settings.channel.provider,
            started_at=started_at,
            ready=ctx.ready,
            lanes=lanes,
            count_deferred=partial(count_deferred, store, lanes),
            last_deferred=lambda: backlog.deferred,
            bounds=configured_bounds(settings),
            breakers=guard.breakers,
            cache_lookups=partial(cache_lookups, ups.caches),
            errors=obs.errors,
        ).snapshot
        obs.metrics.sources.labelled_gauges["wa_agentd_circuit_state"] = (
            "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open.",
            "upstream",
            lambda: {
                name: CIRCUIT_VALUES[breaker.snapshot().state]
                for name, breaker in guard.breakers.items()
            },
        )
        # The listeners stay open while the turns drain, answering webhooks with 503 (Meta
        # retries them later, elsewhere or after the restart); they close once drained.
        http_stop = trio.Event()
        separate_admin = bool(settings.admin.bind)
        public_config = listener_config(settings.server.bind, settings)
        listeners = [public_config]
        async with trio.open_nursery() as http:
            urls = await http.start(
                partial(
                    serve,
                    create_app(ctx, admin_routes=not separate_admin),
                    public_config,
                    shutdown_trigger=http_stop.wait,
                )
            )
            admin_urls = urls
            if separate_admin:
                admin_config = listener_config(settings.admin.bind, settings)
                listeners.append(admin_config)
                admin_urls = await http.start(
                    partial(
                        serve,
                        create_admin_app(ctx),
                        admin_config,
                        shutdown_trigger=http_stop.wait,
                    )
                )
            export_edge(obs.metrics, ctx, listeners)
            url = urls[0]
            log.info("listening on %s (webhook %s)", url, settings.server.webhook_path)
            if separate_admin:
                log.info("admin routes on %s (/metrics, /readyz, /admin/*)", admin_urls[0])
            status = StatusLine()
            status.text = f"listening on {url}"  # sent with READY=1, in the same datagram
            notify(f"READY=1\nSTATUS={status.text}")
            top.start_soon(status.keep_current, partial(_status, url, lanes, ctx))
            interval = watchdog_interval()
            if interval:  # pings from the event loop itself: a blocked loop misses them
                top.start_soon(watchdog, interval)
            try:
                yield Running(
                    url=url,
                    admin_url=admin_urls[0],
                    webhook_url=url + settings.server.webhook_path,
                    stop=stop,
                    web=ctx,
                    lanes=lanes,
                    agent=ups.agent,
                )
            finally:
                # No checkpoint from here to the status: systemd gets STOPPING=1 and at once
                # the line saying what the stop waits for (turns in flight, queued).
                ctx.draining = True
                notify("STOPPING=1")
                status.set(_status(url, lanes, ctx))
                log.info("draining: webhooks answered 503, finishing turns in flight")
                lanes.close()
                with trio.move_on_after(settings.server.drain_timeout) as drain:
                    await lanes.drained()
                if drain.cancelled_caught:
                    # They stay unfinished in the durable inbox and resume after the restart.
                    log.warning(
                        "drain timeout (%gs): %d turns still running were cancelled; "
                        "they resume when the daemon starts again",
                        settings.server.drain_timeout,
                        lanes.running,
                    )
                    lanes.cancel()
                http_stop.set()
