"""Fixtures for the Redis state tests: a real redis-server, a client, a prefix per test.

One server serves the whole session (``redis_server``); each test gets its own key prefix,
so tests never see each other's keys and nothing needs flushing. Tests that stop, kill,
pause or restart Redis take ``own_redis`` instead: a server of their own.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import pytest

from daemon.config import RedisConfig
from daemon.state.redis.client import RedisClient, open_client
from daemon.state.redis.keys import Keys
from tests.redis.server import RedisServer, require_redis_server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(require_redis_server())
    server.start()
    yield server
    server.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer(require_redis_server())
    server.start()
    yield server
    server.close()


@pytest.fixture
def keys() -> Keys:
    return Keys(prefix=f"t{secrets.token_hex(4)}:")


def config_for(server: RedisServer, **changes: object) -> RedisConfig:
    values: dict[str, object] = {"url": server.url, "command_timeout": 2.0, **changes}
    return RedisConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[RedisClient]:
    async with open_client(config_for(redis_server)) as client:
        yield client


@pytest.fixture
async def other_redis(redis_server: RedisServer) -> AsyncIterator[RedisClient]:
    """A second client with its own pool: a second host."""
    async with open_client(config_for(redis_server)) as client:
        yield client
