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
from dataclasses import dataclass, field
from functools import partial

import httpx
import trio
from hypercorn.trio import serve

from daemon import web_guard
from daemon.agentforce.client import AgentforceClient
from daemon.agentforce.sessions import SessionStore
from daemon.answers import CachedAgent
from daemon.cache.audio import AudioCache
from daemon.cache.media_ids import MediaIds
from daemon.cache.response import PendingContext, ResponseCache
from daemon.cache.rules import DEFAULT_PERSONAL, CacheRule, DenyRule, Rules
from daemon.cache.stt import TranscriptCache
from daemon.channels.base import Channel
from daemon.channels.meta.channel import MetaChannel
from daemon.channels.meta.client import GraphClient
from daemon.channels.twilio.channel import TwilioChannel
from daemon.channels.twilio.client import TwilioClient
from daemon.config import Settings
from daemon.connections import ConnectionCap
from daemon.errors import UpstreamError
from daemon.http import ResponseHook, make_client
from daemon.lanes import Deferrals, Lanes
from daemon.language_memory import LanguageMemory
from daemon.limits import Limit, MemoryBudget, MemoryUserLimits
from daemon.observe import cgroup, logs
from daemon.observe.health import Readiness, StoreProbe, UpstreamHealth
from daemon.observe.metrics import Metrics
from daemon.observe.notify import StatusLine, notify, watchdog, watchdog_interval
from daemon.observe.recent import RecentErrors
from daemon.observe.snapshot import StatusSources
from daemon.resilience.breaker import CircuitBreaker, State
from daemon.resilience.guard import Guard
from daemon.resilience.retry import RetryBudget
from daemon.resume import count_deferred, keep_resuming, resume_unfinished
from daemon.speech.cached import CachedSpeech
from daemon.speech.client import ElevenLabs
from daemon.state import open_store
from daemon.state.base import Store
from daemon.state.memory import MemoryDeferred, MemoryPending, MemoryResponses
from daemon.state.public_media import PublicMedia
from daemon.text import for_speech
from daemon.turn import Agent, Turn, TurnReport
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


@dataclass
class Observability:
    """Where upstream outcomes and turn reports go: metrics and the readiness tracker."""

    metrics: Metrics
    health: UpstreamHealth
    errors: RecentErrors = field(default_factory=RecentErrors)  # for /admin/status

    def upstream(self, name: str, status: str) -> None:
        self.metrics.observe_upstream(name, status)
        self.health.record(name, status)
        self.errors.upstream(name, status)

    def hook(self, name: Callable[[httpx.Request], str]) -> ResponseHook:
        """An httpx response hook that counts every answer of one upstream pool."""

        async def on_response(response: httpx.Response) -> None:
            self.upstream(name(response.request), str(response.status_code))

        return on_response

    def turn(self, report: TurnReport) -> None:
        self.metrics.observe_turn(report)
        self.errors.turn(report)
        for upstream, status in report.failures:
            self.upstream(upstream, status)


def _elevenlabs_upstream(request: httpx.Request) -> str:
    return "elevenlabs-stt" if request.url.path.endswith("/speech-to-text") else "elevenlabs-tts"


@dataclass
class Upstreams:
    """The three upstream clients and the pooled httpx clients under them."""

    channel: Channel
    agent: AgentforceClient
    speech: ElevenLabs
    pools: list[httpx.AsyncClient]
    caches: Caches
    public_media: PublicMedia | None = None  # voice notes a provider fetches from us (Twilio)

    @property
    def answers(self) -> Agent:
        """The agent as the turn sees it: behind the response cache when it is on."""
        return self.caches.answers or self.agent

    @property
    def voice(self) -> CachedSpeech:
        return CachedSpeech(self.speech, self.caches.audio)


@dataclass
class Caches:
    """Everything that saves an upstream call, bounded, flushable as one."""

    audio: AudioCache
    media_ids: MediaIds
    transcripts: TranscriptCache
    answers: CachedAgent | None = None  # None: [cache] responses = false
    responses: ResponseCache | None = None

    async def flush(self) -> dict[str, int]:
        flushed = {
            "audio": await self.audio.flush(),
            "media_ids": self.media_ids.flush(),
            "transcripts": self.transcripts.flush(),
        }
        if self.responses is not None:
            flushed["responses"] = self.responses.flush()
        return flushed


def build_caches(settings: Settings) -> Caches:
    c = settings.cache
    disk = settings.cache_dir() / "tts" if c.audio_disk_bytes > 0 else None
    return Caches(
        audio=AudioCache(
            max_bytes=c.audio_memory_bytes, disk_dir=disk, disk_max_bytes=c.audio_disk_bytes
        ),
        media_ids=MediaIds(max_entries=c.media_ids, ttl=c.media_id_ttl),
        transcripts=TranscriptCache(max_entries=c.transcripts, ttl=c.transcript_ttl),
    )


