"""coredis on trio against a real redis-server, and Redis failing: down, hung, restarted.

What was checked of coredis 6.9 here: it runs under trio (the suite's event loop) with
one pool shared by many tasks; a pipeline answers in one round trip; a blocking command
cancelled by a trio timeout is not left to swallow a later value; a command cancelled in
flight does not shift the replies of the next ones; a restart of Redis is ridden over by the
pool; refused, hung, password and TLS failures all arrive as ``RedisUnavailable``.
"""

from __future__ import annotations

import socket
from pathlib import Path

import coredis
import pytest
import trio
import trio.lowlevel

from daemon import config
from daemon.config import RedisConfig
from daemon.model import Inbound, Kind, User
from daemon.state.base import Stage
from daemon.state.redis.client import RedisClient, check_server, open_client, ping
from daemon.state.redis.errors import RedisUnavailable
from daemon.state.redis.journal import RedisJournal
from daemon.state.redis.keys import Keys, user_tag
from daemon.state.redis.leases import Lease, Leases
from tests.redis.conftest import config_for
from tests.redis.server import RedisServer, make_certificates, require_redis_server

USER = "+15550001"


def message(n: int) -> Inbound:
    return Inbound(f"wamid.{n}", User(USER, USER), Kind.TEXT, text=f"question {n}")


async def test_coredis_runs_on_trio_with_one_shared_pool(redis: RedisClient, keys: Keys) -> None:
    assert coredis.__version__.startswith("6.")
    assert trio.lowlevel.current_root_task() is not None  # this is a trio run
    counter = keys.user("t", "counter")
    with trio.fail_after(10):

        async def incr() -> None:
            await redis.incr(counter)

        async with trio.open_nursery() as nursery:
            for _ in range(200):
                nursery.start_soon(incr)
        assert await redis.get(counter) == b"200"
        async with redis.pipeline(transaction=False) as pipe:
            first = pipe.set(keys.user("t", "a"), "1")
            second = pipe.get(keys.user("t", "a"))
        assert (await first, await second) == (True, b"1")


async def test_a_cancelled_blocking_command_does_not_swallow_a_later_value(
    redis: RedisClient, keys: Keys
) -> None:
    queue = keys.user("t", "queue")
    with trio.fail_after(10):
        with trio.move_on_after(0.05):
            await redis.blpop([queue], timeout=5)
        await redis.rpush(queue, ["value"])
        assert await redis.lpop(queue) == b"value"
        assert await redis.ping() == b"PONG"


async def test_commands_cancelled_in_flight_do_not_shift_later_replies(
    redis: RedisClient, keys: Keys
) -> None:
    a, b = keys.user("t", "a"), keys.user("t", "b")
    with trio.fail_after(10):
        await redis.set(a, "A")
        await redis.set(b, "B")

        async def get_a() -> None:
            assert await redis.get(a) == b"A"

        for i in range(60):
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(get_a)
                # Cancel at different points: before sending, sent, some replies read.
                for _ in range(i % 6):
                    await trio.lowlevel.checkpoint()
                nursery.cancel_scope.cancel()
            assert await redis.get(b) == b"B"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_redis_down_is_redis_unavailable_for_every_primitive(keys: Keys) -> None:
    down = RedisConfig(url=f"redis://127.0.0.1:{_closed_port()}/0", connect_timeout=1)
    async with open_client(down) as client:
        with trio.fail_after(10):
            with pytest.raises(RedisUnavailable):
                await ping(client)
            with pytest.raises(RedisUnavailable):
                await RedisJournal(client, keys).accept([message(1)])
            with pytest.raises(RedisUnavailable):
                await Leases(client, keys, ttl=30).acquire(user_tag(USER))


async def test_a_hung_redis_is_unavailable_within_the_command_timeout_then_recovers(
    own_redis: RedisServer, keys: Keys
) -> None:
    async with open_client(config_for(own_redis, command_timeout=0.5)) as client:
        journal = RedisJournal(client, keys)
        with trio.fail_after(10):
            await ping(client)
            own_redis.pause()  # SIGSTOP: connections stay open, nothing answers
            try:
                with pytest.raises(RedisUnavailable):
                    await journal.accept([message(1)])
            finally:
                own_redis.resume()
            await ping(client)  # the same client goes on by itself
            await journal.accept([message(2)])


async def test_a_redis_restart_with_aof_keeps_the_inbox_journal_and_leases(
    own_redis: RedisServer, keys: Keys
) -> None:
    tag = user_tag(USER)
    async with open_client(config_for(own_redis)) as client:
        journal, leases = RedisJournal(client, keys), Leases(client, keys, ttl=60)
        with trio.fail_after(20):
            assert len(await journal.accept([message(1), message(2)])) == 2
            lease = await leases.acquire(tag)
            assert isinstance(lease, Lease)
            await journal.fenced(lease).progress(message(1).message_id, Stage.ANSWERED, answer="a")
            own_redis.kill()  # kill -9: no shutdown, no final fsync
            with pytest.raises(RedisUnavailable):
                await journal.accept([message(3)])  # down: the webhook would answer 503
            own_redis.start()  # same port, same AOF
            assert await journal.accept([message(1), message(2), message(3)]) == [message(3)]
            records = await journal.open_turns(tag)
            assert [(r.inbound.message_id, r.stage) for r in records] == [
                ("wamid.1", Stage.ANSWERED),
                ("wamid.2", Stage.RECEIVED),
                ("wamid.3", Stage.RECEIVED),
            ]
            await leases.may_send(lease)  # the lease and its token came back too


async def test_the_password_comes_from_the_secret(keys: Keys) -> None:
    server = RedisServer(require_redis_server(), extra=["--requirepass", "s3cret-pw"])
    server.start()
    try:
        settings = config.parse({"redis": {"url": server.url}}, env={"REDIS_PASSWORD": "s3cret-pw"})
        assert "s3cret-pw" not in repr(settings)
        with trio.fail_after(10):
            async with open_client(settings.redis) as client:
                with pytest.raises(RedisUnavailable):
                    await ping(client)
            password = settings.secrets.get("REDIS_PASSWORD")
            async with open_client(settings.redis, password=password) as client:
                await ping(client)
    finally:
        server.close()


async def test_tls_is_verified_against_the_configured_ca(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    server = RedisServer(require_redis_server(), tls=files)
    server.start()
    try:
        assert server.url.startswith("rediss://")
        with trio.fail_after(10):
            async with open_client(config_for(server, tls_ca_file=str(files.ca))) as client:
                await ping(client)
            async with open_client(config_for(server)) as client:  # the system CAs only
                with pytest.raises(RedisUnavailable):
                    await ping(client)
    finally:
        server.close()


async def test_check_server_wants_noeviction_and_aof(own_redis: RedisServer) -> None:
    async with open_client(config_for(own_redis)) as client:
        with trio.fail_after(10):
            assert await check_server(client) == []
            await client.config_set({"maxmemory-policy": "allkeys-lru", "appendonly": "no"})
            problems = await check_server(client)
    assert len(problems) == 2
    assert "noeviction" in problems[0] and "appendonly" in problems[1]
