"""Typed settings: config.toml, then secrets from the environment or $CREDENTIALS_DIRECTORY.

Every key has a safe default, so a file that sets only the upstream ids works. Unknown keys
are errors (a typo must not silently fall back to a default), and every error names the key
and says why, e.g. ``[timeouts] agent: must be a number > 0, got "fast"``.

Secrets never live in config.toml. Each comes from the environment variable of its name, or
from a file of the same name in lower-case-with-dashes under ``$CREDENTIALS_DIRECTORY``
(systemd ``LoadCredential=``); the credential file wins, because it is the deliberate,
least-exposed source.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SECRET_NAMES = (
    "WHATSAPP_ACCESS_TOKEN",
    "WHATSAPP_APP_SECRET",
    "WHATSAPP_VERIFY_TOKEN",
    "AGENTFORCE_CLIENT_ID",
    "AGENTFORCE_CLIENT_SECRET",
    "ELEVENLABS_API_KEY",
    "WA_AGENTD_ADMIN_TOKEN",
    "TWILIO_AUTH_TOKEN",
    # Keys the hashes of phone numbers in the logs (daemon/observe/logs.py). Optional: unset,
    # the daemon keeps a random one in its state directory.
    "WA_AGENTD_LOG_SALT",
    # The Redis password (AUTH), for [state] backend = "redis"; never in [redis] url.
    "REDIS_PASSWORD",
)


class ConfigError(ValueError):
    """A setting is missing or wrong. ``key`` is "[section] name" or a secret's name."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key}: {why}")
        self.key = key
        self.why = why


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
class TextTable:
    """What the user reads when the answer cannot be the agent's, in one language."""

    agent_down: str
    not_understood: str
    no_speech: str
    unsupported: str
    escalated: str
    holding: str  # sent once when the answer takes longer than [ux] holding_after
    transcript_echo: str  # "{transcript}" is replaced by what speech-to-text heard
    voice_too_long: str  # a voice note over [voice] max_seconds
    # [limits]: once per window, in place of the dropped message's answer.
    slow_down: str  # over the per-user rate (burst, per_minute)
    daily_limit: str  # over daily_turns
    voice_daily_limit: str  # over daily_stt_seconds: voice notes are not heard until tomorrow
    text_only_today: str  # over daily_tts_characters: appended once to a text-only answer
    over_capacity: str  # the daemon's agent budget for the day is spent
    voice_unavailable: str  # the daemon's speech-to-text budget for the day is spent
    voice_cut: str  # said at the end of a voice note cut short ([voice] max_tts_chars)

    def spoken(self) -> tuple[str, ...]:
        """The replies that stand in place of an answer, which a voice note may hear. Not the
        limit notices: a user over a limit gets one message, not a voice note as well."""
        return (
            self.agent_down,
            self.not_understood,
            self.no_speech,
            self.unsupported,
            self.voice_too_long,
            self.over_capacity,
            self.voice_unavailable,
        )


ENGLISH = TextTable(
    agent_down=(
        "Sorry, I can't answer right now because of a technical problem. Please try again in a "
        "few minutes."
    ),
    not_understood=(
        "Sorry, I couldn't make out your voice note. Could you type your question instead?"
    ),
    no_speech=(
        "I couldn't hear anything in your voice note. Could you speak a little louder, or type "
        "your question?"
    ),
    unsupported=(
        "Sorry, I can only read text messages and listen to voice notes. Please send your "
        "question as text or as a voice note."
    ),
    escalated="I'm passing your request on to a colleague, who will get back to you.",
    holding="One moment, I'm looking into it…",
    transcript_echo="I understood: “{transcript}”",
    voice_too_long=(
        "Sorry, your voice note is too long for me to listen to. Please send a shorter one, or "
        "type your question."
    ),
    slow_down=(
        "You're sending messages faster than I can answer them. Please wait a minute, then send "
        "your question again."
    ),
    daily_limit="You've reached today's limit of messages. I'll be happy to help again tomorrow.",
    voice_daily_limit=(
        "You've sent a lot of voice notes today. Please type your questions for the rest of the "
        "day."
    ),
    text_only_today="(I'll answer in writing for the rest of the day.)",
    over_capacity=(
        "We're receiving an unusually high number of messages right now. Please try again later."
    ),
    voice_unavailable="I can't listen to voice notes right now. Please type your question.",
    voice_cut="The rest of my answer is in the text message.",
)

