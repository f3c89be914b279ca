"""One pooled httpx client per upstream, built the same way everywhere.

Each upstream client (Graph, Agentforce, ElevenLabs) gets its own ``httpx.AsyncClient`` with
explicit limits, created once at start-up and closed at exit. The per-call budgets of
``[timeouts]`` are trio cancel scopes set by the caller; the httpx timeouts here are only the
network phases (connect, pool wait) that should fail fast on their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from daemon import USER_AGENT, http_guard
from daemon.config import HttpConfig

http_guard.install()

ResponseHook = Callable[[httpx.Response], Awaitable[None]]


def make_client(
    cfg: HttpConfig,
    *,
    read_timeout: float,
    base_url: str = "",
    on_response: ResponseHook | None = None,
) -> httpx.AsyncClient:
    """A pooled client. ``read_timeout`` backs up the caller's cancel scope; ``on_response``
    sees every response (metrics, health), whatever its status."""
    return httpx.AsyncClient(
        event_hooks={"response": [on_response]} if on_response else None,
        base_url=base_url,
        limits=httpx.Limits(
            max_connections=cfg.max_connections,
            max_keepalive_connections=cfg.max_keepalive,
            keepalive_expiry=cfg.keepalive_expiry,
        ),
        timeout=httpx.Timeout(read_timeout, connect=cfg.connect_timeout, pool=cfg.pool_timeout),
        headers={"User-Agent": USER_AGENT},
        # Redirects are followed only where a client asks for it (media downloads check
        # every hop against the allowed hosts themselves).
        follow_redirects=False,
    )