def _cached_answers(settings: Settings, agent: AgentforceClient, caches: Caches) -> None:
    c = settings.cache
    if not c.responses:
        return
    rules = Rules(
        faq=[CacheRule(r.pattern, r.ttl, r.standalone, r.name) for r in c.faq],
        deny=[DenyRule(r.pattern, r.name) for r in c.deny],
        personal=c.personal or DEFAULT_PERSONAL,
        opener_ttl=c.opener_ttl,
    )
    caches.responses = ResponseCache(
        max_entries=c.response_entries, default_ttl=c.opener_ttl, confirmations=c.confirmations
    )
    pending = PendingContext(
        max_users=settings.agentforce.max_sessions, ttl=settings.agentforce.session_idle
    )
    caches.answers = CachedAgent(
        agent,
        rules=rules,
        responses=MemoryResponses(caches.responses),
        pending=MemoryPending(pending),
        agent_id=settings.agentforce.agent_id,
    )


def build_upstreams(settings: Settings, stack: AsyncExitStack, obs: Observability) -> Upstreams:
    t, h, s = settings.timeouts, settings.http, settings.secrets
    channel_http = make_client(
        h,
        read_timeout=max(t.whatsapp, t.download),
        on_response=obs.hook(lambda _: "whatsapp"),
    )
    agent_http = make_client(h, read_timeout=t.agent, on_response=obs.hook(lambda _: "agentforce"))
    speech_http = make_client(
        h, read_timeout=max(t.stt, t.tts), on_response=obs.hook(_elevenlabs_upstream)
    )
    pools = [channel_http, agent_http, speech_http]
    for pool in pools:
        stack.push_async_callback(pool.aclose)
    caches = build_caches(settings)
    channel, public_media = _build_channel(settings, channel_http, caches.media_ids)
    af = settings.agentforce
    agent = AgentforceClient(
        agent_http,
        token_url=af.token_url,
        api_url=af.api_url,
        instance_endpoint=af.instance_endpoint,
        agent_id=af.agent_id,
        client_id=s.get("AGENTFORCE_CLIENT_ID"),
        client_secret=s.get("AGENTFORCE_CLIENT_SECRET"),
        sessions=SessionStore(max_sessions=af.max_sessions, idle_seconds=af.session_idle),
        token_ttl=af.token_ttl,
        forward_greeting=af.forward_greeting,
        bypass_user=af.bypass_user,
        stream_idle=settings.timeouts.agent_idle,
    )
    el = settings.elevenlabs
    speech = ElevenLabs(
        speech_http,
        api_url=el.api_url,
        api_key=s.get("ELEVENLABS_API_KEY"),
        voice_id=el.voice_id,
        tts_model=el.tts_model,
        stt_model=el.stt_model,
        output_format=el.output_format,
        voice_settings=el.voice_settings(),
    )
    _cached_answers(settings, agent, caches)
    return Upstreams(
        channel=channel,
        agent=agent,
        speech=speech,
        pools=pools,
        caches=caches,
        public_media=public_media,
    )


def _build_channel(
    settings: Settings, http: httpx.AsyncClient, media_ids: MediaIds
) -> tuple[Channel, PublicMedia | None]:
    """The configured WhatsApp provider. The only place that knows there are two."""
    s = settings.secrets
    if settings.channel.provider == "twilio":
        tw = settings.twilio
        media = PublicMedia(ttl=tw.media_ttl, max_bytes=tw.media_memory_bytes)
        client = TwilioClient(
            http,
            api_url=tw.api_url,
            account_sid=tw.account_sid,
            auth_token=s.get("TWILIO_AUTH_TOKEN"),
            media_hosts=tw.media_hosts,
            max_media_bytes=tw.max_media_bytes,
        )
        channel = TwilioChannel(
            client,
            media,
            auth_token=s.get("TWILIO_AUTH_TOKEN"),
            public_url=tw.public_url,
            from_=tw.from_,
        )
        return channel, media
    wa = settings.whatsapp
    meta = MetaChannel(
        GraphClient(
            http,
            graph_url=wa.graph_url,
            phone_number_id=wa.phone_number_id,
            access_token=s.get("WHATSAPP_ACCESS_TOKEN"),
            media_hosts=wa.media_hosts,
            max_media_bytes=wa.max_media_bytes,
        ),
        app_secret=s.get("WHATSAPP_APP_SECRET"),
        verify_token=s.get("WHATSAPP_VERIFY_TOKEN"),
        phone_number_id=wa.phone_number_id,
        only_own_number=wa.only_own_number,
        media_ids=media_ids,
    )
    return meta, None