ARABIC = TextTable(
    agent_down="عذرًا، لا أستطيع الرد الآن بسبب مشكلة تقنية. يُرجى المحاولة مرة أخرى بعد بضع دقائق.",
    not_understood="عذرًا، لم أتمكن من فهم رسالتك الصوتية. هل يمكنك كتابة سؤالك بدلًا من ذلك؟",
    no_speech="لم أسمع أي شيء في رسالتك الصوتية. هل يمكنك التحدث بصوت أعلى قليلًا، أو كتابة سؤالك؟",
    unsupported=(
        "عذرًا، يمكنني فقط قراءة الرسائل النصية والاستماع إلى الرسائل الصوتية. "
        "يُرجى إرسال سؤالك نصًا أو رسالة صوتية."
    ),
    escalated="سأحوّل طلبك إلى أحد زملائي، وسيتواصل معك قريبًا.",
    holding="لحظة من فضلك، أبحث في الأمر…",
    transcript_echo="فهمت: «{transcript}»",
    voice_too_long=(
        "عذرًا، رسالتك الصوتية أطول من أن أستمع إليها. يُرجى إرسال رسالة أقصر، أو كتابة سؤالك."
    ),
    slow_down=(
        "أنت ترسل الرسائل أسرع مما أستطيع الرد عليها. يُرجى الانتظار دقيقة، ثم إرسال سؤالك مرة أخرى."
    ),
    daily_limit="لقد وصلت إلى الحد اليومي للرسائل. يسعدني مساعدتك مجددًا غدًا.",
    voice_daily_limit="لقد أرسلت الكثير من الرسائل الصوتية اليوم. يُرجى كتابة أسئلتك لبقية اليوم.",
    text_only_today="(سأرد عليك كتابةً لبقية اليوم.)",
    over_capacity="نتلقى عددًا كبيرًا جدًا من الرسائل حاليًا. يُرجى المحاولة مرة أخرى لاحقًا.",
    voice_unavailable="لا أستطيع الاستماع إلى الرسائل الصوتية الآن. يُرجى كتابة سؤالك.",
    voice_cut="بقية إجابتي في الرسالة النصية.",
)

BUILT_IN_TEXTS = {"en": ENGLISH, "ar": ARABIC}


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
    backend: str = "sqlite"  # sqlite (durable, one host) | memory (tests: a restart forgets)


STATE_BACKENDS = ("sqlite", "memory")  # daemon/state/__init__.py opens them
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


@dataclass(frozen=True)
class Secrets:
    values: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        return self.values.get(name, "")

    def __repr__(self) -> str:  # never print a secret, not even by accident in a traceback
        return f"Secrets({sorted(k for k, v in self.values.items() if v)})"


