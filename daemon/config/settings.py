"""``Settings``: every section of config.toml plus the secrets, as one frozen value.

The core sections are fields of ``Settings``; each WhatsApp provider brings its own section
(daemon/channels/registry.py), kept in ``providers`` and read by its class:
``settings.section(TwilioConfig)``. Every provider's section is loaded and checked, the
configured one's ids and secrets are required to serve.

Secrets never live in config.toml. Each comes from the environment variable of its name, or
from a file of the same name in lower-case-with-dashes under ``$CREDENTIALS_DIRECTORY``
(systemd ``LoadCredential=``); the credential file wins, because it is the deliberate,
least-exposed source.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from daemon.channels import registry
from daemon.config.sections import (
    AdminConfig,
    AgentforceConfig,
    BreakersConfig,
    ChannelConfig,
    ElevenLabsConfig,
    HttpConfig,
    InboxConfig,
    LanesConfig,
    LimitsConfig,
    LogConfig,
    RetriesConfig,
    ServerConfig,
    TextsConfig,
    TimeoutsConfig,
    UxConfig,
    VoiceConfig,
)
from daemon.config.storage import CacheConfig, RedisConfig, StateConfig

S = TypeVar("S")

_CORE_SECRETS = (
    "AGENTFORCE_CLIENT_ID",
    "AGENTFORCE_CLIENT_SECRET",
    "ELEVENLABS_API_KEY",
    "WA_AGENTD_ADMIN_TOKEN",
    # Keys the hashes of phone numbers in the logs (daemon/observe/logs.py). Optional: unset,
    # the daemon keeps a random one in its state directory.
    "WA_AGENTD_LOG_SALT",
    # The Redis password (AUTH), for [state] backend = "redis"; never in [redis] url.
    "REDIS_PASSWORD",
)


def secret_names() -> tuple[str, ...]:
    """Every secret the daemon reads: each provider's and its own."""
    return tuple(s for p in registry.PROVIDERS for s in p.secrets) + _CORE_SECRETS


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


def provider_defaults() -> dict[str, Any]:
    """Every provider's section with its defaults, by section name."""
    return {p.section: p.settings() for p in registry.PROVIDERS}


@dataclass(frozen=True)
class Settings:
    server: ServerConfig = field(default_factory=ServerConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
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
    # The providers' sections, by section name ([whatsapp], [twilio]); see section().
    providers: Mapping[str, Any] = field(default_factory=provider_defaults)
    secrets: Secrets = field(default_factory=Secrets)

    def state_dir(self) -> Path:
        return Path(self.state.dir or os.environ.get("STATE_DIRECTORY", "") or "state")

    def cache_dir(self) -> Path:
        return Path(self.cache.dir or os.environ.get("CACHE_DIRECTORY", "") or "cache")

    def section(self, cls: type[S]) -> S:
        """A provider's section by its class: ``settings.section(WhatsAppConfig)``."""
        for value in self.providers.values():
            if isinstance(value, cls):
                return value
        raise KeyError(f"no provider section of type {cls.__name__}")

    def sections(self, *, serving: bool = False) -> Iterator[tuple[str, Any]]:
        """Every section with its name in config.toml, core first, then the providers';
        ``serving``: only the configured provider's."""
        for f in dataclasses.fields(self):
            if f.name not in ("providers", "secrets"):
                yield f.name, getattr(self, f.name)
        for provider in registry.PROVIDERS:
            if not serving or provider.name == self.channel.provider:
                yield provider.section, self.providers[provider.section]

    def provider_secrets(self) -> tuple[str, ...]:
        """The secrets the configured provider cannot serve without."""
        return registry.get(self.channel.provider).needs
