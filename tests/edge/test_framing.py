"""Request framing a proxy in front may read differently: refused, connection closed (issue 10).

h11 (0.16) reads a request with both Content-Length and Transfer-Encoding by the chunked
framing alone and keeps the connection open, and it unfolds obs-folded header lines. A proxy
that frames such a request by its Content-Length, or does not unfold, sees a different
request boundary than the daemon: whatever follows is a request smuggled past the proxy.
Before: the request below got 401, and the smuggled GET behind it 200 on the same connection.
Now: 400 and the connection closed (daemon/web_guard.py, RFC 9112 §6.1 and §5.2).
"""

from __future__ import annotations

import re

import pytest
import trio

from daemon.sim.base import Changes
from daemon.sim.stack import open_stack
from tests.edge.test_abuse import (
    MARGIN,
    SERVE_TIMEOUT,
    Conn,
    _abuse,
    _address,
    _assert_serving,
    _wait_closed,
)


def _statuses(data: bytes) -> list[int]:
    """Every HTTP/1.1 status line in ``data``, also one right behind a previous body."""
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


SIGNED_LOOKING = b"X-Hub-Signature-256: sha256=" + b"0" * 64 + b"\r\n"
SMUGGLED = b"GET /healthz HTTP/1.1\r\nHost: daemon\r\n\r\n"

AMBIGUOUS = {
    "Content-Length and chunked": (
        b"POST /webhook HTTP/1.1\r\nHost: daemon\r\n" + SIGNED_LOOKING
        + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "chunked and Content-Length": (
        b"POST /webhook HTTP/1.1\r\nHost: daemon\r\n" + SIGNED_LOOKING
        + b"Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "Content-Length, CHUNKED in capitals": (
        b"POST /webhook HTTP/1.1\r\nHost: daemon\r\n" + SIGNED_LOOKING
        + b"Content-Length: 4\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "obs-folded Transfer-Encoding": (
        b"POST /webhook HTTP/1.1\r\nHost: daemon\r\n" + SIGNED_LOOKING
        + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "obs-folded Content-Length": (
        b"POST /webhook HTTP/1.1\r\nHost: daemon\r\n" + SIGNED_LOOKING
        + b"Content-Length:\r\n\t0\r\n\r\n" + SMUGGLED
    ),
    "obs-fold in another header": (
        b"GET /healthz HTTP/1.1\r\nHost: daemon\r\nX-Note: one\r\n two\r\n\r\n" + SMUGGLED
    ),
}  # fmt: skip


@pytest.mark.parametrize("payload", list(AMBIGUOUS.values()), ids=list(AMBIGUOUS))
async def test_ambiguous_framing_is_refused_and_the_connection_closed(payload: bytes) -> None:
    """One answer, a 400, and the connection closed: the request behind it is never read."""
    async with open_stack() as stack:
        conn = Conn(Changes())
        with trio.fail_after(2 * SERVE_TIMEOUT):
            async with trio.open_nursery() as client:
                client.start_soon(_abuse, _address(stack), conn, payload)
                await _wait_closed([conn], trio.current_time() + SERVE_TIMEOUT)
                client.cancel_scope.cancel()
            await _assert_serving(stack, "15550000301")
    assert _statuses(conn.received) == [400], conn.received[:300]
    assert conn.closed
    assert b"connection: close" in conn.received.lower()
    assert stack.daemon.web.stats.webhooks.get("unsigned", 0) == 0  # never reached the app


async def test_plain_framing_still_keeps_the_connection() -> None:
    """The same requests without the ambiguity: answered, and the connection kept alive for
    the next request (so the refusal above is about the framing, nothing else)."""
    plain = (
        b"POST /webhook HTTP/1.1\r\nHost: daemon\r\n" + SIGNED_LOOKING
        + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    )  # fmt: skip
    async with open_stack() as stack:
        board = Changes()
        conn = Conn(board)
        with trio.fail_after(SERVE_TIMEOUT + MARGIN):
            async with trio.open_nursery() as client:
                client.start_soon(_abuse, _address(stack), conn, plain)
                await board.until(lambda: len(_statuses(conn.received)) == 2)
                client.cancel_scope.cancel()
    assert _statuses(conn.received) == [401, 200]  # a forged signature, then the GET