@dataclass(frozen=True)
class Settings:
    server: ServerConfig = ServerConfig()
    channel: ChannelConfig = ChannelConfig()
    whatsapp: WhatsAppConfig = WhatsAppConfig()
    twilio: TwilioConfig = TwilioConfig()
    agentforce: AgentforceConfig = AgentforceConfig()
    elevenlabs: ElevenLabsConfig = ElevenLabsConfig()
    voice: VoiceConfig = VoiceConfig()
    timeouts: TimeoutsConfig = TimeoutsConfig()
    lanes: LanesConfig = LanesConfig()
    breakers: BreakersConfig = BreakersConfig()
    retries: RetriesConfig = RetriesConfig()
    inbox: InboxConfig = InboxConfig()
    limits: LimitsConfig = LimitsConfig()
    texts: TextsConfig = TextsConfig()
    ux: UxConfig = UxConfig()
    admin: AdminConfig = AdminConfig()
    state: StateConfig = StateConfig()
    redis: RedisConfig = RedisConfig()
    cache: CacheConfig = CacheConfig()
    log: LogConfig = LogConfig()
    http: HttpConfig = HttpConfig()
    secrets: Secrets = Secrets()

    def state_dir(self) -> Path:
        return Path(self.state.dir or os.environ.get("STATE_DIRECTORY", "") or "state")

    def cache_dir(self) -> Path:
        return Path(self.cache.dir or os.environ.get("CACHE_DIRECTORY", "") or "cache")


# --------------------------------------------------------------------------- loading


def _toml_name(f: dataclasses.Field[Any]) -> str:
    return f.name.rstrip("_")  # from_ -> from (a Python keyword)


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check one TOML value against the dataclass annotation; name the key when it fails."""
    origin = typing.get_origin(annotation)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be a whole number, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
        return value
    if origin is tuple:
        item_type = typing.get_args(annotation)[0]
        if isinstance(item_type, type) and dataclasses.is_dataclass(item_type):  # [[a.b]] arrays
            if not isinstance(value, list):
                raise ConfigError(key, f"must be an array of tables, got {value!r}")
            return tuple(
                _section(f"{key}[{i}]", item_type, item, labelled=True)
                for i, item in enumerate(value)
            )
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, f"must be a list of strings, got {value!r}")
        return tuple(value)
    raise ConfigError(key, f"unsupported type {annotation!r}")  # pragma: no cover


def _section(name: str, cls: type[Any], table: Any, *, labelled: bool = False) -> Any:
    """One table. ``labelled``: ``name`` is already a key label ("[cache] faq[0]")."""
    where = name if labelled else f"[{name}]"
    if not isinstance(table, dict):
        raise ConfigError(where, "must be a table")
    hints = typing.get_type_hints(cls)
    fields = {_toml_name(f): f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        f = fields.get(key)
        label = f"{where}.{key}" if labelled else f"[{name}] {key}"
        if f is None:
            known = ", ".join(sorted(fields))
            raise ConfigError(label, f"unknown key (known: {known})")
        kwargs[f.name] = _coerce(label, value, hints[f.name])
    return cls(**kwargs)


def _texts_section(name: str, cls: type[Any], table: Any) -> TextsConfig:
    """``[texts]``: ``default_language`` plus one sub-table per language."""
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}]", "must be a table")
    default = table.get("default_language", "en")
    if not isinstance(default, str):
        raise ConfigError(f"[{name}] default_language", f"must be a string, got {default!r}")
    tables = dict(BUILT_IN_TEXTS)
    raw_tables = {k: v for k, v in table.items() if k != "default_language"}
    for code, values in raw_tables.items():
        if not isinstance(values, dict):
            raise ConfigError(
                f"[{name}] {code}",
                "unknown key: [texts] holds default_language and [texts.<language>] tables",
            )
    # The default language first, so other partial tables can fall back to it.
    ordered = sorted(raw_tables, key=lambda code: code != default)
    for code in ordered:
        values = raw_tables[code]
        base = tables.get(code) or tables.get(default) or ENGLISH
        known = {f.name for f in dataclasses.fields(TextTable)}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(
                    f"[{name}.{code}] {key}", f"unknown key (known: {', '.join(sorted(known))})"
                )
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"[{name}.{code}] {key}", "must be a non-empty string")
        tables[code] = dataclasses.replace(base, **values)
    if default not in tables:
        raise ConfigError(f"[{name}] default_language", f"no [texts.{default}] table")
    for code, t in tables.items():
        if "{transcript}" not in t.transcript_echo:
            raise ConfigError(f"[{name}.{code}] transcript_echo", "must contain {transcript}")
    return TextsConfig(default_language=default, tables=tables)


def _secrets(env: Mapping[str, str]) -> Secrets:
    values: dict[str, str] = {}
    cred_dir = env.get("CREDENTIALS_DIRECTORY", "")
    for name in SECRET_NAMES:
        value = env.get(name, "")
        if cred_dir:
            path = Path(cred_dir) / name.lower().replace("_", "-")
            if path.is_file():
                value = path.read_text(encoding="utf-8").strip()
        values[name] = value
    return Secrets(values)


def parse(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from an already-parsed TOML document and an environment."""
    env = os.environ if env is None else env
    hints = typing.get_type_hints(Settings)
    sections: dict[str, Any] = {}
    for name, table in data.items():
        if name == "secrets" or name not in hints:
            known = ", ".join(sorted(n for n in hints if n != "secrets"))
            raise ConfigError(f"[{name}]", f"unknown section (known: {known})")
        parse_section = _texts_section if name == "texts" else _section
        sections[name] = parse_section(name, hints[name], table)
    settings = Settings(**sections, secrets=_secrets(env))
    validate_values(settings)
    return settings