def _hypercorn_config(bind: str, settings: Settings) -> web_guard.ListenerConfig:
    server = settings.server
    cfg = web_guard.ListenerConfig()
    cfg.bind = [bind]
    cfg.graceful_timeout = server.graceful_timeout
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("wa_agentd.http")
    # A client that connects and sends nothing is dropped (slow-loris); idle keep-alive
    # connections are closed after keep_alive_timeout (hypercorn default 5 s).
    cfg.read_timeout = 30
    # hypercorn's default backlog of 100 drops connections in a burst (Meta delivers
    # concurrently); the kernel caps this at net.core.somaxconn.
    cfg.backlog = 1024
    # Off by default: no upstream needs HTTP/2, and every protocol served is one more parser
    # facing the internet (daemon/web_guard.py; alpn too, should TLS ever be served here).
    cfg.http2 = server.http2
    cfg.alpn_protocols = ["h2", "http/1.1"] if server.http2 else ["http/1.1"]
    cfg.connections = ConnectionCap(server.max_connections)
    return cfg


def webhook_body_limit(settings: Settings) -> int:
    """The largest webhook body the configured provider may post: Twilio's form posts are
    small ([twilio] max_body_bytes), Meta's batches up to 3 MB ([server] max_body_bytes)."""
    if settings.channel.provider == "twilio":
        return min(settings.twilio.max_body_bytes, settings.server.max_body_bytes)
    return settings.server.max_body_bytes


async def _watch_signals(
    stop: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            log.info("received %s, stopping gracefully", signal.Signals(signum).name)
            stop.set()


async def _reap_sessions(agent: AgentforceClient, every: float, seconds: float) -> None:
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


_CIRCUIT_VALUES = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}


def build_guard(settings: Settings, metrics: Metrics) -> Guard:
    """A circuit breaker per upstream, sized from its timeout, and their retry budgets."""
    b, t = settings.breakers, settings.timeouts
    timeouts = {
        "whatsapp": t.whatsapp,
        "agentforce": t.agent,
        "elevenlabs-stt": t.stt,
        "elevenlabs-tts": t.tts,
    }

    def changed(name: str, old: State, new: State) -> None:
        level = logging.WARNING if new is State.OPEN else logging.INFO
        log.log(level, "circuit %s: %s -> %s", name, old.value, new.value)
        metrics.circuit_changes.labels(name, new.value).inc()

    breakers = {
        name: CircuitBreaker(
            name,
            window=b.window,
            min_calls=b.min_calls,
            failure_rate=b.failure_rate,
            slow_call_rate=b.slow_call_rate,
            slow_call_seconds=timeout / 2,
            open_seconds=b.open_seconds,
            half_open_calls=b.half_open_calls,
            half_open_timeout=timeout,
            # A half-open state that reaches no verdict (trials never come) opens again.
            half_open_max_seconds=max(60.0, 3 * timeout),
            on_change=changed,
        )
        for name, timeout in timeouts.items()
    }
    ratio = settings.retries.budget_ratio
    return Guard(
        breakers,
        # One budget per upstream (guard.py says why); each allows `ratio` of its own traffic.
        new_budget=lambda: RetryBudget(ratio=ratio),
        max_attempts=settings.retries.max_attempts,
        on_retry=lambda upstream, outcome: metrics.retries.labels(upstream, outcome).inc(),
    )


def _export_state(
    metrics: Metrics, ctx: WebContext, agent: AgentforceClient, store_counts: dict[str, int]
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
                lambda: sum(store_counts.values()),
            ),
        }
    )


