"""The trio main: owns the nurseries, serves, drains, stops.

    run()
     ├── signal watcher          SIGTERM/SIGINT -> graceful stop
     ├── jobs                    reaper, store upkeep, resume, warm-ups (jobs.py)
     ├── watchdog, status line   WATCHDOG=1 and STATUS= from the event loop, for systemd
     └── lanes nursery           the turns (owned here, never by the web framework)
          └── http nursery       hypercorn: webhook (+ admin routes, or a second listener)

Start: the graph (compose.py) -> agent sessions restored -> lanes open -> unfinished turns
resumed -> jobs -> listeners -> READY=1. Stop (``drain``): stop asked -> webhooks answered
503 (Meta retries) -> lanes finish the turns they hold within [server] drain_timeout (the rest
resume after the restart: durable inbox) -> the listeners close (requests in flight get
graceful_timeout) -> pooled clients and the store closed -> return.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial

import trio
from hypercorn.trio import serve

from daemon import web_guard
from daemon.agentforce.client import AgentforceClient
from daemon.config import Settings
from daemon.lanes import Deferrals, Lanes
from daemon.observe import logs
from daemon.observe.health import Readiness, StoreProbe
from daemon.observe.notify import StatusLine, notify, watchdog, watchdog_interval
from daemon.observe.snapshot import StatusSources
from daemon.resume import count_deferred, resume_unfinished
from daemon.runtime import exports, jobs
from daemon.runtime.compose import Graph, ReportCallback, compose, webhook_body_limit
from daemon.runtime.listener import listener_config
from daemon.state.memory import MemoryDeferred
from daemon.web import create_app
from daemon.web_admin import create_admin_app
from daemon.web_body import BodyBudget
from daemon.web_context import WebContext

log = logging.getLogger("wa_agentd")


@dataclass(frozen=True)
class Running:
    """A started daemon, as tests and the demo see it."""

    url: str  # base URL of the webhook listener
    admin_url: str  # base URL of the admin routes (== url unless [admin] bind is set)
    webhook_url: str
    stop: trio.Event  # set it to ask for a graceful stop
    web: WebContext
    lanes: Lanes
    agent: AgentforceClient


async def run(
    settings: Settings,
    *,
    handle_signals: bool = True,
    stop: trio.Event | None = None,
    on_report: ReportCallback | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until ``stop`` is set (or SIGTERM/SIGINT), then drain and return."""
    web_guard.install()
    stop = stop or trio.Event()
    started_at = time.time()  # "up since" in the status
    async with AsyncExitStack() as stack, trio.open_nursery() as top:
        if handle_signals:
            await top.start(watch_signals, stop)
        # Before the first message is seen: every hash of a user is keyed with this salt.
        logs.use_salt(
            logs.load_salt(settings.state_dir(), settings.secrets.get("WA_AGENTD_LOG_SALT"))
        )
        graph = await compose(settings, stack, on_report=on_report)
        await jobs.restore_sessions(settings, graph.store, graph.agent)
        graph.agent.persist_to(graph.store)
        async with open_lanes(graph) as lanes:
            counts = jobs.Counts()
            ctx = web_context(graph, lanes, counts, started_at, top)
            await resume_unfinished(graph.store, lanes, window=settings.inbox.retry_window)
            jobs.start(top, graph, lanes, counts)
            listeners = [listener_config(settings.server.bind, settings)]
            if settings.admin.bind:
                listeners.append(listener_config(settings.admin.bind, settings))
            exports.export_all(graph, ctx, counts, listeners)
            async with listening(ctx, listeners) as urls:
                running = Running(
                    url=urls[0],
                    admin_url=urls[-1],
                    webhook_url=urls[0] + settings.server.webhook_path,
                    stop=stop,
                    web=ctx,
                    lanes=lanes,
                    agent=graph.agent,
                )
                status = announce(running, settings, top)
                task_status.started(running)
                try:
                    await stop.wait()
                finally:
                    await drain(running, status, settings.server.drain_timeout)
        top.cancel_scope.cancel()
    log.info("stopped")


def open_lanes(graph: Graph) -> AbstractAsyncContextManager[Lanes]:
    """Per-user ordering for the turns, bounded by [lanes] and [server] queue_size."""
    lanes, server = graph.settings.lanes, graph.settings.server

    return Lanes.open(
        graph.turn.handle,
        max_lanes=lanes.max_lanes,
        max_pending=lanes.max_pending,
        queue_size=server.queue_size,
        idle_seconds=lanes.idle_seconds,
        max_concurrent_turns=lanes.max_concurrent_turns,
        deferrals=Deferrals(
            MemoryDeferred(max_users=lanes.remembered_users), graph.store, graph.turn.held_back
        ),
    )