def load(path: str | Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read a config file (None: defaults only) and validate its values."""
    if path is None:
        return parse({}, env)
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), f"cannot read: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), f"not valid TOML: {exc}") from exc
    return parse(data, env)


# --------------------------------------------------------------------------- validation


def _check_bind(key: str, value: str, *, allow_empty: bool = False) -> None:
    if allow_empty and value == "":
        return
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, f'must be "host:port", got {value!r}')


def _check_url(key: str, value: str, *, allow_empty: bool = False) -> None:
    if allow_empty and value == "":
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(key, f"must be an http(s) URL, got {value!r}")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(key, f"must be one of {' | '.join(choices)}, got {value!r}")


def _check_positive(section: str, obj: Any) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
            raise ConfigError(f"[{section}] {_toml_name(f)}", f"must be > 0, got {value!r}")


def validate_values(s: Settings) -> None:
    """Checks every key can pass on its own, whatever else is set."""
    _check_bind("[server] bind", s.server.bind)
    _check_bind("[admin] bind", s.admin.bind, allow_empty=True)
    if not s.server.webhook_path.startswith("/"):
        raise ConfigError(
            "[server] webhook_path", f"must start with /, got {s.server.webhook_path!r}"
        )
    _check_choice("[channel] provider", s.channel.provider, ("meta", "twilio"))
    _check_choice("[voice] reply", s.voice.reply, ("mirror", "always", "never"))
    _check_choice("[state] backend", s.state.backend, STATE_BACKENDS)
    _check_choice("[log] level", s.log.level, ("debug", "info", "warning", "error"))
    _check_url("[whatsapp] graph_url", s.whatsapp.graph_url)
    _check_url("[twilio] api_url", s.twilio.api_url)
    _check_url("[twilio] public_url", s.twilio.public_url, allow_empty=True)
    _check_url("[agentforce] token_url", s.agentforce.token_url, allow_empty=True)
    _check_url("[agentforce] api_url", s.agentforce.api_url)
    _check_url("[agentforce] instance_endpoint", s.agentforce.instance_endpoint, allow_empty=True)
    _check_url("[elevenlabs] api_url", s.elevenlabs.api_url)
    if not s.elevenlabs.output_format.startswith(("opus_", "mp3_", "pcm_", "wav_")):
        raise ConfigError(
            "[elevenlabs] output_format",
            f"must be an ElevenLabs output format such as opus_48000_32, got "
            f"{s.elevenlabs.output_format!r}",
        )
    for key in ("stability", "similarity_boost", "style"):
        value = getattr(s.elevenlabs, key)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"[elevenlabs] {key}", f"must be between 0 and 1, got {value!r}")
    if s.ux.holding_after < 0:
        raise ConfigError(
            "[ux] holding_after", f"must be >= 0 (0 = off), got {s.ux.holding_after!r}"
        )
    _check_cache_rules(s.cache)
    _check_redis(s.redis)
    if not s.twilio.media_hosts:
        raise ConfigError("[twilio] media_hosts", "must name at least one host")
    for key in ("response_entries", "opener_ttl", "audio_memory_bytes", "media_ids",
                "media_id_ttl", "transcripts", "transcript_ttl"):  # fmt: skip
        if getattr(s.cache, key) <= 0:
            raise ConfigError(f"[cache] {key}", f"must be > 0, got {getattr(s.cache, key)!r}")
    if s.cache.audio_disk_bytes < 0:
        raise ConfigError("[cache] audio_disk_bytes", "must be >= 0 (0 = no disk tier)")
    if s.cache.media_id_ttl >= 30 * 24 * 3600:
        raise ConfigError("[cache] media_id_ttl", "must be under 30 days (WhatsApp drops uploads)")
    for key in ("failure_rate", "slow_call_rate"):
        if not 0 < getattr(s.breakers, key) <= 1:
            raise ConfigError(f"[breakers] {key}", "must be in (0, 1]")
    if not 0 <= s.retries.budget_ratio <= 1:
        raise ConfigError("[retries] budget_ratio", "must be between 0 and 1")
    for section in ("server", "timeouts", "lanes", "inbox", "http", "voice", "breakers"):
        _check_positive(section, getattr(s, section))
    _check_positive("agentforce", s.agentforce)
    _check_positive("whatsapp", s.whatsapp)
    _check_positive("twilio", s.twilio)
    if s.server.body_memory_bytes < s.server.max_body_bytes:
        raise ConfigError(
            "[server] body_memory_bytes",
            f"must be >= [server] max_body_bytes ({s.server.max_body_bytes}), or a body of the "
            "largest allowed size could never be read",
        )
    if s.retries.max_attempts < 1:
        raise ConfigError("[retries] max_attempts", "must be >= 1")
    _check_limits(s.limits)
    for name in ("media_hosts",):
        if not s.whatsapp.media_hosts:
            raise ConfigError(f"[whatsapp] {name}", "must name at least one host")


def _check_limits(limits: LimitsConfig) -> None:
    """Every count and budget >= 0 (0 = off); a bucket needs both its burst and its rate."""
    for f in dataclasses.fields(limits):
        value = getattr(limits, f.name)
        if value < 0:
            raise ConfigError(f"[limits] {f.name}", f"must be >= 0 (0 = off), got {value!r}")
    for key in ("users", "notice_every"):
        if getattr(limits, key) <= 0:
            raise ConfigError(f"[limits] {key}", f"must be > 0, got {getattr(limits, key)!r}")
    if (limits.burst == 0) != (limits.per_minute == 0):
        raise ConfigError(
            "[limits] burst / per_minute", "the rate limit needs both (or both 0 to turn it off)"
        )


def _check_redis(r: RedisConfig) -> None:
    parts = urlsplit(r.url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigError("[redis] url", f"must be a redis:// or rediss:// URL, got {r.url!r}")
    if parts.password is not None:
        raise ConfigError(
            "[redis] url", "must not hold a password: set the secret REDIS_PASSWORD instead"
        )
    try:
        parts.port  # noqa: B018 (urlsplit checks the port when it is read)
    except ValueError:
        raise ConfigError("[redis] url", f"has an invalid port: {r.url!r}") from None
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ConfigError("[redis] url", f"the path must be a database number, got {db!r}")
    if db and r.mode == "cluster":
        raise ConfigError("[redis] url", "Redis Cluster has only database 0: drop the path")
    if not r.prefix or any(c in r.prefix for c in "{} "):
        # Braces would break the {user} hash tags that keep one user's keys on one slot.
        raise ConfigError(
            "[redis] prefix", f"must be non-empty, without braces or spaces, got {r.prefix!r}"
        )
    _check_choice("[redis] mode", r.mode, REDIS_MODES)
    if r.mode == "sentinel" and not r.sentinels:
        raise ConfigError("[redis] sentinels", 'mode = "sentinel" needs at least one "host:port"')
    for i, sentinel in enumerate(r.sentinels):
        _check_bind(f"[redis] sentinels[{i}]", sentinel)
    if r.mode == "sentinel" and not r.sentinel_service:
        raise ConfigError("[redis] sentinel_service", "must name the monitored primary")
    _check_positive("redis", r)


def _check_cache_rules(cache: CacheConfig) -> None:
    """FAQ and deny rules compile and their TTLs are in range (building them says why)."""
    from daemon.cache import rules  # the rule classes validate themselves

    for i, faq in enumerate(cache.faq):
        try:
            rules.CacheRule(faq.pattern, faq.ttl, faq.standalone, faq.name)
        except ValueError as exc:
            raise ConfigError(f"[cache] faq[{i}]", str(exc)) from None
    for i, deny in enumerate(cache.deny):
        try:
            rules.DenyRule(deny.pattern, deny.name)
        except ValueError as exc:
            raise ConfigError(f"[cache] deny[{i}]", str(exc)) from None
    try:
        rules.Rules(personal=cache.personal or rules.DEFAULT_PERSONAL, opener_ttl=cache.opener_ttl)
    except ValueError as exc:
        raise ConfigError("[cache] personal / opener_ttl", str(exc)) from None
    if cache.confirmations < 1:
        raise ConfigError("[cache] confirmations", f"must be >= 1, got {cache.confirmations}")


def validate_ready(s: Settings) -> None:
    """Checks that only matter to serve real traffic: ids and secrets are present."""
    required: list[tuple[str, str, str]] = [
        (
            "[agentforce] token_url",
            s.agentforce.token_url,
            "https://<MyDomain>/services/oauth2/token",
        ),
        ("[agentforce] instance_endpoint", s.agentforce.instance_endpoint, "https://<MyDomain>"),
        ("[agentforce] agent_id", s.agentforce.agent_id, "the 0Xx... id of your agent"),
        ("[elevenlabs] voice_id", s.elevenlabs.voice_id, "the ElevenLabs voice to speak with"),
    ]
    secrets = ["AGENTFORCE_CLIENT_ID", "AGENTFORCE_CLIENT_SECRET", "ELEVENLABS_API_KEY"]
    if s.channel.provider == "meta":
        required.append(
            ("[whatsapp] phone_number_id", s.whatsapp.phone_number_id, "your business number id")
        )
        secrets += ["WHATSAPP_ACCESS_TOKEN", "WHATSAPP_APP_SECRET"]
    else:
        required += [
            ("[twilio] account_sid", s.twilio.account_sid, "your AC... account SID"),
            ("[twilio] public_url", s.twilio.public_url, "the https URL Twilio calls"),
        ]
        secrets.append("TWILIO_AUTH_TOKEN")
    for key, value, what in required:
        if not value:
            raise ConfigError(key, f"required: {what}")
    for name in secrets:
        if not s.secrets.get(name):
            cred = name.lower().replace("_", "-")
            raise ConfigError(
                name,
                f"required secret: set the environment variable {name} or the credential "
                f"file $CREDENTIALS_DIRECTORY/{cred}",
            )


def replace(s: Settings, **sections: Any) -> Settings:
    """A copy of ``s`` with whole sections or single keys replaced: ``replace(s,
    timeouts={"agent": 1.0})``. For tests, the demo and the simulators."""
    changes: dict[str, Any] = {}
    for name, value in sections.items():
        if isinstance(value, dict):
            changes[name] = dataclasses.replace(getattr(s, name), **value)
        else:
            changes[name] = value
    return dataclasses.replace(s, **changes)
