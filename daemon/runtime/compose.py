"""Settings -> the object graph: upstream clients on their pools, caches, the guard."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import httpx

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
from daemon.channels.twilio.public_media import PublicMedia
from daemon.config import Settings
from daemon.http import make_client
from daemon.observe.eventlog import EventLog
from daemon.observe.health import UpstreamHealth
from daemon.observe.hooks import Hook, Hooks, count_responses
from daemon.observe.metrics import Metrics
from daemon.observe.recent import RecentErrors
from daemon.resilience.breaker import CircuitBreaker, State
from daemon.resilience.guard import Guard
from daemon.resilience.retry import RetryBudget
from daemon.speech.cached import CachedSpeech
from daemon.speech.elevenlabs import ElevenLabs
from daemon.turn import Agent

log = logging.getLogger("wa_agentd")


@dataclass
class Observability:
    """The sinks of the daemon's events (daemon/observe/events.py), and the one hook that
    feeds them all: metrics, the readiness tracker, recent errors, the log."""

    metrics: Metrics
    health: UpstreamHealth
    errors: RecentErrors = field(default_factory=RecentErrors)  # for /admin/status
    hook: Hooks = field(init=False)

    def __post_init__(self) -> None:
        self.hook = Hooks([self.metrics, self.health, self.errors, EventLog()])


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
        responses=caches.responses,
        pending=pending,
        agent_id=settings.agentforce.agent_id,
    )


def build_upstreams(settings: Settings, stack: AsyncExitStack, obs: Observability) -> Upstreams:
    t, h, s = settings.timeouts, settings.http, settings.secrets
    channel_http = make_client(
        h,
        read_timeout=max(t.whatsapp, t.download),
        on_response=count_responses(obs.hook, lambda _: "whatsapp"),
    )
    agent_http = make_client(
        h, read_timeout=t.agent, on_response=count_responses(obs.hook, lambda _: "agentforce")
    )
    speech_http = make_client(
        h,
        read_timeout=max(t.stt, t.tts),
        on_response=count_responses(obs.hook, _elevenlabs_upstream),
    )
    pools = [channel_http, agent_http, speech_http]
    for pool in pools:
        stack.push_async_callback(pool.aclose)
    caches = build_caches(settings)
    channel, public_media = build_channel(settings, channel_http, caches.media_ids)
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


def build_channel(
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


def webhook_body_limit(settings: Settings) -> int:
    """The largest webhook body the configured provider may post: Twilio's form posts are
    small ([twilio] max_body_bytes), Meta's batches up to 3 MB ([server] max_body_bytes)."""
    if settings.channel.provider == "twilio":
        return min(settings.twilio.max_body_bytes, settings.server.max_body_bytes)
    return settings.server.max_body_bytes


CIRCUIT_VALUES = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}


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


def configured_bounds(settings: Settings) -> dict[str, int]:
    return {
        "queue_size": settings.server.queue_size,
        "max_lanes": settings.lanes.max_lanes,
        "max_concurrent_turns": settings.lanes.max_concurrent_turns,
    }
