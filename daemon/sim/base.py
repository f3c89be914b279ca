"""What every simulator shares: serving a quart-trio app on a loopback port, fault knobs.

Simulators are faithful fakes of the upstream APIs for the demo, the tests and the
benchmarks. Each one records what reached it, so tests assert on what the daemon really
sent over the wire.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import has_request_context, request

from daemon.sim.connections import CountingApp


@dataclass
class Faults:
    """Latency and error injection for one simulator, changeable while it runs.

    ``latency`` is a (low, high) range in seconds, drawn uniformly per request.
    ``error_rate`` is the share of requests answered with ``error_status`` instead.
    ``hang_rate`` is the share of requests that never answer (until the client gives up).
    ``hang_paths`` are regular expressions: a request whose path one of them matches
    (``re.search``) never answers, so a test can hang one route (the token endpoint, a media
    download) and leave the rest of the simulator working. (The Agentforce simulator runs
    an agent's turn outside the request that started it: hang those with ``hang_rate``.)
    ``hold``, when set to an event, makes every request wait for it (after the latency): a
    test orders events across simulators without timing ("answer once the session started").
    """

    latency: tuple[float, float] = (0.0, 0.0)
    error_rate: float = 0.0
    error_status: int = 503
    hang_rate: float = 0.0
    hang_paths: tuple[str, ...] = ()
    hold: trio.Event | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(1))

    async def delay(self) -> None:
        low, high = self.latency
        if high > 0:
            await trio.sleep(self.rng.uniform(low, high))
        if self.hold is not None:
            await self.hold.wait()
        if self.hang_paths and has_request_context() and _matches(self.hang_paths, request.path):
            await trio.sleep_forever()
        if self.hang_rate and self.rng.random() < self.hang_rate:
            await trio.sleep_forever()

    def should_fail(self) -> bool:
        return bool(self.error_rate) and self.rng.random() < self.error_rate


def _matches(patterns: tuple[str, ...], path: str) -> bool:
    return any(re.search(pattern, path) for pattern in patterns)


class Changes:
    """Lets tests wait for a simulator's records without polling or sleeping.

    The simulator calls ``bump()`` after every record it adds; ``until(ready)`` returns once
    ``ready()`` holds, waking exactly when something changed (the event is re-armed each time).
    """

    def __init__(self) -> None:
        self._event = trio.Event()

    def bump(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            await self._event.wait()


def quiet_config(bind: str = "127.0.0.1:0") -> Config:
    cfg = Config()
    cfg.bind = [bind]
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("sim.hypercorn")
    cfg.graceful_timeout = 0.1
    return cfg


async def start_app(nursery: trio.Nursery, app: Any, bind: str = "127.0.0.1:0") -> str:
    """Start serving ``app`` in ``nursery``; return its base URL (``http://127.0.0.1:PORT``).
    The connections it accepts are counted in ``connections.accepted(app)`` (benchmarks)."""
    binds: list[str] = await nursery.start(partial(serve, CountingApp(app), quiet_config(bind)))
    return binds[0]
