"""The one coredis client of the daemon, built from ``[redis]``, and what it checks at start.

coredis 6 runs on anyio, hence on trio (reference/redis.md §1). Its clients, pools and
sentinels *must* be used as async context managers — entering one starts the pool's task
group (a reader task per connection), leaving it closes them — so ``open_client`` is one,
and the daemon enters it once for its whole life. Commands are multiplexed over the pool's
connections; ``max_connections`` bounds them, and a full pool makes a caller wait (up to
``connect_timeout``) rather than open more.

Settings that matter:

- TLS (``rediss://``): coredis' own default context verifies nothing (``CERT_OPTIONAL``,
  no host name check), so the context is built here: the system's CAs or ``tls_ca_file``,
  certificate required, host name checked.
- The password is the secret ``REDIS_PASSWORD``; config validation refuses one in the URL.
- Retries: one, on a connection error only (a dead pooled connection after a Redis restart
  is noticed on first use). Every script of this package is safe to run twice — accept
  carries a call token, leases are the holder's own — except that a retried ``attempt``
  may count one run twice. A command that timed out is not retried: the caller hears
  ``RedisUnavailable`` within ``command_timeout``.
- Eviction: the inbox, the journal and the leases must never be evicted, and they carry
  TTLs (their bounds), so any ``volatile-*`` or ``allkeys-*`` policy could drop them under
  memory pressure. ``check_server`` therefore wants ``noeviction`` (a full Redis refuses
  writes, which the daemon answers with 503, and loses nothing) and AOF on.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import coredis
from coredis.connection import TCPLocation
from coredis.exceptions import ConnectionError, RedisClusterError, ResponseError
from coredis.retry import ConstantRetryPolicy

from daemon.config import RedisConfig
from daemon.state.redis.errors import RedisUnavailable, mapped

log = logging.getLogger(__name__)

RedisClient = coredis.Redis[bytes] | coredis.RedisCluster[bytes]

MIN_VERSION = (7, 0)  # Functions, XAUTOCLAIM, GETEX, ZADD GT: Debian 12's 7.0.15 has them all


def _retry_policy() -> ConstantRetryPolicy:
    return ConstantRetryPolicy((ConnectionError,), retries=1, delay=0.01)


def tls_context(config: RedisConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=config.tls_ca_file or None)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _split_host(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def client_options(config: RedisConfig, password: str) -> dict[str, Any]:
    """Keyword arguments shared by every way of connecting (for a test to see, too)."""
    parts = urlsplit(config.url)
    options: dict[str, Any] = {
        "username": config.username or parts.username or None,
        "password": password or None,
        "connect_timeout": config.connect_timeout,
        "stream_timeout": config.command_timeout,
        "max_connections": config.max_connections,
    }
    if parts.scheme == "rediss":
        options["ssl_context"] = tls_context(config)
    return options


@asynccontextmanager
async def open_client(config: RedisConfig, *, password: str = "") -> AsyncIterator[RedisClient]:
    """The client for ``config``, open until the block ends. Connects lazily: a Redis that
    is down now makes the first command fail, not this."""
    parts = urlsplit(config.url)
    options = client_options(config, password)
    db = int(parts.path.strip("/") or 0)
    async with AsyncExitStack() as stack:
        client: RedisClient
        if config.mode == "cluster":
            client = coredis.RedisCluster(
                parts.hostname,
                parts.port or 6379,
                pool_timeout=config.connect_timeout,
                retry_policy=_retry_policy(),
                **options,
            )
        elif config.mode == "sentinel":
            sentinel: coredis.Sentinel[bytes] = coredis.Sentinel(
                [TCPLocation(*_split_host(s)) for s in config.sentinels],
                sentinel_kwargs={
                    k: options[k] for k in ("connect_timeout", "stream_timeout", "username")
                }
                | {"password": options["password"]},
                retry_policy=_retry_policy(),
                **options,
            )
            await stack.enter_async_context(sentinel)
            client = sentinel.primary_for(config.sentinel_service, db=db)
        else:
            client = coredis.Redis(
                parts.hostname,
                parts.port or 6379,
                db,
                pool_timeout=config.connect_timeout,
                retry_policy=_retry_policy(),
                client_name="wa-agentd",  # CLIENT LIST shows who is connected
                **options,
            )
        await stack.enter_async_context(client)
        yield client


async def ping(client: RedisClient) -> None:
    """One round trip; ``RedisUnavailable`` when Redis can't answer. For /readyz."""
    with mapped():
        await client.ping()


async def check_server(client: RedisClient) -> list[str]:
    """What is wrong with this Redis for holding the daemon's state, in words for the log.

    Raises ``RedisUnavailable`` when it can't be asked at all. CONFIG may be refused
    (managed services rename or forbid it): then only the version is checked."""
    problems: list[str] = []
    with mapped():
        info = await client.info("server")
    version = str(info.get("redis_version", "0"))
    if tuple(int(p) for p in version.split(".")[:2] if p.isdigit()) < MIN_VERSION:
        problems.append(f"Redis {version} is older than 7.0, which the scripts need")
    try:
        policy = await client.config_get(["maxmemory-policy", "appendonly"])
    except (ResponseError, RedisClusterError) as exc:
        # Refused (renamed, ACL), or a cluster client that can't route it to one node.
        log.info("redis: CONFIG GET not answered (%s); eviction and AOF not checked", exc)
        return problems
    except (ConnectionError, TimeoutError) as exc:
        raise RedisUnavailable(str(exc)) from exc
    values = {_text(k): _text(v) for k, v in policy.items()}
    if values.get("maxmemory-policy", "noeviction") != "noeviction":
        problems.append(
            f"maxmemory-policy is {values['maxmemory-policy']}: Redis may evict inbox and "
            "journal keys under memory pressure; set noeviction"
        )
    if values.get("appendonly", "yes") != "yes":
        problems.append("appendonly is off: a Redis restart loses the inbox; set appendonly yes")
    return problems


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["RedisClient", "RedisUnavailable", "check_server", "open_client", "ping"]
