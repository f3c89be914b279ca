"""Keep one malformed connection from taking the whole server down (hypercorn#225, #203),
and slow clients from holding kept-alive connections forever.

On hypercorn 0.18 with the trio worker, a ``GET`` with ``Upgrade: websocket`` followed by a
stray byte makes ``serve()`` raise ``h11.LocalProtocolError`` and the process exits
(reference/trio-stack.md §1, verified there; upstream fix reverted). This wraps the two
per-connection entry points so such an error ends that connection only. ``Cancelled`` is a
BaseException and still propagates, so shutdown is unaffected. hypercorn is pinned exactly in
pyproject.toml because these are private names.
"""

from __future__ import annotations

import logging
from typing import Any

import hypercorn.trio.task_group as _task_group
import hypercorn.trio.tcp_server as _tcp_server
import trio
from hypercorn.events import Closed, Updated

log = logging.getLogger("wa_agentd.http")

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    original_handle = _task_group._handle
    original_run = _tcp_server.TCPServer.run

    async def safe_handle(*args: Any) -> None:
        try:
            await original_handle(*args)
        except Exception:
            log.warning("HTTP request task failed; connection dropped", exc_info=True)

    async def safe_run(self: Any) -> None:
        try:
            await original_run(self)
        except Exception:
            log.warning("HTTP connection failed; connection dropped", exc_info=True)

    # Monkeypatching private names is the point of this module, hence the two ignores.
    original_send = _tcp_server.TCPServer.protocol_send

    async def shielded_send(self: Any, event: Any) -> None:
        # After a response, hypercorn starts the keep-alive idle timer (Updated) or closes the
        # connection (Closed) from the request task, which quart-trio is cancelling by then:
        # the timer dies at once, or the close never happens, and a client dripping a byte
        # now and then holds the connection forever (tests/edge/test_abuse.py). Both are
        # quick bookkeeping, so they run shielded from that cancellation.
        if isinstance(event, Closed | Updated):
            with trio.CancelScope(shield=True):
                await original_send(self, event)
        else:
            await original_send(self, event)

    _task_group._handle = safe_handle  # type: ignore[assignment]
    _tcp_server.TCPServer.run = safe_run  # type: ignore[method-assign]
    _tcp_server.TCPServer.protocol_send = shielded_send  # type: ignore[method-assign]
    _installed = True
