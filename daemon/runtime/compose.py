"""Settings -> one frozen object graph: every part of the daemon, built once, in one place.

    compose(settings, stack)     opens what must be opened, pushes every close onto ``stack``
     ├── Observability            the sinks of the events and the one hook feeding them
     ├── pools                    one httpx client per upstream, each counting its answers
     ├── channel                  the configured WhatsApp provider (channels/registry.py)
     ├── agent, speech            Agentforce (behind the response cache), ElevenLabs
     ├── Caches                   audio, media ids, transcripts, responses
     ├── guard                    a circuit breaker per upstream, their retry budgets
     ├── store                    the durable inbox, turn journal and agent sessions
     ├── limits, budget           per-user limits, the global daily budgets
     └── turn                     the turn, wired to all of the above

Constructors of the parts are called here and nowhere else, so a part that changes shape
changes one call site. What runs (the lanes, the listeners, the jobs) is serve.py's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

import httpx

from daemon.agentforce.client import AgentforceClient
from daemon.agentforce.sessions import SessionStore
from daemon.answers import CachedAgent
from daemon.cache.audio import AudioCache
from daemon.cache.media_ids import MediaIds
from daemon.cache.response import PendingContext, ResponseCache
from daemon.cache.rules import DEFAULT_PERSONAL, CacheRule, DenyRule, Rules
from daemon.cache.stt import TranscriptCache
from daemon.channels import registry
from daemon.channels.base import Channel
from daemon.channels.provider import Built, Routes, Wiring
from daemon.config import Settings
from daemon.http import make_client
from daemon.instrumentation.hooks import Hook, Hooks, count_responses, report_turns
from daemon.language_memory import LanguageMemory
from daemon.limits import MemoryBudget, MemoryUserLimits
from daemon.observe.eventlog import EventLog
from daemon.observe.health import UpstreamHealth
from daemon.observe.metrics import Metrics
from daemon.observe.recent import RecentErrors
from daemon.resilience.breaker import CircuitBreaker
from daemon.resilience.guard import Guard
from daemon.resilience.retry import RetryBudget
from daemon.speech.cached import CachedSpeech
from daemon.speech.client import ElevenLabs
from daemon.state import open_store as open_state
from daemon.state.base import Store
from daemon.state.memory import MemoryPending, MemoryResponses
from daemon.turn import Agent, Turn, TurnReport

ReportCallback = Callable[[TurnReport], None]


@dataclass(frozen=True)
class Observability:
    """The sinks of the daemon's events (daemon/instrumentation/events.py) and the hook feeding
    them all: metrics, the readiness tracker, the recent errors of /admin/status, the log."""

    metrics: Metrics
    health: UpstreamHealth
    errors: RecentErrors
    hook: Hook

    @classmethod
    def create(cls) -> Observability:
        metrics, health, errors = Metrics(), UpstreamHealth(), RecentErrors()
        return cls(metrics, health, errors, Hooks([metrics, health, errors, EventLog()]))


@dataclass(frozen=True)
class Caches:
    """Everything that saves an upstream call, bounded, flushable as one."""

    audio: AudioCache
    media_ids: MediaIds
    transcripts: TranscriptCache
    responses: ResponseCache | None = None  # None: [cache] responses = false

    async def flush(self) -> dict[str, int]:
        flushed = {
            "audio": await self.audio.flush(),
            "media_ids": self.media_ids.flush(),
            "transcripts": self.transcripts.flush(),
        }
        if self.responses is not None:
            flushed["responses"] = self.responses.flush()
        return flushed


@dataclass(frozen=True)
class Graph:
    """The daemon's parts, as ``compose`` wired them."""

    settings: Settings
    obs: Observability
    channel: Channel
    routes: Sequence[Routes]  # what the provider adds to the public listener
    agent: AgentforceClient
    cached_agent: CachedAgent | None  # the agent behind the response cache, when it is on
    speech: ElevenLabs
    voice: CachedSpeech  # speech behind the audio cache
    caches: Caches
    guard: Guard
    store: Store
    limits: MemoryUserLimits
    budget: MemoryBudget
    turn: Turn

    @property
    def answers(self) -> Agent:
        """The agent as the turn sees it: behind the response cache when it is on."""
        return self.cached_agent or self.agent