def _export_edge(
    metrics: Metrics, ctx: WebContext, listeners: list[web_guard.ListenerConfig]
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


def cache_lookups(caches: Caches) -> dict[str, int]:
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
    if caches.answers is not None:
        counts["response_shared"] = caches.answers.stats.shared
        counts["response_unshared"] = caches.answers.stats.unshared
    return counts


def _export_caches(metrics: Metrics, caches: Caches) -> None:
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
        partial(cache_lookups, caches),
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


def _export_limits(metrics: Metrics, limits: MemoryUserLimits, budget: MemoryBudget) -> None:
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


def _bounds(settings: Settings) -> dict[str, int]:
    return {
        "queue_size": settings.server.queue_size,
        "max_lanes": settings.lanes.max_lanes,
        "max_concurrent_turns": settings.lanes.max_concurrent_turns,
    }


def _export_bounds(metrics: Metrics, settings: Settings) -> None:
    """The bounds the queue, lanes and memory are held to, so alerts compare against them
    instead of copies of the config and the unit."""
    bounds = _bounds(settings)
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


@dataclass
class Backlog:
    """Deferred turns as last counted, for /metrics (a scrape must not wait on the store)."""

    deferred: int = 0


async def _count_deferred(store: Store, lanes: Lanes, backlog: Backlog, every: float) -> None:
    while True:
        try:
            backlog.deferred = await count_deferred(store, lanes)
        except Exception:  # the next round may do better; the gauge keeps its last value
            log.exception("counting deferred turns failed")
        await trio.sleep(every)


async def _warm_agent(agent: AgentforceClient, seconds: float) -> None:
    """The OAuth token before the first user needs it: one agent round trip less for them."""
    try:
        with trio.move_on_after(seconds):
            await agent.warm_up()
    except UpstreamError as exc:  # the first question meets the same problem, and says so
        log.warning("could not fetch an Agentforce token at start-up: %s", exc)


async def _warm_caches(settings: Settings, ups: Upstreams) -> None:
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


async def _restore_sessions(settings: Settings, store: Store, agent: AgentforceClient) -> None:
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


async def _maintain_store(settings: Settings, store: Store, counts: dict[str, int]) -> None:
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
        guard = build_guard(settings, obs.metrics)
        state_dir = settings.state_dir()
        # Before the first message is seen: every hash of a user is keyed with this salt.
        logs.use_salt(logs.load_salt(state_dir, settings.secrets.get("WA_AGENTD_LOG_SALT")))
        store = await open_store(settings.state, settings.inbox, state_dir)
        stack.push_async_callback(store.close)
        await _restore_sessions(settings, store, ups.agent)
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
    def report(r: TurnReport) -> None:
        obs.turn(r)
        if on_report is not None:
            on_report(r)

    store_counts: dict[str, int] = {}  # refreshed by _maintain_store, read by /metrics
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
        languages=LanguageMemory(
            max_users=settings.lanes.remembered_users, ttl=settings.lanes.remembered_ttl
        ),
        limits=limits,
        budget=budget,
    )

    lanes_cfg = settings.lanes
    top.start_soon(
        _reap_sessions,
        ups.agent,
        min(60.0, settings.agentforce.session_idle / 4),
        settings.timeouts.agent,
    )
    top.start_soon(_warm_caches, settings, ups)
    top.start_soon(_warm_agent, ups.agent, settings.timeouts.agent)

    async with Lanes.open(
        turn.handle,
        max_lanes=lanes_cfg.max_lanes,
        max_pending=lanes_cfg.max_pending,
        queue_size=settings.server.queue_size,
        idle_seconds=lanes_cfg.idle_seconds,
        max_concurrent_turns=lanes_cfg.max_concurrent_turns,
        deferrals=Deferrals(
            MemoryDeferred(max_users=lanes_cfg.remembered_users), store, turn.held_back
        ),
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
        _export_state(obs.metrics, ctx, ups.agent, store_counts)
        inbox = settings.inbox
        await resume_unfinished(store, lanes, window=inbox.retry_window)
        top.start_soon(
            partial(keep_resuming, store, lanes, every=inbox.retry_every, window=inbox.retry_window)
        )
        top.start_soon(_maintain_store, settings, store, store_counts)
        _export_caches(obs.metrics, ups.caches)
        _export_limits(obs.metrics, limits, budget)
        _export_bounds(obs.metrics, settings)
        backlog = Backlog()
        top.start_soon(_count_deferred, store, lanes, backlog, inbox.retry_every)
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
            bounds=_bounds(settings),
            breakers=guard.breakers,
            cache_lookups=partial(cache_lookups, ups.caches),
            errors=obs.errors,
        ).snapshot
        obs.metrics.sources.labelled_gauges["wa_agentd_circuit_state"] = (
            "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open.",
            "upstream",
            lambda: {
                name: _CIRCUIT_VALUES[breaker.snapshot().state]
                for name, breaker in guard.breakers.items()
            },
        )
        # The listeners stay open while the turns drain, answering webhooks with 503 (Meta
        # retries them later, elsewhere or after the restart); they close once drained.
        http_stop = trio.Event()
        separate_admin = bool(settings.admin.bind)
        public_config = _hypercorn_config(settings.server.bind, settings)
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
                admin_config = _hypercorn_config(settings.admin.bind, settings)
                listeners.append(admin_config)
                admin_urls = await http.start(
                    partial(
                        serve,
                        create_admin_app(ctx),
                        admin_config,
                        shutdown_trigger=http_stop.wait,
                    )
                )
            _export_edge(obs.metrics, ctx, listeners)
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
