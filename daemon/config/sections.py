"""The sections of config.toml, one frozen dataclass each, with their safe defaults.

Field names are the TOML keys (``from_`` is ``from``, a Python keyword); the comments say
what each key means and why its default is what it is. Loading and checking them is
daemon/config/load.py and daemon/config/validate.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from daemon.texts import BUILT_IN_TEXTS, TextTable


@dataclass(frozen=True)
class ServerConfig:
    bind: str = "127.0.0.1:8080"
    webhook_path: str = "/webhook"
    # Meta's webhook payloads are at most 3 MB (reference/whatsapp.md §3); a little headroom.
    max_body_bytes: int = 3 * 1024 * 1024
    # Webhook bodies read (and held) at once, and their combined size: a body reserves its
    # Content-Length (a chunked one: max_body_bytes) before it is read; beyond either, 503
    # (Meta and Twilio retry). Bounds what unsigned clients can make the daemon buffer; the
    # count is generous because Meta delivers concurrently and its bodies are a few KB.
    max_body_reads: int = 256
    body_memory_bytes: int = 16 * 1024 * 1024
    # Open connections per listener. At the cap a new connection closes the oldest idle one
    # (no request in flight); when none is idle it gets a 503 and is closed. Well under the
    # unit's LimitNOFILE=8192, which the upstream pools, the store and the caches share.
    max_connections: int = 1000
    # HTTP/2 (h2c upgrade and prior knowledge) on the plain listener. Neither Meta nor Twilio
    # needs it, and the TLS proxy in front speaks HTTP/1.1 to us.
    http2: bool = False
    # Inbound messages accepted but not yet turned, across all users. Full -> 503, Meta retries.
    queue_size: int = 1000
    # Seconds an HTTP request in flight may take to finish after a stop was asked for.
    graceful_timeout: float = 5.0
    # Seconds turns in flight may take to finish after a stop request (webhooks get 503
    # meanwhile); turns still running then resume after the restart (durable inbox).
    drain_timeout: float = 30.0


@dataclass(frozen=True)
class ChannelConfig:
    provider: str = "meta"


@dataclass(frozen=True)
class WhatsAppConfig:
    graph_url: str = "https://graph.facebook.com/v23.0"
    phone_number_id: str = ""
    # Media is downloaded (with the bearer token) only from these hosts, and from graph_url's
    # own host. "*.example.com" matches subdomains. Not one pinned host: Meta's media URLs
    # are documented on lookaside.fbsbx.com, but not promised to stay there (whatsapp.md §4).
    media_hosts: tuple[str, ...] = ("lookaside.fbsbx.com", "*.fbsbx.com", "*.fbcdn.net")
    # WhatsApp's own audio limit is 16 MB (reference/whatsapp.md §4.1).
    max_media_bytes: int = 16 * 1024 * 1024
    # Only answer messages that came in on phone_number_id (a WABA can have several numbers).
    only_own_number: bool = True


@dataclass(frozen=True)
class TwilioConfig:
    api_url: str = "https://api.twilio.com"
    account_sid: str = ""
    from_: str = "whatsapp:+14155238886"
    public_url: str = ""
    # Media is downloaded only from these hosts, and from api_url's own host; the credentials
    # go to api_url's host alone. Twilio answers every media URL with a redirect to its CDN
    # (mms.twiliocdn.com, media.twiliocdn.com, ...), whose pre-signed URLs need none.
    media_hosts: tuple[str, ...] = ("api.twilio.com", "*.twiliocdn.com")
    # WhatsApp's media limit through Twilio is 16 MB (reference/whatsapp.md §6).
    max_media_bytes: int = 16 * 1024 * 1024
    # Twilio's webhooks are small form posts: a WhatsApp text is at most 4096 characters,
    # 48 KiB percent-encoded even if every one is a 4-byte emoji, plus ~2 KiB of other fields.
    max_body_bytes: int = 64 * 1024
    # Seconds the voice notes we generate stay fetchable at {public_url}/media/<token>.
    media_ttl: float = 600.0
    # Bytes of those voice notes held in memory at most (the oldest go first). Twilio fetches
    # a note within seconds of the send; 32 MiB is ~800 spoken answers, and keeps the daemon's
    # total under the unit's MemoryHigh (README "Memory").
    media_memory_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True)
class AgentforceConfig:
    token_url: str = ""
    api_url: str = "https://api.salesforce.com/einstein/ai-agent/v1"
    instance_endpoint: str = ""
    agent_id: str = ""
    # Idle sessions are ended (DELETE, reason Expiration) after this many seconds. The Agent
    # API documents no idle timeout; bridges use 20-30 min (reference/agentforce.md §8).
    session_idle: float = 1200.0
    max_sessions: int = 10_000
    # The token response has no expires_in; when the JWT has no readable exp, refresh after
    # this long (the documented default app token timeout is 30 min).
    token_ttl: float = 1500.0
    # Forward the greeting the agent sends when a session starts. Off: the user asked a
    # question and wants its answer, not a "How can I help?" first.
    forward_greeting: bool = False
    # bypassUser of the session start (§2.1): true runs the agent as its assigned agent user,
    # what a service agent behind client credentials needs. Employee agents run as the
    # token's user and refuse true ("Invalid user ID"): Salesforce's own client
    # (@salesforce/agents) sends false exactly for AgentType AgentforceEmployeeAgent.
    bypass_user: bool = True
    # Ask for the answer as a stream of server-sent events (§4) instead of waiting for it
    # whole, so text-to-speech can start on the first sentences. Off until the turn is
    # wired to it and measured faster (issue 12); a session whose stream endpoint refuses
    # answers synchronously anyway.
    streaming: bool = False


@dataclass(frozen=True)
class ElevenLabsConfig:
    api_url: str = "https://api.elevenlabs.io"
    voice_id: str = ""
    tts_model: str = "eleven_flash_v2_5"
    stt_model: str = "scribe_v1"
    # Ogg/Opus straight from the API: no transcode on the happy path (reference/speech.md §1.5).
    output_format: str = "opus_48000_32"
    # Voice settings (0..1). Style above 0 and speaker boost add latency (speech.md §1.4).
    stability: float = 0.5
    similarity_boost: float = 0.75
    style: float = 0.0
    speaker_boost: bool = True

    def voice_settings(self) -> dict[str, float | bool]:
        return {
            "stability": self.stability,
            "similarity_boost": self.similarity_boost,
            "style": self.style,
            "use_speaker_boost": self.speaker_boost,
        }


@dataclass(frozen=True)
class VoiceConfig:
    reply: str = "mirror"  # mirror | always | never
    # Longest text spoken as a voice note. At 32 kbit/s WhatsApp shows the play button up to
    # 512 KB, about 2 minutes of speech (reference/whatsapp.md §4.2); longer answers go as
    # text only (spoken sentence by sentence: cut after the last whole sentence that fits,
    # with the voice_cut line at the end).
    max_tts_chars: int = 1500
    # Longest voice note (any audio a user sends) transcribed, in seconds, measured by decoding
    # it (never from its headers) before speech-to-text, which bills per second. Longer ones
    # get the voice_too_long reply and no speech-to-text call.
    max_seconds: float = 300.0
    # Speak a streamed answer sentence by sentence while the agent writes it, joined into
    # one voice note ([agentforce] streaming). Off until the turn is wired to it and
    # measured faster (issue 12).
    sentence_tts: bool = False
    # Text-to-speech requests at once for one answer spoken sentence by sentence. The
    # plan's concurrency is per account (Flash/Turbo: free 4, starter 6, creator 10;
    # reference/speech.md §1.8); beyond it requests queue or get 429, which is retried.
    tts_concurrency: int = 3


@dataclass(frozen=True)
class TimeoutsConfig:
    download: float = 10.0
    stt: float = 30.0
    agent: float = 60.0
    tts: float = 30.0
    whatsapp: float = 10.0
    upload: float = 20.0
    turn: float = 120.0
    # A streamed answer ([agentforce] streaming) with no event for this long is given up
    # (an unknown outcome: one apology, never asked again); `agent` bounds it all.
    agent_idle: float = 30.0


@dataclass(frozen=True)
class BreakersConfig:
    """One circuit breaker per upstream (whatsapp, agentforce, elevenlabs-stt, elevenlabs-tts),
    over its last ``window`` calls. A call slower than half its timeout counts as slow."""

    window: int = 20
    min_calls: int = 10  # no verdict before this many calls
    failure_rate: float = 0.5  # open when half the calls failed ...
    slow_call_rate: float = 0.8  # ... or 80 % were slow
    open_seconds: float = 30.0  # fail fast this long, then try again
    half_open_calls: int = 3  # trial calls, each with the upstream's timeout


@dataclass(frozen=True)
class RetriesConfig:
    max_attempts: int = 3  # per call, the first included (Google SRE: 3)
    # Retries may add at most this share of traffic (plus one per second), so a struggling
    # upstream is not buried under them (Finagle's retry budget).
    budget_ratio: float = 0.1


@dataclass(frozen=True)
class LanesConfig:
    # Most users with a lane at once; a new user beyond it is answered 503 (Meta retries).
    max_lanes: int = 10_000
    # Messages one user may have waiting behind the turn in flight. More wait in the durable
    # inbox (answered 200; the resume loop hands them over in order as the lane drains), up to
    # max_waiting per user; beyond that they are dropped and counted. Never a 503 for others.
    max_pending: int = 20
    max_waiting: int = 100
    # A lane with nothing to do goes away after this many seconds.
    idle_seconds: float = 60.0
    # Turns running at once across all users (bounds memory and upstream concurrency).
    max_concurrent_turns: int = 64
    # Users whose last language (for canned texts before speech-to-text has spoken) and
    # deferred messages (to keep their answers in order) are remembered, least recently
    # seen forgotten first; a remembered language is forgotten after remembered_ttl.
    remembered_users: int = 10_000
    remembered_ttl: float = 86400.0


@dataclass(frozen=True)
class LimitsConfig:
    """Per-user limits and global daily budgets (README "Limits and budgets"). A day is the
    UTC calendar day: every daily count starts again at 00:00 UTC. 0 turns a limit off."""

    # A token bucket per user: `burst` messages in a row, then `per_minute` more a minute.
    # A message over it is answered 200 and dropped, never asked of the agent; the user gets
    # one "slow down" reply, at most once every `notice_every` seconds.
    burst: int = 10
    per_minute: float = 6.0
    notice_every: float = 600.0
    # Per user and UTC day: turns, seconds of voice notes transcribed, characters spoken.
    # Each gets one polite reply the first time it is hit that day; the spoken one is not a
    # reply but the end of voice notes for the day (answers go as text, with one line saying
    # so).
    daily_turns: int = 300
    daily_stt_seconds: float = 1800.0
    daily_tts_characters: int = 30_000
    # Users whose counts are kept, least recently seen forgotten first.
    users: int = 10_000
    # The whole daemon, per UTC day (0 = no budget): agent calls, seconds of audio sent to
    # speech-to-text, characters sent to text-to-speech, WhatsApp messages sent. When one is
    # spent: agent -> a polite "busy" reply (cached answers still served); stt -> voice
    # notes get a "please type" reply; tts -> answers go as text only; whatsapp -> nothing
    # more is sent that day. /metrics shows wa_agentd_budget_exhausted for the alert.
    budget_agent_calls: int = 0
    budget_stt_seconds: float = 0.0
    budget_tts_characters: int = 0
    budget_whatsapp_messages: int = 0


@dataclass(frozen=True)
class InboxConfig:
    # Meta redelivers for up to 7 days (reference/whatsapp.md §3).
    dedupe_ttl: float = 7 * 24 * 3600.0
    dedupe_max_ids: int = 200_000
    # A turn that could deliver nothing because WhatsApp said "not now" is tried again this
    # often, for at most retry_window: WhatsApp takes free-form messages only within 24 h of
    # the user's last one (reference/whatsapp.md §5).
    retry_every: float = 30.0
    retry_window: float = 24 * 3600.0


@dataclass(frozen=True)
class TextsConfig:
    """Canned texts per language: ``[texts.<code>]`` tables, ISO 639-1 codes.

    The user's language comes from speech-to-text or from the script of their text; a
    language without a table gets ``default_language``. A table may set only some keys: the
    rest come from the built-in table of that language, else from the default language.
    """

    default_language: str = "en"
    tables: Mapping[str, TextTable] = field(default_factory=lambda: dict(BUILT_IN_TEXTS))

    def for_language(self, language: str | None) -> TextTable:
        return self.tables[self.code_for(language)]

    def code_for(self, language: str | None) -> str:
        """The code of the table ``for_language`` picks: the language canned texts are in."""
        code = (language or "").lower().split("-")[0].split("_")[0]
        return code if code in self.tables else self.default_language


@dataclass(frozen=True)
class UxConfig:
    # Send one short holding message when the answer takes longer than this many seconds
    # (never when the answer comes first); 0 turns it off.
    holding_after: float = 3.0
    # For voice notes, first send what speech-to-text understood, so the user can see a
    # misheard question.
    echo_transcript: bool = False


@dataclass(frozen=True)
class AdminConfig:
    # /metrics, /readyz with its reasons, /admin/*: on loopback, never on the public listener.
    bind: str = "127.0.0.1:9464"  # "" = served on [server].bind


@dataclass(frozen=True)
class StateConfig:
    dir: str = ""  # "" = $STATE_DIRECTORY (systemd), else ./state


REDIS_MODES = ("standalone", "sentinel", "cluster")


@dataclass(frozen=True)
class RedisConfig:
    """``[redis]``: the shared state of several hosts (daemon/state/redis/).

    The password comes from the secret ``REDIS_PASSWORD``, never from ``url``."""

    # redis://host:port/db, or rediss:// for TLS (verified against the system CAs, or
    # tls_ca_file). In cluster mode: any one node; in sentinel mode: only the db and TLS.
    url: str = "redis://127.0.0.1:6379/0"
    # Every key starts with it, so several deployments can share one Redis.
    prefix: str = "wa-agentd:"
    mode: str = "standalone"  # standalone | sentinel | cluster
    sentinels: tuple[str, ...] = ()  # "host:port" of each sentinel (mode = "sentinel")
    sentinel_service: str = "wa-agentd"  # the primary's name the sentinels monitor
    username: str = ""  # ACL user; "" = the default user
    tls_ca_file: str = ""  # PEM bundle that signs the server's certificate (rediss://)
    connect_timeout: float = 2.0
    # Seconds a command may take before the daemon counts Redis as down (503, /readyz).
    command_timeout: float = 2.0
    max_connections: int = 32
    # A host owns a user's turns for this long without renewing; a dead host's users are
    # taken over after it (plus one scan).
    lease_seconds: float = 15.0


@dataclass(frozen=True)
class FaqRule:
    """``[[cache.faq]]``: questions matching ``pattern`` (a regex, case-insensitive, against
    the normalised question) are cached for ``ttl`` seconds (1 to 24 hours)."""

    pattern: str = ""
    ttl: float = 86400.0
    # The question needs no context: cacheable mid-conversation too, and its first answer is
    # trusted (concurrent askers share one agent call). False: it only sets an opener's TTL.
    standalone: bool = True
    name: str = ""


@dataclass(frozen=True)
class DenyRule:
    """``[[cache.deny]]``: questions matching ``pattern`` are never cached."""

    pattern: str = ""
    name: str = ""


@dataclass(frozen=True)
class CacheConfig:
    dir: str = ""  # "" = $CACHE_DIRECTORY (systemd), else ./cache
    # Response cache: context-free questions answered without calling Agentforce.
    responses: bool = True
    response_entries: int = 10_000
    # A question that opens a conversation is cached this long (no FAQ rule needed), once
    # `confirmations` different users got the same answer.
    opener_ttl: float = 3600.0
    confirmations: int = 2
    faq: tuple[FaqRule, ...] = ()
    deny: tuple[DenyRule, ...] = ()
    # Regexes that make a question personal (never cached). Empty: the built-in set (first
    # person, order/case numbers, emails, phone numbers; English, Arabic and a few more).
    personal: tuple[str, ...] = ()
    # TTS audio cache: memory tier, and a disk tier under `dir` (0 = memory only).
    audio_memory_bytes: int = 64 * 1024 * 1024
    audio_disk_bytes: int = 512 * 1024 * 1024
    # Uploaded voice notes are reused by media id; WhatsApp keeps uploads 30 days.
    media_ids: int = 10_000
    media_id_ttl: float = 25 * 24 * 3600.0
    # Transcripts by the voice note's sha256 (forwarded voice notes come again).
    transcripts: int = 10_000
    transcript_ttl: float = 7 * 24 * 3600.0
    # Phrases spoken at start-up into the audio cache (greetings, common answers).
    prerender: tuple[str, ...] = ()
    prerender_language: str = "en"
    # Also speak the canned replies of every [texts] table at start-up (agent_down,
    # not_understood, no_speech, unsupported): a voice note then gets its apology as a voice
    # note too. Spoken only from the cache: never a TTS call while something is failing.
    prerender_canned: bool = False


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"  # debug | info | warning | error


@dataclass(frozen=True)
class HttpConfig:
    """Per upstream pool. Connect and pool waits are short: an upstream that can't be
    reached fails fast, the per-call timeouts in [timeouts] bound the rest."""

    max_connections: int = 50
    max_keepalive: int = 20
    keepalive_expiry: float = 30.0
    connect_timeout: float = 5.0
    pool_timeout: float = 5.0


def toml_name(f: dataclasses.Field[Any]) -> str:
    """The TOML key of a section field."""
    return f.name.rstrip("_")  # from_ -> from (a Python keyword)
