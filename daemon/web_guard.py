"""Every patch of hypercorn and h11 the daemon needs at its HTTP edge, in one place.

hypercorn (0.18.0) and h11 (0.16.0) are pinned exactly in pyproject.toml because these touch
private names; each patch says which upstream behaviour it works around. ``install()``
applies them all, once; ``ListenerConfig`` carries the per-listener settings they read
(``[server] http2``, ``max_connections``).

1. One malformed connection must not take the server down (hypercorn#225, #203): the two
   per-connection entry points are wrapped, so such an error ends that connection only; it
   is counted and logged as one rate-limited line, its traceback at debug level only (an h2
   CONNECT without ``:path`` used to write a 43-line traceback per stream). hypercorn's own
   "Error in ASGI Framework" tracebacks go the same way (``_ErrorLog``, through its
   Config.logger_class hook: no patch).
2. The keep-alive idle timer must survive the request task's cancellation (below,
   ``shielded_send``).
3. A connection cap per listener (daemon/connections.py).
4. HTTP/2 off unless ``[server] http2``: hypercorn has no switch for h2c on a plain listener.
5. Where HTTP/2 is on, a connection without streams closes after keep_alive_timeout however
   many PINGs it sends.
6. Request framing that proxies may read differently is refused (h11 accepts it).
``Cancelled`` is a BaseException and still propagates everywhere, so shutdown is unaffected.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any

import h11
import h11._readers as _h11_readers
import h11._util as _h11_util
import hypercorn.protocol as _protocol
import hypercorn.protocol.h2 as _h2
import hypercorn.protocol.h11 as _h11
import hypercorn.trio.task_group as _task_group
import hypercorn.trio.tcp_server as _tcp_server
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, Updated
from hypercorn.logging import Logger as HypercornLogger

from daemon import connections as _connections
from daemon.connections import REFUSAL, ConnectionCap
from daemon.observe.logs import RateLimitedLog

log = logging.getLogger("wa_agentd.http")

# One line per few seconds whatever a client sends; /metrics counts every one.
_errors = RateLimitedLog(log)
_cap_events = RateLimitedLog(log)
protocol_errors: dict[str, int] = {}  # exception type -> connections it ended, for /metrics

_installed = False


def _leaf(exc: BaseException) -> BaseException:
    """The first exception in a (nested) exception group that is not a cancellation."""
    while isinstance(exc, BaseExceptionGroup):
        rest = exc.split(trio.Cancelled)[1]
        if rest is None:
            break
        exc = rest.exceptions[0]
    return exc


class _ErrorLog(HypercornLogger):
    """hypercorn's error log (through Config.logger_class, its own hook): "Error in ASGI
    Framework" is hypercorn catching what quart-trio or it failed on while serving one
    client's garbage (a websocket rejection sent on a connection h11 already gave up on,
    say): one rate-limited line, like the errors caught below, instead of a traceback each."""

    async def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
        error = sys.exc_info()[1]
        if message == "Error in ASGI Framework" and isinstance(error, Exception):
            protocol_error("request failed in the framework", error)
        else:
            await super().exception(message, *args, **kwargs)


class ListenerConfig(HypercornConfig):
    """hypercorn's Config plus what the patches here read, per listener."""

    http2: bool = False
    connections: ConnectionCap | None = None
    logger_class = _ErrorLog


