"""A lean HTTP/1.1 client for the load generator: prebuilt request bytes over kept-alive sockets.

The generator must cost as little as possible next to the daemon it measures, and must add
no latency of its own: no per-request client machinery (httpx builds a request, headers,
a pool plan and a response object per call, ~0.5 ms of CPU), just bytes written and the
status line read back. Requests are built once, before the clock starts (``request``);
``Connections.post`` takes a kept-alive connection (or opens one, counted in ``opened``),
writes them and reads the response to its last byte.

Only what the daemon's hypercorn sends is understood: a status line, headers and a body of
``Content-Length`` bytes (Quart sets it on every response with a body); ``Connection:
close`` closes the connection after the response. Anything else is a ``ProtocolError``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import trio

_MAX_HEAD = 64 * 1024


class ProtocolError(Exception):
    """The server answered something this client does not read (or closed mid-response)."""


def request(method: str, host: str, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    """The exact bytes of one request; ``Host`` and ``Content-Length`` are added here."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Connection:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.requests = 0  # answered on this connection so far

    async def exchange(self, data: bytes) -> tuple[int, bool]:
        """Send ``data``, read one response; (status, whether the connection stays open)."""
        await self.stream.send_all(data)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > _MAX_HEAD:
                raise ProtocolError("response head too large")
            await self._fill()
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[: end + 4]
        try:
            status = int(head[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise ProtocolError(f"bad status line {head[0]!r}") from None
        length: int | None = None
        keep = True
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                keep = False
            elif name == "transfer-encoding":
                raise ProtocolError("chunked responses are not read by this client")
        if length is None:
            raise ProtocolError("response without Content-Length")
        while len(self.buffer) < length:
            await self._fill()
        del self.buffer[:length]
        self.requests += 1
        return status, keep

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise ProtocolError("connection closed mid-response")
        self.buffer += chunk


class Connections:
    """Kept-alive connections to one server, used round-robin (FIFO), so that none idles
    long enough to meet the server's keep-alive timeout while the load runs."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.opened = 0  # connections opened, warm-up included
        self.retried = 0  # requests sent again because a kept-alive connection was gone
        self._idle: deque[_Connection] = deque()

    async def warm(self, count: int) -> None:
        """Replace the idle connections with ``count`` new ones, ahead of a load: the server
        may have closed the old ones meanwhile (keep-alive timeout), and the handshakes are
        then not in the first requests' latency."""
        await self.aclose()
        for _ in range(count):
            self._idle.append(await self._open())

    async def post(self, data: bytes) -> int:
        """Send one prebuilt request; its response status. A kept-alive connection the
        server closed meanwhile is replaced by a new one, once."""
        connection = self._idle.popleft() if self._idle else await self._open()
        try:
            return await self._exchange(connection, data)
        except (ProtocolError, trio.BrokenResourceError, OSError):
            if connection.requests == 0:
                raise  # a new connection that failed: the server's answer, not a stale socket
        self.retried += 1
        return await self._exchange(await self._open(), data)

    async def _exchange(self, connection: _Connection, data: bytes) -> int:
        try:
            status, keep = await connection.exchange(data)
        except BaseException:
            await connection.stream.aclose()
            raise
        if keep:
            self._idle.append(connection)
        else:
            await connection.stream.aclose()
        return status

    async def aclose(self) -> None:
        while self._idle:
            await self._idle.popleft().stream.aclose()

    async def _open(self) -> _Connection:
        self.opened += 1
        return _Connection(await trio.open_tcp_stream(self.host, self.port))
