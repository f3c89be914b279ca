"""The sections of config.toml, one frozen dataclass each, with their safe defaults.

Field names are the TOML keys (``from_`` is ``from``, a Python keyword); the comments say
what each key means and why its default is what it is. A field's type says what it may
hold: enumerated values are ``StrEnum``s, constraints ride on the type (``Seconds`` is a
number > 0, ``Annotated[str, HTTP_URL]`` an http(s) URL; daemon/fields.py,
daemon/config/checks.py), checked once by daemon/config/validate.py. Loading them is
daemon/config/load.py.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from daemon.config.checks import (
    AT_LEAST_ONE,
    OUTPUT_FORMAT,
    PATH,
    RATE,
    SHARE,
    UNIT,
)
from daemon.fields import (
    HOST_PORT,
    HOST_PORT_OR_EMPTY,
    HTTP_URL,
    HTTP_URL_OR_EMPTY,
    OFF_OR_MORE,
    Bytes,
    Count,
    Needed,
    Seconds,
)
from daemon.texts import BUILT_IN_TEXTS, TextTable


class VoiceReply(enum.StrEnum):
    """``[voice] reply``: when an answer goes as a voice note too."""

    MIRROR = "mirror"  # when the user sent one
    ALWAYS = "always"
    NEVER = "never"


class LogLevel(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class ServerConfig:
    bind: Annotated[str, HOST_PORT] = "127.0.0.1:8080"
    webhook_path: Annotated[str, PATH] = "/webhook"
    # Meta's webhook payloads are at most 3 MB (reference/whatsapp.md §3); a little headroom.
    max_body_bytes: Bytes = 3 * 1024 * 1024
    # Webhook bodies read (and held) at once, and their combined size: a body reserves its
    # Content-Length (a chunked one: max_body_bytes) before it is read; beyond either, 503
    # (Meta and Twilio retry). Bounds what unsigned clients can make the daemon buffer; the
    # count is generous because Meta delivers concurrently and its bodies are a few KB.
    max_body_reads: Count = 256
    body_memory_bytes: Bytes = 16 * 1024 * 1024
    # Open connections per listener. At the cap a new connection closes the oldest idle one
    # (no request in flight); when none is idle it gets a 503 and is closed. Well under the
    # unit's LimitNOFILE=8192, which the upstream pools, the store and the caches share.
    max_connections: Count = 1000
    # HTTP/2 (h2c upgrade and prior knowledge) on the plain listener. Neither Meta nor Twilio
    # needs it, and the TLS proxy in front speaks HTTP/1.1 to us.
    http2: bool = False
    # Inbound messages accepted but not yet turned, across all users. Full -> 503, Meta retries.
    queue_size: Count = 1000
    # Seconds an HTTP request in flight may take to finish after a stop was asked for.
    graceful_timeout: Seconds = 5.0
    # Seconds turns in flight may take to finish after a stop request (webhooks get 503
    # meanwhile); turns still running then resume after the restart (durable inbox).
    drain_timeout: Seconds = 30.0


@dataclass(frozen=True)
class ChannelConfig:
    provider: str = "meta"


@dataclass(frozen=True)
class AgentforceConfig:
    token_url: Annotated[
        str, HTTP_URL_OR_EMPTY, Needed("https://<MyDomain>/services/oauth2/token")
    ] = ""
    api_url: Annotated[str, HTTP_URL] = "https://api.salesforce.com/einstein/ai-agent/v1"
    instance_endpoint: Annotated[str, HTTP_URL_OR_EMPTY, Needed("https://<MyDomain>")] = ""
    agent_id: Annotated[str, Needed("the 0Xx... id of your agent")] = ""
    # Idle sessions are ended (DELETE, reason Expiration) after this many seconds. The Agent
    # API documents no idle timeout; bridges use 20-30 min (reference/agentforce.md §8).
    session_idle: Seconds = 1200.0
    max_sessions: Count = 10_000
    # The token response has no expires_in; when the JWT has no readable exp, refresh after
    # this long (the documented default app token timeout is 30 min).
    token_ttl: Seconds = 1500.0
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
    api_url: Annotated[str, HTTP_URL] = "https://api.elevenlabs.io"
    voice_id: Annotated[str, Needed("the ElevenLabs voice to speak with")] = ""
    tts_model: str = "eleven_flash_v2_5"
    stt_model: str = "scribe_v1"
    # Ogg/Opus straight from the API: no transcode on the happy path (reference/speech.md §1.5).
    output_format: Annotated[str, OUTPUT_FORMAT] = "opus_48000_32"
    # Voice settings (0..1). Style above 0 and speaker boost add latency (speech.md §1.4).
    stability: Annotated[float, UNIT] = 0.5
    similarity_boost: Annotated[float, UNIT] = 0.75
    style: Annotated[float, UNIT] = 0.0
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
    reply: VoiceReply = VoiceReply.MIRROR
    # Longest text spoken as a voice note. At 32 kbit/s WhatsApp shows the play button up to
    # 512 KB, about 2 minutes of speech (reference/whatsapp.md §4.2); longer answers go as
    # text only (spoken sentence by sentence: cut after the last whole sentence that fits,
    # with the voice_cut line at the end).
    max_tts_chars: Count = 1500
    # Longest voice note (any audio a user sends) transcribed, in seconds, measured by decoding
    # it (never from its headers) before speech-to-text, which bills per second. Longer ones
    # get the voice_too_long reply and no speech-to-text call.
    max_seconds: Seconds = 300.0
    # Speak a streamed answer sentence by sentence while the agent writes it, joined into
    # one voice note ([agentforce] streaming). Off until the turn is wired to it and
    # measured faster (issue 12).
    sentence_tts: bool = False
    # Text-to-speech requests at once for one answer spoken sentence by sentence. The
    # plan's concurrency is per account (Flash/Turbo: free 4, starter 6, creator 10;
    # reference/speech.md §1.8); beyond it requests queue or get 429, which is retried.
    tts_concurrency: Count = 3


@dataclass(frozen=True)
class TimeoutsConfig:
    download: Seconds = 10.0
    stt: Seconds = 30.0
    agent: Seconds = 60.0
    tts: Seconds = 30.0
    whatsapp: Seconds = 10.0
    upload: Seconds = 20.0
    turn: Seconds = 120.0
    # A streamed answer ([agentforce] streaming) with no event for this long is given up
    # (an unknown outcome: one apology, never asked again); `agent` bounds it all.
    agent_idle: Seconds = 30.0


@dataclass(frozen=True)
class BreakersConfig:
    """One circuit breaker per upstream (whatsapp, agentforce, elevenlabs-stt, elevenlabs-tts),
    over its last ``window`` calls. A call slower than half its timeout counts as slow."""

    window: Count = 20
    min_calls: Count = 10  # no verdict before this many calls
    failure_rate: Annotated[float, RATE] = 0.5  # open when half the calls failed ...
    slow_call_rate: Annotated[float, RATE] = 0.8  # ... or 80 % were slow
    open_seconds: Seconds = 30.0  # fail fast this long, then try again
    half_open_calls: Count = 3  # trial calls, each with the upstream's timeout


@dataclass(frozen=True)
class RetriesConfig:
    max_attempts: Annotated[int, AT_LEAST_ONE] = 3  # per call, the first included (Google SRE: 3)
    # Retries may add at most this share of traffic (plus one per second), so a struggling
    # upstream is not buried under them (Finagle's retry budget).
    budget_ratio: Annotated[float, SHARE] = 0.1


@dataclass(frozen=True)
class LanesConfig:
    # Most users with a lane at once; a new user beyond it is answered 503 (Meta retries).
    max_lanes: Count = 10_000
    # Messages one user may have waiting behind the turn in flight. More wait in the durable
    # inbox (answered 200; the resume loop hands them over in order as the lane drains), up to
    # max_waiting per user; beyond that they are dropped and counted. Never a 503 for others.
    max_pending: Count = 20
    max_waiting: Count = 100
    # A lane with nothing to do goes away after this many seconds.
    idle_seconds: Seconds = 60.0
    # Turns running at once across all users (bounds memory and upstream concurrency).
    max_concurrent_turns: Count = 64
    # Users whose last language (for canned texts before speech-to-text has spoken) and
    # deferred messages (to keep their answers in order) are remembered, least recently
    # seen forgotten first; a remembered language is forgotten after remembered_ttl.
    remembered_users: Count = 10_000
    remembered_ttl: Seconds = 86400.0


@dataclass(frozen=True)
class LimitsConfig:
    """Per-user limits and global daily budgets (README "Limits and budgets"). A day is the
    UTC calendar day: every daily count starts again at 00:00 UTC. 0 turns a limit off."""

    # A token bucket per user: `burst` messages in a row, then `per_minute` more a minute.
    # A message over it is answered 200 and dropped, never asked of the agent; the user gets
    # one "slow down" reply, at most once every `notice_every` seconds.
    burst: Annotated[int, OFF_OR_MORE] = 10
    per_minute: Annotated[float, OFF_OR_MORE] = 6.0
    notice_every: Seconds = 600.0
    # Per user and UTC day: turns, seconds of voice notes transcribed, characters spoken.
    # Each gets one polite reply the first time it is hit that day; the spoken one is not a
    # reply but the end of voice notes for the day (answers go as text, with one line saying
    # so).
    daily_turns: Annotated[int, OFF_OR_MORE] = 300
    daily_stt_seconds: Annotated[float, OFF_OR_MORE] = 1800.0
    daily_tts_characters: Annotated[int, OFF_OR_MORE] = 30_000
    # Users whose counts are kept, least recently seen forgotten first.
    users: Count = 10_000
    # The whole daemon, per UTC day (0 = no budget): agent calls, seconds of audio sent to
    # speech-to-text, characters sent to text-to-speech, WhatsApp messages sent. When one is
    # spent: agent -> a polite "busy" reply (cached answers still served); stt -> voice
    # notes get a "please type" reply; tts -> answers go as text only; whatsapp -> nothing
    # more is sent that day. /metrics shows wa_agentd_budget_exhausted for the alert.
    budget_agent_calls: Annotated[int, OFF_OR_MORE] = 0
    budget_stt_seconds: Annotated[float, OFF_OR_MORE] = 0.0
    budget_tts_characters: Annotated[int, OFF_OR_MORE] = 0
    budget_whatsapp_messages: Annotated[int, OFF_OR_MORE] = 0


@dataclass(frozen=True)
class InboxConfig:
    # Meta redelivers for up to 7 days (reference/whatsapp.md §3).
    dedupe_ttl: Seconds = 7 * 24 * 3600.0
    dedupe_max_ids: Count = 200_000
    # A turn that could deliver nothing because WhatsApp said "not now" is tried again this
    # often, for at most retry_window: WhatsApp takes free-form messages only within 24 h of
    # the user's last one (reference/whatsapp.md §5).
    retry_every: Seconds = 30.0
    retry_window: Seconds = 24 * 3600.0


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
    holding_after: Annotated[float, OFF_OR_MORE] = 3.0
    # For voice notes, first send what speech-to-text understood, so the user can see a
    # misheard question.
    echo_transcript: bool = False


@dataclass(frozen=True)
class AdminConfig:
    # /metrics, /readyz with its reasons, /admin/*: on loopback, never on the public listener.
    bind: Annotated[str, HOST_PORT_OR_EMPTY] = "127.0.0.1:9464"  # "" = served on [server].bind


@dataclass(frozen=True)
class LogConfig:
    level: LogLevel = LogLevel.INFO


@dataclass(frozen=True)
class HttpConfig:
    """Per upstream pool. Connect and pool waits are short: an upstream that can't be
    reached fails fast, the per-call timeouts in [timeouts] bound the rest."""

    max_connections: Count = 50
    max_keepalive: Count = 20
    keepalive_expiry: Seconds = 30.0
    connect_timeout: Seconds = 5.0
    pool_timeout: Seconds = 5.0


def toml_name(f: dataclasses.Field[Any]) -> str:
    """The TOML key of a section field."""
    return f.name.rstrip("_")  # from_ -> from (a Python keyword)
