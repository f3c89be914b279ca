"""Downloading a user's media from a hostile or tampered URL (issue 10).

Against real loopback servers, through the provider clients the daemon uses:

- a gzip bomb (400 KB on the wire, 400 MiB inflated) as a voice note. Before: httpx asked for
  gzip and inflated each 64 KiB read into up to 64 MiB before the byte cap looked at it
  (~150 MiB peak RSS, bench/attack.py "gzip"). Now every hop asks for identity and a
  compressed answer is refused unread.
- a media URL on an allowed host but another port. Before: ports were not compared, so the
  bearer token went to whatever listened there (on loopback: the admin port, Redis, ...).
  Now an entry without a port allows only the scheme's default.
"""

from __future__ import annotations

import contextlib
import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import httpx
import pytest
import trio

from daemon.channels.meta.client import GraphClient
from daemon.channels.twilio.client import TwilioClient
from daemon.errors import UpstreamRejected

MIB = 1024 * 1024
TOKEN = "EAAG-secret-token"


@dataclass
class Server:
    """A loopback HTTP server that answers every request with ``answer`` and keeps what it
    was asked (the raw heads, lower-cased)."""

    answer: bytes
    heads: list[str] = field(default_factory=list)
    port: int = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head:
                data = await stream.receive_some(65536)
                if not data:
                    return
                head += data
            self.heads.append(head.decode("latin-1").lower())
            # the client may hang up before the whole answer: fine
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(self.answer)


@asynccontextmanager
async def serving(answer: bytes) -> AsyncIterator[Server]:
    server = Server(answer)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
        server.port = listeners[0].socket.getsockname()[1]
        yield server
        nursery.cancel_scope.cancel()


def _gzip_bomb() -> bytes:
    bomb = gzip.compress(bytes(400 * MIB), compresslevel=9, mtime=0)
    assert len(bomb) < 500_000
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: audio/ogg\r\nContent-Encoding: gzip\r\n"
        + f"Content-Length: {len(bomb)}\r\n\r\n".encode()
        + bomb
    )


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    return _gzip_bomb()


def _graph(http: httpx.AsyncClient, port: int, media_hosts: tuple[str, ...] = ()) -> GraphClient:
    return GraphClient(
        http,
        graph_url=f"http://127.0.0.1:{port}/v23.0",  # plain http: the operator chose it
        phone_number_id="106540352242922",
        access_token=TOKEN,
        media_hosts=media_hosts,
        max_media_bytes=16 * MIB,
    )


async def test_a_gzip_bomb_is_never_inflated_meta(gzip_bomb: bytes) -> None:
    async with serving(gzip_bomb) as server, httpx.AsyncClient() as http:
        graph = _graph(http, server.port)
        with trio.fail_after(10), pytest.raises(UpstreamRejected) as refused:
            await graph.download(f"http://127.0.0.1:{server.port}/voice.ogg")
    assert "compressed" in str(refused.value)
    [head] = server.heads
    assert "\r\naccept-encoding: identity\r\n" in head
    assert f"authorization: bearer {TOKEN.lower()}" in head


async def test_a_gzip_bomb_is_never_inflated_twilio(gzip_bomb: bytes) -> None:
    async with serving(gzip_bomb) as server, httpx.AsyncClient() as http:
        api = f"http://127.0.0.1:{server.port}"
        twilio = TwilioClient(
            http,
            api_url=api,
            account_sid="AC123",
            auth_token="secret",
            media_hosts=(),
            max_media_bytes=16 * MIB,
        )
        with trio.fail_after(10), pytest.raises(UpstreamRejected) as refused:
            await twilio.download(f"{api}/2010-04-01/Accounts/AC123/Messages/MM1/Media/ME1")
    assert "compressed" in str(refused.value)
    assert all("\r\naccept-encoding: identity\r\n" in head for head in server.heads)


async def test_an_error_answer_compressed_is_not_inflated_either(gzip_bomb: bytes) -> None:
    bomb_as_error = gzip_bomb.replace(b"200 OK", b"400 Bad Request", 1)
    async with serving(bomb_as_error) as server, httpx.AsyncClient() as http:
        graph = _graph(http, server.port)
        with trio.fail_after(10), pytest.raises(UpstreamRejected) as refused:
            await graph.download(f"http://127.0.0.1:{server.port}/voice.ogg")
    assert refused.value.status == 400


PLAIN_OGG = b"HTTP/1.1 200 OK\r\nContent-Type: audio/ogg\r\nContent-Length: 9\r\n\r\nOggS-note"


async def test_the_bearer_token_goes_to_an_allowed_port_only() -> None:
    """media_hosts names "localhost" (no port: the default port only). A media URL on
    localhost but on another service's port is refused before any request; on the port the
    entry names, the download works."""
    async with (
        serving(PLAIN_OGG) as graph_server,
        serving(PLAIN_OGG) as elsewhere,
        httpx.AsyncClient() as http,
    ):
        graph = _graph(http, graph_server.port, media_hosts=("localhost",))
        with trio.fail_after(10), pytest.raises(UpstreamRejected) as refused:
            await graph.download(f"http://localhost:{elsewhere.port}/voice.ogg")
        allowed = _graph(http, graph_server.port, media_hosts=(f"localhost:{elsewhere.port}",))
        with trio.fail_after(10):
            data = await allowed.download(f"http://localhost:{elsewhere.port}/voice.ogg")
    assert "not allowed" in str(refused.value)
    assert data == b"OggS-note"
    assert len(elsewhere.heads) == 1  # only the allowed download reached it
    assert f"bearer {TOKEN.lower()}" in elsewhere.heads[0]


async def test_a_redirect_to_another_port_of_an_allowed_host_gets_no_token() -> None:
    async with serving(PLAIN_OGG) as elsewhere, httpx.AsyncClient() as http:
        redirect = (
            b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n"
            + f"Location: http://127.0.0.1:{elsewhere.port}/voice.ogg\r\n\r\n".encode()
        )
        async with serving(redirect) as graph_server:
            graph = _graph(http, graph_server.port)  # its own origin is allowed, no more
            with trio.fail_after(10), pytest.raises(UpstreamRejected):
                await graph.download(f"http://127.0.0.1:{graph_server.port}/voice.ogg")
    assert elsewhere.heads == []
