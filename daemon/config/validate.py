"""Checks on loaded settings: each value on its own (``validate_values``, at every load), and
what serving real traffic needs besides (``validate_ready``: ids and secrets present)."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlsplit

from daemon.config.sections import REDIS_MODES, CacheConfig, LimitsConfig, RedisConfig, toml_name
from daemon.config.settings import ConfigError, Settings


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
            raise ConfigError(f"[{section}] {toml_name(f)}", f"must be > 0, got {value!r}")


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