class _RefuseConnection(Exception):
    """Answer ``status`` and close: raised inside hypercorn's h11 protocol, caught by the
    patched ProtocolWrapper.handle, which sends the answer."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def protocol_error(what: str, exc: Exception) -> None:
    """One connection ended by an exception hypercorn did not handle: counted by the type of
    what went wrong, and logged as one rate-limited line (its traceback at debug level)."""
    cause = _leaf(exc)
    name = type(cause).__name__
    protocol_errors[name] = protocol_errors.get(name, 0) + 1
    _errors.warning("HTTP %s, connection dropped: %s: %s", what, name, cause, traceback=exc)


class _Served:
    """A hypercorn connection as the connection cap sees it."""

    __slots__ = ("server", "since")

    def __init__(self, server: Any) -> None:
        self.server = server
        self.since = trio.current_time()

    @property
    def idle(self) -> bool:
        # hypercorn runs its idle timer exactly while no request is in flight; a connection
        # younger than FRESH_SECONDS may still be waiting for its first request head.
        if self.server.idle_task._handle is None:
            return False
        return trio.current_time() - self.since >= _connections.FRESH_SECONDS

    async def close(self) -> None:
        # What the idle timer does when it fires (TCPServer._idle_timeout), with the timer
        # stopped first: left running it would keep the closed connection's task, and all
        # its objects, alive until keep_alive_timeout (a flood evicts hundreds a second).
        with trio.CancelScope(shield=True):
            try:
                await self.server.idle_task.stop()
                await self.server._initiate_server_close()
            except Exception:  # it may be closing already; either way it is gone
                log.debug("closing an idle connection failed", exc_info=True)


async def _refuse(stream: trio.SocketStream) -> None:
    # Shielded from a shutdown, bounded by its own second: a client that reads nothing gets
    # no more of our time than that.
    with trio.CancelScope(shield=True):
        with (
            trio.move_on_after(1),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError),
        ):
            await stream.send_all(REFUSAL)
        await stream.aclose()


def install() -> None:
    global _installed
    if _installed:
        return
    _guard_connections()
    _keep_idle_timer()
    _switch_http2()
    _strict_request_framing()
    _installed = True


# --------------------------------------------------------------------------- 1, 3: connections


def _guard_connections() -> None:
    original_handle = _task_group._handle
    original_run = _tcp_server.TCPServer.run

    async def safe_handle(*args: Any) -> None:
        try:
            await original_handle(*args)
        except Exception as exc:
            protocol_error("request task failed", exc)

    async def safe_run(self: Any) -> None:
        cap = getattr(self.config, "connections", None)
        served = _Served(self)
        if cap is not None:
            admitted, victim = cap.admit(served)
            if not admitted:
                _cap_events.warning(
                    "connection limit (%d) reached, none idle: a new connection got 503",
                    cap.limit,
                )
                await _refuse(self.stream)
                return
            if victim is not None:
                _cap_events.warning(
                    "connection limit (%d) reached: closed the oldest idle connection",
                    cap.limit,
                )
                await victim.close()
        try:
            await original_run(self)
        except Exception as exc:
            protocol_error("connection failed", exc)
        finally:
            if cap is not None:
                cap.leave(served)

    _task_group._handle = safe_handle  # type: ignore[assignment]
    _tcp_server.TCPServer.run = safe_run  # type: ignore[method-assign]


# --------------------------------------------------------------------------- 2, 5: idle timers


def _keep_idle_timer() -> None:
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

    original_initiate = _h2.H2Protocol.initiate

    async def initiate_idle(self: Any, headers: Any = None, settings: Any = None) -> None:
        # The h11 side stops the idle timer when it reads the "PRI *" request line (the fix of
        # hypercorn#51, da9262d), and H2Protocol restarts it only when a stream closes. A
        # connection that opens no stream then has no timer at all, and a PING more often
        # than read_timeout keeps it open forever (tests/edge/test_connections.py). Starting
        # the timer when the connection begins idle closes it after keep_alive_timeout; PINGs
        # do not restart it (only requests do).
        await original_initiate(self, headers, settings)
        if self.idle:
            await self.send(Updated(idle=True))

    _tcp_server.TCPServer.protocol_send = shielded_send  # type: ignore[method-assign]
    _h2.H2Protocol.initiate = initiate_idle  # type: ignore[method-assign]


# --------------------------------------------------------------------------- 4: HTTP/2 switch


def _switch_http2() -> None:
    original_check = _h11.H11Protocol._check_protocol
    original_handle = _protocol.ProtocolWrapper.handle

    async def check_protocol(self: Any, event: h11.Request) -> None:
        # hypercorn turns a plain connection into HTTP/2 on an "Upgrade: h2c" request or the
        # "PRI *" preface, whatever the config says (alpn_protocols only applies to TLS).
        if getattr(self.config, "http2", True):
            await original_check(self, event)
        elif event.method == b"PRI" and event.target == b"*":
            # The HTTP/2 preface: this listener speaks HTTP/1.1. A 400 (the client's fault),
            # as for any request line it can't serve; never a 5xx that pages someone.
            raise _RefuseConnection(400)
        # else: an h2c Upgrade is ignored and the request answered in HTTP/1.1, as RFC 9110
        # §7.8 lets a server do.

    async def handle(self: Any, event: Any) -> None:
        try:
            await original_handle(self, event)
        except _RefuseConnection as refusal:
            await self.protocol._send_error_response(refusal.status)
            await self.send(Closed())

    _h11.H11Protocol._check_protocol = check_protocol  # type: ignore[method-assign]
    _protocol.ProtocolWrapper.handle = handle  # type: ignore[method-assign]


# --------------------------------------------------------------------------- 6: framing

_FOLD = (b" ", b"\t")


def _strict_request_framing() -> None:
    """h11 reads "Content-Length" and "Transfer-Encoding: chunked" together by the chunked
    framing alone and keeps the connection open, and it unfolds obs-folded header lines
    (``Transfer-Encoding:\\r\\n chunked``). A proxy in front that reads either differently
    would see a different request boundary: request smuggling. RFC 9112 §6.1 lets a server
    reject the first and says it MUST close the connection after it; §5.2 lets it reject
    obs-fold with a 400. Both are refused here with 400, and hypercorn closes the connection
    after an h11 protocol error (Connection: close). No provider sends either.

    The server side's request reader (h11's READERS[CLIENT, IDLE]: a server reads what the
    client sends) is replaced by the same steps with the two checks added; h11's client
    side (httpcore, our upstream calls) is untouched: RFC 9112 §5.2 has user agents accept
    obs-fold in responses.
    """
    LocalProtocolError = h11.LocalProtocolError
    request_line_re = _h11_readers.request_line_re
    validate = _h11_util.validate
    decode_header_lines = _h11_readers._decode_header_lines

    def read_request(buf: Any) -> h11.Request | None:
        lines = buf.maybe_extract_lines()
        if lines is None:
            if buf.is_next_line_obviously_invalid_request_line():
                raise LocalProtocolError("illegal request line")
            return None
        if not lines:
            raise LocalProtocolError("no request line received")
        matches = validate(request_line_re, lines[0], "illegal request line: {!r}", lines[0])
        if any(line.startswith(_FOLD) for line in lines[1:]):
            raise LocalProtocolError("obs-fold in the request's header lines refused")
        request = h11.Request(
            headers=list(decode_header_lines(lines[1:])),
            _parsed=True,
            **matches,
        )
        names = {name for name, _ in request.headers}
        if b"content-length" in names and b"transfer-encoding" in names:
            raise LocalProtocolError("both Content-Length and Transfer-Encoding refused")
        return request

    _h11_readers.READERS[(h11.CLIENT, h11.IDLE)] = read_request
