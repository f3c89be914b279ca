"""How many TCP connections a simulator accepted: the benchmark's connection-reuse figure.

A simulator serves its app through ``start_app``, which wraps it in ``CountingApp``: every
HTTP request names its peer (``scope["client"]``: the client's address and port), and a
connection is one peer. A new (address, port) is a new connection; a kept-alive one sends
its next request from the same port. Ports are reused by the kernel only after it cycled
through its ephemeral range for that destination (tens of thousands of connections), so
within a benchmark window a new peer is a new connection. A connection that never carried
a request is not seen, and costs the client a handshake all the same; the daemon opens
connections only for a request, so none go uncounted that matter here.

Bounded: ports are 16-bit, so the set of peers holds at most 65 536 entries per address.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope


@dataclass
class Accepted:
    """The connections one simulator saw, counted by their first request."""

    peers: set[tuple[str, int]] = field(default_factory=set)
    requests: int = 0

    @property
    def connections(self) -> int:
        return len(self.peers)

    def note(self, scope: Scope) -> None:
        if scope["type"] != "http":
            return
        self.requests += 1
        client = scope["client"]
        if client:
            self.peers.add((str(client[0]), int(client[1])))


# app -> its counter; weak so a simulator that is gone takes its counter with it.
_ACCEPTED: weakref.WeakKeyDictionary[Any, Accepted] = weakref.WeakKeyDictionary()


def accepted(app: Any) -> Accepted:
    """The counter of ``app`` (a simulator's ``.app``), created on first use."""
    counter = _ACCEPTED.get(app)
    if counter is None:
        counter = _ACCEPTED[app] = Accepted()
    return counter


class CountingApp:
    """An ASGI app that notes each request's peer in ``accepted(app)``, then runs ``app``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.accepted = accepted(app)

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        self.accepted.note(scope)
        await self.app(scope, receive, send)