def web_context(
    graph: Graph, lanes: Lanes, counts: jobs.Counts, started_at: float, nursery: trio.Nursery
) -> WebContext:
    """What the routes need: the channel, the inbox, the lanes, readiness, the admin views."""
    settings, server = graph.settings, graph.settings.server
    probe = StoreProbe(graph.store.probe)
    nursery.start_soon(probe.run)
    ready = Readiness(
        draining=lambda: lanes.closed,
        store=probe,
        circuits=graph.guard.open_circuits,
        upstreams=graph.obs.health,
    )
    status = StatusSources(
        provider=settings.channel.provider,
        started_at=started_at,
        ready=ready,
        lanes=lanes,
        count_deferred=partial(count_deferred, graph.store, lanes),
        last_deferred=lambda: counts.deferred,
        bounds=exports.configured_bounds(settings),
        breakers=graph.guard.breakers,
        cache_lookups=partial(exports.cache_lookups, graph.caches, graph.cached_agent),
        errors=graph.obs.errors,
    )
    return WebContext(
        channel=graph.channel,
        inbox=graph.store,
        lanes=lanes,
        webhook_path=server.webhook_path,
        max_body_bytes=webhook_body_limit(settings),
        bodies=BodyBudget(max_bytes=server.body_memory_bytes, max_reads=server.max_body_reads),
        ready=ready,
        metrics=graph.obs.metrics,
        routes=graph.routes,
        admin_token=settings.secrets.get("WA_AGENTD_ADMIN_TOKEN"),
        flush_caches=graph.caches.flush,
        status=status.snapshot,
        limits=graph.limits,
        max_waiting=settings.lanes.max_waiting,
    )


@asynccontextmanager
async def listening(
    ctx: WebContext, listeners: list[web_guard.ListenerConfig]
) -> AsyncIterator[list[str]]:
    """The public listener (and the admin one, when [admin] bind has its own address),
    serving until the block exits; yields their base URLs, the public one first.

    The listeners stay open while the turns drain, answering webhooks with 503 (Meta retries
    them later, elsewhere or after the restart); they close once drained."""
    http_stop = trio.Event()
    separate_admin = len(listeners) > 1
    apps = [create_app(ctx, admin_routes=not separate_admin)]
    if separate_admin:
        apps.append(create_admin_app(ctx))
    async with trio.open_nursery() as http:
        urls = []
        for app, config in zip(apps, listeners, strict=True):
            bound = await http.start(partial(serve, app, config, shutdown_trigger=http_stop.wait))
            urls.append(bound[0])
        try:
            yield urls
        finally:
            http_stop.set()


def announce(running: Running, settings: Settings, nursery: trio.Nursery) -> StatusLine:
    """Tell the log and systemd the daemon serves (READY=1 with the first STATUS=), and keep
    the status line and the watchdog going."""
    url = running.url
    log.info("listening on %s (webhook %s)", url, settings.server.webhook_path)
    if settings.admin.bind:
        log.info("admin routes on %s (/metrics, /readyz, /admin/*)", running.admin_url)
    status = StatusLine()
    status.text = f"listening on {url}"  # sent with READY=1, in the same datagram
    notify(f"READY=1\nSTATUS={status.text}")
    nursery.start_soon(status.keep_current, partial(status_text, running))
    interval = watchdog_interval()
    if interval:  # pings from the event loop itself: a blocked loop misses them
        nursery.start_soon(watchdog, interval)
    return status


async def drain(running: Running, status: StatusLine, seconds: float) -> None:
    """Stop taking webhooks (503) and let the lanes finish what they hold, for ``seconds``
    at most; turns still running then are cancelled and resume after the restart."""
    ctx, lanes = running.web, running.lanes
    # No checkpoint from here to the status: systemd gets STOPPING=1 and at once the line
    # saying what the stop waits for (turns in flight, queued).
    ctx.draining = True
    notify("STOPPING=1")
    status.set(status_text(running))
    log.info("draining: webhooks answered 503, finishing turns in flight")
    lanes.close()
    with trio.move_on_after(seconds) as drained:
        await lanes.drained()
    if drained.cancelled_caught:
        # They stay unfinished in the durable inbox and resume after the restart.
        log.warning(
            "drain timeout (%gs): %d turns still running were cancelled; "
            "they resume when the daemon starts again",
            seconds,
            lanes.running,
        )
        lanes.cancel()


def status_text(running: Running) -> str:
    """The STATUS= line: what an operator wants from `systemctl status` at a glance."""
    lanes = running.lanes
    work = f"{lanes.running} turns in flight, {lanes.queued} queued"
    if running.web.draining:
        return f"draining: {work}"
    return f"listening on {running.url}; {work}, {lanes.active} users active"


async def watch_signals(
    stop: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            log.info("received %s, stopping gracefully", signal.Signals(signum).name)
            stop.set()
