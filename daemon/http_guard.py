"""Keep a cancelled request from leaking a connection slot (encode/httpcore#1093).

On httpcore 1.0.9, a request cancelled after the pool assigned it a *new* connection but
before that connection started connecting leaves the connection behind: not closed, not
idle, not available, owned by nobody. Every such orphan holds one of ``max_connections``
slots for good, and once they add up every request fails with ``PoolTimeout`` against a
healthy upstream (reproduced here under trio: 300 rounds of cancelled requests on a pool of
2 poisoned it). Per-call timeouts in this daemon *are* trio cancel scopes, so it would happen.

The fix mirrors the one merged in the maintained fork (pydantic/httpx2#983) and proposed
upstream (encode/httpcore#1094, #1099): whenever the pool re-plans, it first drops
connections that never connected and that no live request references. httpcore is pinned
exactly in pyproject.toml because this touches private names; tests/unit/test_http_pool.py
shows the pool still serving after hundreds of cancellations at random points.
"""

from __future__ import annotations

from typing import Any

from httpcore import AsyncConnectionPool, AsyncHTTPConnection

_installed = False


def _is_orphan(pool: Any, connection: Any) -> bool:
    if not isinstance(connection, AsyncHTTPConnection):
        return False
    if connection._connection is not None or connection._connect_failed:
        return False  # connected (in use or idle), or failed: the pool handles those itself
    return not any(request.connection is connection for request in pool._requests)


def install() -> None:
    global _installed
    if _installed:
        return
    original = AsyncConnectionPool._assign_requests_to_connections

    def assign_without_orphans(self: Any) -> Any:
        for connection in list(self._connections):
            if _is_orphan(self, connection):
                self._connections.remove(connection)
        return original(self)

    AsyncConnectionPool._assign_requests_to_connections = assign_without_orphans  # type: ignore[method-assign]
    _installed = True
