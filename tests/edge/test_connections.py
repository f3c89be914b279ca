"""Connections before any request is signed: HTTP/2 and the connection cap (issue 10).

Before: hypercorn spoke h2c on the plain listener whatever the config, and an HTTP/2
connection that opened no stream had no idle timer at all: 200 of them sending a PING every
second outlived every timeout (bench/attack.py, "h2c"), and enough of them fill the unit's
LimitNOFILE, behind which signed webhooks wait. Now HTTP/2 is off unless [server] http2, a
PINGing connection closes after keep_alive_timeout where it is on, and each listener holds at
most [server] max_connections (daemon/connections.py, daemon/web_guard.py).
"""

from __future__ import annotations

import h2.config
import h2.connection
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from daemon import connections
from daemon.sim.base import Changes
from daemon.sim.stack import Stack, open_stack
from tests.edge.test_abuse import (
    MARGIN,
    SERVE_TIMEOUT,
    Address,
    Conn,
    _abuse,
    _address,
    _assert_serving,
    _keep_alive_timeout,
    _open_paced,
    _statuses,
    _wait_answered,
    _wait_closed,
    _watch,
)

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2C_UPGRADE = (
    b"GET /healthz HTTP/1.1\r\nHost: daemon\r\nUpgrade: h2c\r\n"
    b"Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
)


def _h2_client() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    conn.initiate_connection()
    return conn


async def test_http2_is_off_by_default() -> None:
    """The HTTP/2 preface is refused with an HTTP/1.1 400 and the connection closed; an h2c
    Upgrade is ignored and the request answered in HTTP/1.1 (no 101)."""
    async with open_stack() as stack:
        address, board = _address(stack), Changes()
        preface, upgrade = Conn(board), Conn(board)
        assert stack.settings.server.http2 is False
        with trio.fail_after(SERVE_TIMEOUT + MARGIN):
            async with trio.open_nursery() as clients:
                clients.start_soon(_abuse, address, preface, _h2_client().data_to_send())
                clients.start_soon(_abuse, address, upgrade, H2C_UPGRADE)
                await _wait_answered([preface, upgrade], SERVE_TIMEOUT)
                await _wait_closed([preface], trio.current_time() + MARGIN)
                clients.cancel_scope.cancel()
            await _assert_serving(stack, "15550000201")
    assert preface.received.startswith(b"HTTP/1.1 400 ") and preface.closed
    assert _statuses(upgrade.received) == [200]  # GET /healthz, in HTTP/1.1
    assert b"upgrade: h2c" not in upgrade.received.lower()


PINGERS = 50


async def _pinger(address: Address, conn: Conn, ready: trio.Event) -> None:
    """An HTTP/2 connection (prior knowledge) that opens no stream and PINGs every 0.5 s."""
    stream = await trio.open_tcp_stream(*address)
    conn.opened_at = trio.current_time()
    h2 = _h2_client()
    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(_watch, stream, conn)
        try:
            await stream.send_all(h2.data_to_send())
            ready.set()
            for n in range(1000):
                await trio.sleep(0.5)
                if conn.closed:
                    break
                h2.ping(n.to_bytes(8, "big"))
                await stream.send_all(h2.data_to_send())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await conn.changes.until(lambda: conn.closed)
        nursery.cancel_scope.cancel()


async def test_where_http2_is_on_pings_do_not_keep_a_connection_open() -> None:
    """50 HTTP/2 connections that open no stream and PING twice a second: each is closed
    within keep_alive_timeout (a PING is not a request), while a signed webhook is served."""
    async with open_stack(server={"http2": True}) as stack:
        address, keep_alive = _address(stack), _keep_alive_timeout(stack)
        board = Changes()
        conns = [Conn(board) for _ in range(PINGERS)]
        with trio.fail_after(keep_alive + SERVE_TIMEOUT + 2 * MARGIN):
            async with trio.open_nursery() as clients:
                opened = [trio.Event() for _ in conns]
                for conn, event in zip(conns, opened, strict=True):
                    clients.start_soon(_pinger, address, conn, event)
                for event in opened:
                    await event.wait()
                await _assert_serving(stack, "15550000202")
                await _wait_closed(conns, max(c.opened_at for c in conns) + keep_alive + MARGIN)
                clients.cancel_scope.cancel()
    still_open = sum(not c.closed for c in conns)
    assert still_open == 0, f"{still_open} PINGing connections outlived keep_alive_timeout"
    lived = [c.closed_at - c.opened_at for c in conns if c.closed_at is not None]
    assert max(lived) <= keep_alive + MARGIN
    assert all(c.received.startswith(b"\x00\x00") for c in conns)  # HTTP/2 frames: it was on


CAP = 50


