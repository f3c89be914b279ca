"""``Settings``: every section of config.toml plus the secrets, as one frozen value.

Secrets never live in config.toml. Each comes from the environment variable of its name, or
from a file of the same name in lower-case-with-dashes under ``$CREDENTIALS_DIRECTORY``
(systemd ``LoadCredential=``); the credential file wins, because it is the deliberate,
least-exposed source.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from daemon.config.sections import (
    AdminConfig,
    AgentforceConfig,
    BreakersConfig,
    CacheConfig,
    ChannelConfig,
    ElevenLabsConfig,
    HttpConfig,
    InboxConfig,
    LanesConfig,
    LimitsConfig,
    LogConfig,
    RedisConfig,
    RetriesConfig,
    ServerConfig,
    StateConfig,
    TextsConfig,
    TimeoutsConfig,
    TwilioConfig,
    UxConfig,
    VoiceConfig,
    WhatsAppConfig,
)

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
class Secrets:
    values: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        return self.values.get(name, "")

    def __repr__(self) -> str:  # never print a secret, not even by accident in a traceback
        return f"Secrets({sorted(k for k, v in self.values.items() if v)})"


@dataclass(frozen=True)
class Settings:
    server: ServerConfig = field(default_factory=ServerConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    whatsapp: WhatsAppConfig = field(default_factory=WhatsAppConfig)
    twilio: TwilioConfig = field(default_factory=TwilioConfig)
    agentforce: AgentforceConfig = field(default_factory=AgentforceConfig)
    elevenlabs: ElevenLabsConfig = field(default_factory=ElevenLabsConfig)
    voice: VoiceConfig = field(default_factory=VoiceConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    lanes: LanesConfig = field(default_factory=LanesConfig)
    breakers: BreakersConfig = field(default_factory=BreakersConfig)
    retries: RetriesConfig = field(default_factory=RetriesConfig)
    inbox: InboxConfig = field(default_factory=InboxConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    texts: TextsConfig = field(default_factory=TextsConfig)
    ux: UxConfig = field(default_factory=UxConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    state: StateConfig = field(default_factory=StateConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    log: LogConfig = field(default_factory=LogConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    secrets: Secrets = field(default_factory=Secrets)

    def state_dir(self) -> Path:
        return Path(self.state.dir or os.environ.get("STATE_DIRECTORY", "") or "state")

    def cache_dir(self) -> Path:
        return Path(self.cache.dir or os.environ.get("CACHE_DIRECTORY", "") or "cache")
