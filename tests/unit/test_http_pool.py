"""A cancelled call must leave the connection pool healthy (daemon/http_guard.py).

Without the guard, this test fails on httpcore 1.0.9 with PoolTimeout: cancelled requests
leak connection slots until the pool is full of connections nobody owns.
"""

from __future__ import annotations

import random

import trio
from quart import Response
from quart_trio import QuartTrio

from daemon.config import HttpConfig
from daemon.http import make_client
from daemon.sim.base import start_app


def slow_app() -> QuartTrio:
    app = QuartTrio("slow")

    @app.get("/slow")
    async def slow() -> Response:
        await trio.sleep(0.002)
        return Response("ok")

    return app


async def test_pool_serves_after_many_random_cancellations(nursery: trio.Nursery) -> None:
    url = await start_app(nursery, slow_app())
    rng = random.Random(7)
    cfg = HttpConfig(max_connections=2, max_keepalive=2, pool_timeout=1.0)
    async with make_client(cfg, read_timeout=5, base_url=url) as client:

        async def cancelled_call(delay: float) -> None:
            with trio.move_on_after(delay):  # a per-call timeout, as the turn sets them
                await client.get("/slow")

        with trio.fail_after(60):
            for _ in range(300):  # cancellations at random points: queued, connecting, reading
                async with trio.open_nursery() as calls:
                    for _ in range(3):
                        calls.start_soon(cancelled_call, rng.uniform(0, 0.004))
            statuses = [(await client.get("/slow")).status_code for _ in range(20)]
        assert statuses == [200] * 20
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) <= 2