async def _metric(stack: Stack, name: str, **labels: str) -> float:
    text = (await stack.client.get(stack.daemon.admin_url + "/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@pytest.fixture
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """New connections may be closed to make room at once (daemon/connections.py gives them
    FRESH_SECONDS to send a first request head; these tests open them faster than that)."""
    monkeypatch.setattr(connections, "FRESH_SECONDS", 0.0)


async def test_at_the_cap_the_oldest_idle_connection_makes_room(no_grace: None) -> None:
    """Four times [server] max_connections idle connections, opened in paced rounds whose
    probe (a GET on a fresh connection) must be answered: the daemon never holds more than
    the cap, each newcomer closes the oldest idle connection (long before its idle timer),
    and a signed webhook is served meanwhile."""
    async with open_stack(server={"max_connections": CAP}) as stack:
        address, keep_alive = _address(stack), _keep_alive_timeout(stack)
        board = Changes()
        conns = [Conn(board) for _ in range(4 * CAP)]
        with trio.fail_after(keep_alive):
            async with trio.open_nursery() as clients:
                for stream, conn in zip(await _open_paced(address, conns), conns, strict=True):
                    clients.start_soon(_hold, stream, conn)
                with trio.move_on_after(MARGIN):
                    await board.until(lambda: sum(c.closed for c in conns) >= len(conns) - CAP)
                await _assert_serving(stack, "15550000203")
                held = await _metric(stack, "wa_agentd_http_connections", listener="public")
                evicted = await _metric(
                    stack, "wa_agentd_http_connections_shed_total", outcome="evicted"
                )
                clients.cancel_scope.cancel()
    closed = [c for c in conns if c.closed]
    still_open = [c for c in conns if not c.closed]
    assert len(closed) >= len(conns) - CAP
    assert max(c.opened_at for c in closed) <= min(c.opened_at for c in still_open)  # oldest
    assert all(c.closed_at - c.opened_at < keep_alive for c in closed if c.closed_at)
    assert held <= CAP and evicted >= len(closed)
    assert all(c.received == b"" for c in conns)  # closed silently, as an idle timeout does


async def _hold(stream: trio.SocketStream, conn: Conn) -> None:
    async with stream:
        await _watch(stream, conn)


SMALL_CAP = 5


async def test_at_the_cap_with_none_idle_a_new_connection_gets_503() -> None:
    """Every connection at the cap is in a request (``Expect: 100-continue``: the daemon's
    "100 Continue" says it read the head): a new one is answered 503 and closed at once,
    instead of waiting in the accept queue for a slot."""
    async with open_stack(server={"max_connections": SMALL_CAP}) as stack:
        address, board = _address(stack), Changes()
        busy = [Conn(board) for _ in range(SMALL_CAP)]
        newcomer = Conn(board)
        head = (
            b"POST /webhook HTTP/1.1\r\nHost: daemon\r\nContent-Length: 1000\r\n"
            b"Expect: 100-continue\r\n"
            + f"{stack.signature_header}: {stack.forged_signature}\r\n\r\n".encode()
        )
        with trio.fail_after(2 * SERVE_TIMEOUT):
            async with trio.open_nursery() as clients:
                for conn in busy:
                    clients.start_soon(_abuse, address, conn, head)
                await _wait_answered(busy, SERVE_TIMEOUT)
                clients.start_soon(_abuse, address, newcomer, b"")
                await _wait_answered([newcomer], SERVE_TIMEOUT)
                await _wait_closed([newcomer], trio.current_time() + MARGIN)
                in_flight = [c.received for c in busy]
                clients.cancel_scope.cancel()
            refused = await _metric(
                stack, "wa_agentd_http_connections_shed_total", outcome="refused"
            )
    assert all(r.startswith(b"HTTP/1.1 100 ") and r.count(b"HTTP/1.1") == 1 for r in in_flight)
    assert newcomer.received.startswith(b"HTTP/1.1 503 ") and newcomer.closed
    assert refused == 1


@pytest.mark.parametrize("grace", [60.0, 0.0], ids=["fresh ones kept", "no grace"])
async def test_a_fresh_connection_is_not_closed_to_make_room(
    grace: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the cap, kept-alive connections that answered a request moments ago are younger
    than FRESH_SECONDS: a newcomer gets 503 rather than closing one (under a flood a real
    client's first bytes may be a TCP retransmission late). Without the grace the newcomer
    closes the oldest and is served."""
    monkeypatch.setattr(connections, "FRESH_SECONDS", grace)
    async with open_stack(server={"max_connections": SMALL_CAP}) as stack:
        address, board = _address(stack), Changes()
        kept = [Conn(board) for _ in range(SMALL_CAP)]
        newcomer = Conn(board)
        get = b"GET /healthz HTTP/1.1\r\nHost: daemon\r\n\r\n"
        with trio.fail_after(2 * SERVE_TIMEOUT):
            async with trio.open_nursery() as clients:
                for conn in kept:
                    clients.start_soon(_abuse, address, conn, get)
                await _wait_answered(kept, SERVE_TIMEOUT)
                clients.start_soon(_abuse, address, newcomer, get)
                await _wait_answered([newcomer], SERVE_TIMEOUT)
                if not grace:  # the one that made room is closing
                    with trio.move_on_after(MARGIN):
                        await board.until(lambda: any(c.closed for c in kept))
                closed_early = sum(c.closed for c in kept)
                clients.cancel_scope.cancel()
    assert all(_statuses(c.received) == [200] for c in kept)
    if grace:
        assert newcomer.received.startswith(b"HTTP/1.1 503 ") and closed_early == 0
    else:
        assert _statuses(newcomer.received) == [200] and closed_early == 1
