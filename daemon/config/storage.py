"""The sections of where the daemon keeps things: ``[state]`` (what it must not lose),
``[redis]`` (the same, shared by several hosts) and ``[cache]`` (what saves upstream calls).

Like sections.py: one frozen dataclass each, constraints on the fields' types.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated

from daemon.config.checks import (
    CONFIRMATIONS,
    DISK_TIER,
    KEY_PREFIX,
    REDIS_URL,
    UPLOAD_LIFETIME,
)
from daemon.fields import HOST_PORT, POSITIVE, Bytes, Count, Each, Seconds


class RedisMode(enum.StrEnum):
    STANDALONE = "standalone"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


class StateBackend(enum.StrEnum):
    """Where the inbox, journal and sessions live (daemon/state/__init__.py opens them)."""

    SQLITE = "sqlite"  # durable, one host
    MEMORY = "memory"  # tests: a restart forgets


@dataclass(frozen=True)
class StateConfig:
    dir: str = ""  # "" = $STATE_DIRECTORY (systemd), else ./state
    backend: StateBackend = StateBackend.SQLITE


@dataclass(frozen=True)
class RedisConfig:
    """``[redis]``: the shared state of several hosts (daemon/state/redis/).

    The password comes from the secret ``REDIS_PASSWORD``, never from ``url``."""

    # redis://host:port/db, or rediss:// for TLS (verified against the system CAs, or
    # tls_ca_file). In cluster mode: any one node; in sentinel mode: only the db and TLS.
    url: Annotated[str, REDIS_URL] = "redis://127.0.0.1:6379/0"
    # Every key starts with it, so several deployments can share one Redis.
    prefix: Annotated[str, KEY_PREFIX] = "wa-agentd:"
    mode: RedisMode = RedisMode.STANDALONE
    sentinels: Annotated[
        tuple[str, ...], Each(HOST_PORT)
    ] = ()  # "host:port" of each sentinel (mode = "sentinel")
    sentinel_service: str = "wa-agentd"  # the primary's name the sentinels monitor
    username: str = ""  # ACL user; "" = the default user
    tls_ca_file: str = ""  # PEM bundle that signs the server's certificate (rediss://)
    connect_timeout: Seconds = 2.0
    # Seconds a command may take before the daemon counts Redis as down (503, /readyz).
    command_timeout: Seconds = 2.0
    max_connections: Count = 32
    # A host owns a user's turns for this long without renewing; a dead host's users are
    # taken over after it (plus one scan).
    lease_seconds: Seconds = 15.0


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
    response_entries: Count = 10_000
    # A question that opens a conversation is cached this long (no FAQ rule needed), once
    # `confirmations` different users got the same answer.
    opener_ttl: Seconds = 3600.0
    confirmations: Annotated[int, CONFIRMATIONS] = 2
    faq: tuple[FaqRule, ...] = ()
    deny: tuple[DenyRule, ...] = ()
    # Regexes that make a question personal (never cached). Empty: the built-in set (first
    # person, order/case numbers, emails, phone numbers; English, Arabic and a few more).
    personal: tuple[str, ...] = ()
    # TTS audio cache: memory tier, and a disk tier under `dir` (0 = memory only).
    audio_memory_bytes: Bytes = 64 * 1024 * 1024
    audio_disk_bytes: Annotated[int, DISK_TIER] = 512 * 1024 * 1024
    # Uploaded voice notes are reused by media id; WhatsApp keeps uploads 30 days.
    media_ids: Count = 10_000
    media_id_ttl: Annotated[float, POSITIVE, UPLOAD_LIFETIME] = 25 * 24 * 3600.0
    # Transcripts by the voice note's sha256 (forwarded voice notes come again).
    transcripts: Count = 10_000
    transcript_ttl: Seconds = 7 * 24 * 3600.0
    # Phrases spoken at start-up into the audio cache (greetings, common answers).
    prerender: tuple[str, ...] = ()
    prerender_language: str = "en"
    # Also speak the canned replies of every [texts] table at start-up (agent_down,
    # not_understood, no_speech, unsupported): a voice note then gets its apology as a voice
    # note too. Spoken only from the cache: never a TTS call while something is failing.
    prerender_canned: bool = False
