"""Simulators count the TCP connections they accept (bench.lean's connection-reuse figure)."""

from __future__ import annotations

import httpx
import trio
from quart_trio import QuartTrio

from daemon.sim.base import start_app
from daemon.sim.connections import accepted


def _app() -> QuartTrio:
    app = QuartTrio("counted")

    @app.get("/")
    async def index() -> str:
        return "ok"

    return app


async def test_kept_alive_requests_share_one_connection() -> None:
    app = _app()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            url = await start_app(nursery, app)
            async with httpx.AsyncClient() as client:
                for _ in range(3):
                    assert (await client.get(url + "/")).text == "ok"
            nursery.cancel_scope.cancel()
    assert accepted(app).requests == 3
    assert accepted(app).connections == 1


async def test_a_client_without_keep_alive_opens_one_connection_per_request() -> None:
    app = _app()
    limits = httpx.Limits(max_keepalive_connections=0)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            url = await start_app(nursery, app)
            async with httpx.AsyncClient(limits=limits) as client:
                for _ in range(3):
                    assert (await client.get(url + "/")).status_code == 200
            nursery.cancel_scope.cancel()
    assert accepted(app).requests == 3
    assert accepted(app).connections == 3


async def test_two_clients_are_two_connections_and_apps_count_apart() -> None:
    app, other = _app(), _app()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            url = await start_app(nursery, app)
            await start_app(nursery, other)
            async with httpx.AsyncClient() as first, httpx.AsyncClient() as second:
                await first.get(url + "/")
                await second.get(url + "/")
                await first.get(url + "/")
            nursery.cancel_scope.cancel()
    assert accepted(app).connections == 2
    assert accepted(other).connections == 0  # lifespan events are not connections
    assert accepted(other).requests == 0
