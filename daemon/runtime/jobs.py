"""Background work beside the turns: reaping sessions, store upkeep, warm-ups."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import trio

from daemon.agentforce.client import AgentforceClient
from daemon.config import Settings
from daemon.errors import UpstreamError
from daemon.lanes import Lanes
from daemon.resume import count_deferred
from daemon.runtime.compose import Upstreams
from daemon.state.store import Store
from daemon.text import for_speech

log = logging.getLogger("wa_agentd")


async def reap_sessions(agent: AgentforceClient, every: float, seconds: float) -> None:
    """End idle agent sessions every ``every`` seconds; a round gets ``seconds`` at most
    (what it could not end then is kept for the next round)."""
    while True:
        await trio.sleep(every)
        ended = 0
        try:
            with trio.move_on_after(seconds):
                ended = await agent.end_idle_sessions()
        except Exception:  # the reaper must outlive any single bad round
            log.exception("ending idle sessions failed")
            continue
        if ended:
            log.info("ended %d idle agent sessions", ended)


@dataclass
class Backlog:
    """Deferred turns as last counted, for /metrics (a scrape must not wait on the store)."""

    deferred: int = 0


async def keep_counting_deferred(
    store: Store, lanes: Lanes, backlog: Backlog, every: float
) -> None:
    while True:
        try:
            backlog.deferred = await count_deferred(store, lanes)
        except Exception:  # the next round may do better; the gauge keeps its last value
            log.exception("counting deferred turns failed")
        await trio.sleep(every)


async def warm_agent(agent: AgentforceClient, seconds: float) -> None:
    """The OAuth token before the first user needs it: one agent round trip less for them."""
    try:
        with trio.move_on_after(seconds):
            await agent.warm_up()
    except UpstreamError as exc:  # the first question meets the same problem, and says so
        log.warning("could not fetch an Agentforce token at start-up: %s", exc)


async def warm_caches(settings: Settings, ups: Upstreams) -> None:
    """Read the audio cache's disk index and speak the configured phrases, off the hot path."""
    try:
        await ups.caches.audio.load_index()
        rendered = 0
        # Rendered as the turn speaks them (Markdown and links stripped), so they match.
        if settings.cache.prerender:
            rendered += await ups.voice.prerender(
                map(for_speech, settings.cache.prerender),
                language=settings.cache.prerender_language,
            )
        if settings.cache.prerender_canned:
            for code, table in settings.texts.tables.items():
                rendered += await ups.voice.prerender(
                    map(for_speech, table.spoken()), language=code
                )
        if settings.cache.prerender or settings.cache.prerender_canned:
            log.info("pre-rendered %d phrases into the audio cache", rendered)
    except Exception:  # a cold cache is slower, not broken
        log.exception("warming the caches failed")


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


async def maintain_store(settings: Settings, store: Store, counts: dict[str, int]) -> None:
    """Prune dedupe rows past their TTL and idle sessions; keep the counts for /metrics."""
    while True:
        try:
            pruned = await store.prune()
            await store.drop_idle_sessions(time.time() - settings.agentforce.session_idle)
            counts.clear()
            counts.update(await store.counts())
            if pruned:
                log.info("store: pruned %d finished turns past the dedupe window", pruned)
        except Exception:  # the next round may do better; the daemon serves regardless
            log.exception("store maintenance failed")
        await trio.sleep(300)
