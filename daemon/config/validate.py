"""Checks on loaded settings: each value on its own (``validate_values``, at every load), and
what serving real traffic needs besides (``validate_ready``: ids and secrets present).

The checks of a single key are declared on its field (daemon/fields.py) and run here, every
one of every section, in the order the sections and their fields are written; what relates
two keys follows. The first problem is raised as a ``ConfigError`` naming the key.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any
from urllib.parse import urlsplit

from daemon.channels import registry
from daemon.config.sections import LimitsConfig, toml_name
from daemon.config.settings import ConfigError, Settings
from daemon.config.storage import CacheConfig, RedisConfig, RedisMode
from daemon.fields import Each, checks_of, needed_of

# The secrets every provider needs to serve (theirs come from their own sections' specs).
NEEDED_SECRETS = ("AGENTFORCE_CLIENT_ID", "AGENTFORCE_CLIENT_SECRET", "ELEVENLABS_API_KEY")


def check_fields(where: str, section: Any) -> None:
    """Every check declared on the fields of ``section`` (``where`` is "[name]")."""
    hints = typing.get_type_hints(type(section), include_extras=True)
    for f in dataclasses.fields(section):
        value, key = getattr(section, f.name), f"{where} {toml_name(f)}"
        for check in checks_of(hints[f.name]):
            if isinstance(check, Each):
                for i, item in enumerate(value):
                    if (why := check.check.problem(item)) is not None:
                        raise ConfigError(f"{key}[{i}]", why)
            elif (why := check.problem(value)) is not None:
                raise ConfigError(key, why)


def validate_values(s: Settings) -> None:
    """Checks every key can pass on its own, whatever else is set."""
    for name, section in s.sections():
        check_fields(f"[{name}]", section)
    if s.channel.provider not in (names := registry.names()):
        raise ConfigError(
            "[channel] provider", f"must be one of {' | '.join(names)}, got {s.channel.provider!r}"
        )
    _check_cache_rules(s.cache)
    _check_redis(s.redis)
    if s.server.body_memory_bytes < s.server.max_body_bytes:
        raise ConfigError(
            "[server] body_memory_bytes",
            f"must be >= [server] max_body_bytes ({s.server.max_body_bytes}), or a body of the "
            "largest allowed size could never be read",
        )
    _check_limits(s.limits)


def _check_limits(limits: LimitsConfig) -> None:
    """A bucket needs both its burst and its rate."""
    if (limits.burst == 0) != (limits.per_minute == 0):
        raise ConfigError(
            "[limits] burst / per_minute", "the rate limit needs both (or both 0 to turn it off)"
        )


def _check_redis(r: RedisConfig) -> None:
    """What the mode asks of the other keys."""
    if urlsplit(r.url).path.strip("/") and r.mode is RedisMode.CLUSTER:
        raise ConfigError("[redis] url", "Redis Cluster has only database 0: drop the path")
    if r.mode is RedisMode.SENTINEL and not r.sentinels:
        raise ConfigError("[redis] sentinels", 'mode = "sentinel" needs at least one "host:port"')
    if r.mode is RedisMode.SENTINEL and not r.sentinel_service:
        raise ConfigError("[redis] sentinel_service", "must name the monitored primary")


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


def validate_ready(s: Settings) -> None:
    """Checks that only matter to serve real traffic: ids and secrets are present."""
    for name, section in s.sections(serving=True):
        hints = typing.get_type_hints(type(section), include_extras=True)
        for f in dataclasses.fields(section):
            needed = needed_of(hints[f.name])
            if needed is not None and not getattr(section, f.name):
                raise ConfigError(f"[{name}] {toml_name(f)}", f"required: {needed.what}")
    for secret in (*NEEDED_SECRETS, *s.provider_secrets()):
        if not s.secrets.get(secret):
            cred = secret.lower().replace("_", "-")
            raise ConfigError(
                secret,
                f"required secret: set the environment variable {secret} or the credential "
                f"file $CREDENTIALS_DIRECTORY/{cred}",
            )
