"""daemon.agentforce.auth.TokenSource on its own: caching, forgetting, a cancelled fetch."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing

from daemon.agentforce.auth import TokenSource
from daemon.errors import Reason, UpstreamUnavailable

TOKEN_URL = "https://sf.example/services/oauth2/token"


class TokenEndpoint:
    """Hands out "t1", "t2", ...; ``hold`` makes the next fetch wait until it is set."""

    def __init__(self) -> None:
        self.fetches = 0
        self.hold: trio.Event | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.hold is not None:
            await self.hold.wait()
        return httpx.Response(200, json={"access_token": f"t{self.fetches}"})


def source(http: httpx.AsyncClient) -> TokenSource:
    return TokenSource(http, token_url=TOKEN_URL, client_id="id", client_secret="s", ttl=60.0)


async def test_cached_until_the_ttl_then_fetched_anew(
    autojump_clock: trio.testing.MockClock,
) -> None:
    endpoint = TokenEndpoint()
    async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint)) as http:
        tokens = source(http)
        with trio.fail_after(120):  # MockClock seconds
            assert await tokens.get() == "t1"
            assert await tokens.get() == "t1"
            await trio.sleep(61)  # MockClock: past the fallback TTL (no readable exp)
            assert await tokens.get() == "t2"
    assert endpoint.fetches == 2


async def test_forget_drops_only_the_token_still_cached() -> None:
    endpoint = TokenEndpoint()
    async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint)) as http:
        tokens = source(http)
        with trio.fail_after(10):
            assert await tokens.get() == "t1"
            tokens.forget("an older token")  # someone else's 401: not ours to drop
            assert await tokens.get() == "t1"
            tokens.forget("t1")
            assert await tokens.get() == "t2"


async def test_a_cancelled_fetch_leaves_the_source_usable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    endpoint = TokenEndpoint()
    endpoint.hold = trio.Event()
    async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint)) as http:
        tokens = source(http)
        with trio.fail_after(10):
            with trio.move_on_after(1) as scope:
                await tokens.get()
            assert scope.cancelled_caught
            endpoint.hold.set()
            assert await tokens.get() == "t2"  # the lock was released, nothing half-stored


async def test_a_busy_token_endpoint_carries_its_retry_after() -> None:
    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": "4"}, json={"error": "x"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(busy)) as http:
        with trio.fail_after(10), pytest.raises(UpstreamUnavailable) as raised:
            await source(http).get()
    assert (raised.value.reason, raised.value.retry_after) == (Reason.SLOW_DOWN, 4.0)