async def compose(
    settings: Settings, stack: AsyncExitStack, *, on_report: ReportCallback | None = None
) -> Graph:
    """Every part of the daemon, built from ``settings``; what needs closing is pushed onto
    ``stack`` (the pools, the store). ``on_report`` sees every turn's report besides the
    sinks (tests, the demo)."""
    obs = Observability.create()
    channel_http, agent_http, speech_http = pools(settings, obs.hook, stack)
    caches = build_caches(settings)
    built = build_channel(settings, channel_http, caches.media_ids)
    channel = built.channel
    agent = build_agent(settings, agent_http)
    cached_agent = build_cached_agent(settings, agent, caches.responses)
    speech = build_speech(settings, speech_http)
    voice = CachedSpeech(speech, caches.audio)
    guard = build_guard(settings, obs.hook)
    store = await open_store(settings, stack)
    limits = MemoryUserLimits(settings.limits)
    budget = MemoryBudget(settings.limits)
    observe_turn = report_turns(obs.hook)

    def report(r: TurnReport) -> None:
        observe_turn(r)
        if on_report is not None:
            on_report(r)

    turn = Turn(
        channel=channel,
        agent=cached_agent or agent,
        speech=voice,
        transcripts=caches.transcripts,
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
    return Graph(
        settings=settings,
        obs=obs,
        channel=channel,
        routes=built.routes,
        agent=agent,
        cached_agent=cached_agent,
        speech=speech,
        voice=voice,
        caches=caches,
        guard=guard,
        store=store,
        limits=limits,
        budget=budget,
        turn=turn,
    )


async def open_store(settings: Settings, stack: AsyncExitStack) -> Store:
    """The durable state: inbox, turn journal, agent sessions ([state]); closed with
    ``stack``."""
    store = await open_state(settings.state, settings.inbox, settings.state_dir())
    stack.push_async_callback(store.close)
    return store


def _elevenlabs_upstream(request: httpx.Request) -> str:
    return "elevenlabs-stt" if request.url.path.endswith("/speech-to-text") else "elevenlabs-tts"


def pools(
    settings: Settings, hook: Hook, stack: AsyncExitStack
) -> tuple[httpx.AsyncClient, httpx.AsyncClient, httpx.AsyncClient]:
    """One pooled client each for the channel, the agent and speech, closed with ``stack``;
    every answer they get is an ``UpstreamCallDone`` of its upstream."""
    t, h = settings.timeouts, settings.http
    channel = make_client(
        h,
        read_timeout=max(t.whatsapp, t.download),
        on_response=count_responses(hook, lambda _: "whatsapp"),
    )
    agent = make_client(
        h, read_timeout=t.agent, on_response=count_responses(hook, lambda _: "agentforce")
    )
    speech = make_client(
        h,
        read_timeout=max(t.stt, t.tts),
        on_response=count_responses(hook, _elevenlabs_upstream),
    )
    for pool in (channel, agent, speech):
        stack.push_async_callback(pool.aclose)
    return channel, agent, speech


def build_caches(settings: Settings) -> Caches:
    c = settings.cache
    disk = settings.cache_dir() / "tts" if c.audio_disk_bytes > 0 else None
    responses = None
    if c.responses:
        responses = ResponseCache(
            max_entries=c.response_entries, default_ttl=c.opener_ttl, confirmations=c.confirmations
        )
    return Caches(
        audio=AudioCache(
            max_bytes=c.audio_memory_bytes, disk_dir=disk, disk_max_bytes=c.audio_disk_bytes
        ),
        media_ids=MediaIds(max_entries=c.media_ids, ttl=c.media_id_ttl),
        transcripts=TranscriptCache(max_entries=c.transcripts, ttl=c.transcript_ttl),
        responses=responses,
    )


def build_agent(settings: Settings, http: httpx.AsyncClient) -> AgentforceClient:
    af, s = settings.agentforce, settings.secrets
    return AgentforceClient(
        http,
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


def build_cached_agent(
    settings: Settings, agent: AgentforceClient, responses: ResponseCache | None
) -> CachedAgent | None:
    """The agent behind the response cache; None when [cache] responses is off."""
    c = settings.cache
    if responses is None:
        return None
    rules = Rules(
        faq=[CacheRule(r.pattern, r.ttl, r.standalone, r.name) for r in c.faq],
        deny=[DenyRule(r.pattern, r.name) for r in c.deny],
        personal=c.personal or DEFAULT_PERSONAL,
        opener_ttl=c.opener_ttl,
    )
    pending = PendingContext(
        max_users=settings.agentforce.max_sessions, ttl=settings.agentforce.session_idle
    )
    return CachedAgent(
        agent,
        rules=rules,
        responses=MemoryResponses(responses),
        pending=MemoryPending(pending),
        agent_id=settings.agentforce.agent_id,
    )


def build_speech(settings: Settings, http: httpx.AsyncClient) -> ElevenLabs:
    el = settings.elevenlabs
    return ElevenLabs(
        http,
        api_url=el.api_url,
        api_key=settings.secrets.get("ELEVENLABS_API_KEY"),
        voice_id=el.voice_id,
        tts_model=el.tts_model,
        stt_model=el.stt_model,
        output_format=el.output_format,
        voice_settings=el.voice_settings(),
    )


def build_channel(settings: Settings, http: httpx.AsyncClient, media_ids: MediaIds) -> Built:
    """The configured WhatsApp provider's channel and routes (daemon/channels/registry.py)."""
    provider = registry.get(settings.channel.provider)
    wiring = Wiring(
        settings=settings.providers[provider.section],
        secret=settings.secrets.get,
        http=http,
        media_ids=media_ids,
    )
    return provider.build(wiring)


def webhook_body_limit(settings: Settings) -> int:
    """The largest webhook body the configured provider may post: [server] max_body_bytes
    (Meta's batches are up to 3 MB), or less when the provider says so (Twilio's form
    posts: [twilio] max_body_bytes)."""
    provider = registry.get(settings.channel.provider)
    own = provider.body_limit(settings.providers[provider.section])
    return (
        settings.server.max_body_bytes if own is None else min(own, settings.server.max_body_bytes)
    )


def build_guard(settings: Settings, hook: Hook) -> Guard:
    """A circuit breaker per upstream, sized from its timeout, and their retry budgets."""
    b, t = settings.breakers, settings.timeouts
    timeouts = {
        "whatsapp": t.whatsapp,
        "agentforce": t.agent,
        "elevenlabs-stt": t.stt,
        "elevenlabs-tts": t.tts,
    }
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
            hook=hook,
        )
        for name, timeout in timeouts.items()
    }
    ratio = settings.retries.budget_ratio
    return Guard(
        breakers,
        # One budget per upstream (guard.py says why); each allows `ratio` of its own traffic.
        new_budget=lambda: RetryBudget(ratio=ratio),
        max_attempts=settings.retries.max_attempts,
        hook=hook,
    )
