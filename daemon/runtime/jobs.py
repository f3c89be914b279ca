"""Background work beside the turns: one list of jobs (``start``), one loop for them all.

    every(seconds, fn, name)   fn() every ``seconds`` while the daemon serves; a round that
                               raises is logged ("<name> failed") and the next one comes
    once(fn, name)             the same for one round (the warm-ups)

A job never takes the daemon down: a round that fails was only one round. Rounds that must
not wait on a hung upstream get a ``limit`` (what they could not do then waits for the next).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import trio

from daemon.agentforce.client import AgentforceClient
from daemon.cache.audio import AudioCache
from daemon.config import Settings
from daemon.errors import UpstreamError
from daemon.lanes import Lanes
from daemon.resume import count_deferred, keep_resuming
from daemon.runtime.compose import Graph
from daemon.speech.cached import CachedSpeech
from daemon.state.base import Store
from daemon.text import for_speech

log = logging.getLogger("wa_agentd")

# Store maintenance (dedupe rows past their TTL, idle sessions) is cheap and not urgent.
STORE_UPKEEP_EVERY = 300.0


@dataclass
class Counts:
    """What the jobs counted last, for /metrics and the status: a scrape must not wait on
    the store."""

    deferred: int = 0  # turns accepted, not finished, held by no lane
    store_rows: dict[str, int] = field(default_factory=dict)  # the store's rows, by table


async def every(
    seconds: float,
    fn: Callable[[], Awaitable[object]],
    name: str,
    *,
    wait_first: bool = False,
    limit: float | None = None,
) -> None:
    """``fn()`` now (or after ``seconds``, with ``wait_first``), then every ``seconds``."""
    if wait_first:
        await trio.sleep(seconds)
    while True:
        await once(fn, name, limit=limit)
        await trio.sleep(seconds)


async def once(
    fn: Callable[[], Awaitable[object]], name: str, *, limit: float | None = None
) -> None:
    """One round of ``fn()``, at most ``limit`` seconds of it; an error is logged, not raised."""
    try:
        with trio.move_on_after(limit if limit is not None else float("inf")):
            await fn()
    except Exception:  # the next round may do better; the daemon serves regardless
        log.exception("%s failed", name)


def start(nursery: trio.Nursery, graph: Graph, lanes: Lanes, counts: Counts) -> None:
    """Every background job of the daemon, started in ``nursery``."""
    s = graph.settings
    nursery.start_soon(
        partial(
            every,
            min(60.0, s.agentforce.session_idle / 4),
            partial(end_idle_sessions, graph.agent),
            "ending idle sessions",
            wait_first=True,
            limit=s.timeouts.agent,
        )
    )
    nursery.start_soon(
        once, partial(warm_caches, s, graph.caches.audio, graph.voice), "warming the caches"
    )
    nursery.start_soon(
        partial(once, partial(warm_agent, graph.agent), "warming the agent", limit=s.timeouts.agent)
    )
    # Its own loop (daemon/resume.py): besides every retry_every, it runs a round as soon as
    # a parked user's lane has room again.
    nursery.start_soon(
        partial(
            keep_resuming,
            graph.store,
            lanes,
            every=s.inbox.retry_every,
            window=s.inbox.retry_window,
        )
    )
    nursery.start_soon(
        every,
        STORE_UPKEEP_EVERY,
        partial(upkeep_store, s, graph.store, counts),
        "store maintenance",
    )
    nursery.start_soon(
        every,
        s.inbox.retry_every,
        partial(count_deferred_turns, graph.store, lanes, counts),
        "counting deferred turns",
    )


async def end_idle_sessions(agent: AgentforceClient) -> None:
    """End the agent sessions idle past [agentforce] session_idle (DELETE, Expiration)."""
    ended = await agent.end_idle_sessions()
    if ended:
        log.info("ended %d idle agent sessions", ended)


async def upkeep_store(settings: Settings, store: Store, counts: Counts) -> None:
    """Prune dedupe rows past their TTL and idle sessions; keep the counts for /metrics."""
    pruned = await store.prune()
    await store.drop_idle_sessions(time.time() - settings.agentforce.session_idle)
    counts.store_rows = await store.counts()
    if pruned:
        log.info("store: pruned %d finished turns past the dedupe window", pruned)


async def count_deferred_turns(store: Store, lanes: Lanes, counts: Counts) -> None:
    """Count the deferred turns; a failed count keeps the last one for the gauge."""
    counts.deferred = await count_deferred(store, lanes)


async def warm_agent(agent: AgentforceClient) -> None:
    """The OAuth token before the first user needs it: one agent round trip less for them."""
    try:
        await agent.warm_up()
    except UpstreamError as exc:  # the first question meets the same problem, and says so
        log.warning("could not fetch an Agentforce token at start-up: %s", exc)


async def warm_caches(settings: Settings, audio: AudioCache, voice: CachedSpeech) -> None:
    """Read the audio cache's disk index and speak the configured phrases, off the hot path
    (a cold cache is slower, not broken)."""
    await audio.load_index()
    rendered = 0
    # Rendered as the turn speaks them (Markdown and links stripped), so they match.
    if settings.cache.prerender:
        rendered += await voice.prerender(
            map(for_speech, settings.cache.prerender),
            language=settings.cache.prerender_language,
        )
    if settings.cache.prerender_canned:
        for code, table in settings.texts.tables.items():
            rendered += await voice.prerender(map(for_speech, table.spoken()), language=code)
    if settings.cache.prerender or settings.cache.prerender_canned:
        log.info("pre-rendered %d phrases into the audio cache", rendered)


async def restore_sessions(settings: Settings, store: Store, agent: AgentforceClient) -> None:
    """Agent sessions saved before the restart, so conversations keep their context."""
    now, idle_limit = time.time(), settings.agentforce.session_idle
    restored = 0
    for user, (session_id, next_sequence, last_used) in (await store.load_sessions()).items():
        idle = max(0.0, now - last_used)
        if idle < idle_limit:
            agent.restore(user, session_id, next_sequence, idle)
            restored += 1
    dropped = await store.drop_idle_sessions(now - idle_limit)
    if restored or dropped:
        log.info("agent sessions: %d restored, %d too old dropped", restored, dropped)
