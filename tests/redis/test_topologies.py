"""[redis] mode = "cluster" and "sentinel" against real servers.

Cluster: every multi-key step stays on one slot.
A one-node cluster (all 16384 slots on one ``redis-server --cluster-enabled yes``) is a
real cluster for this purpose: Redis refuses a command or script whose declared keys hash
to different slots (CROSSSLOT) whatever the number of nodes. So each primitive run here
proves its keys carry the right hash tag, through coredis' cluster client.

Sentinel: a real sentinel (``redis-server --sentinel``) monitoring a primary; the client
asks it where the primary is and writes there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

from daemon.config import LimitsConfig
from daemon.model import AgentMessage, AgentReply, Inbound, Kind, User
from daemon.state.base import Stage
from daemon.state.redis.client import RedisClient, check_server, open_client
from daemon.state.redis.journal import RedisJournal
from daemon.state.redis.keys import Keys, user_tag
from daemon.state.redis.leases import Leases
from daemon.state.redis.limits import RedisUserLimits
from daemon.state.redis.responses import RedisResponses
from daemon.state.redis.sessions import RedisSessions
from daemon.state.redis.takeover import WorkIndex
from tests.redis.conftest import config_for
from tests.redis.helpers import hold
from tests.redis.server import RedisServer, require_redis_server

USER = "+15550001"
TAG = user_tag(USER)


@pytest.fixture
def cluster_node() -> Iterator[RedisServer]:
    server = RedisServer(
        require_redis_server(),
        extra=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"],
    )
    server.start()
    yield server
    server.close()


async def _serve_all_slots(client: RedisClient) -> None:
    await client.execute_command(
        client.create_request(b"CLUSTER", b"ADDSLOTSRANGE", 0, 16383, callback=lambda r: r)
    )
    with trio.fail_after(10):
        while b"cluster_state:ok" not in await client.execute_command(  # noqa: ASYNC110
            client.create_request(b"CLUSTER", b"INFO", callback=lambda r: r)
        ):
            await trio.sleep(0.01)  # Redis needs a moment to agree with itself


async def test_every_primitive_runs_on_a_cluster(cluster_node: RedisServer, keys: Keys) -> None:
    async with open_client(config_for(cluster_node)) as plain:
        await _serve_all_slots(plain)
    inbound = Inbound("wamid.1", User(USER, USER), Kind.TEXT, text="hello")
    async with open_client(config_for(cluster_node, mode="cluster")) as client:
        with trio.fail_after(20):
            leases = Leases(client, keys, ttl=30)
            index = WorkIndex(client, keys, leases)
            journal = RedisJournal(client, keys)
            assert await journal.accept([inbound]) == [inbound]
            lease = await hold(leases, TAG)
            turns = journal.fenced(lease)
            assert await turns.attempt("wamid.1") == 1
            await turns.progress("wamid.1", Stage.ANSWERED, answer="hi")
            sessions = RedisSessions(client, keys)
            await sessions.start(lease, USER, "s-1")
            assert await sessions.next_sequence(lease, "s-1") == 1
            await leases.may_send(lease)
            assert [r.stage for r in await journal.unfinished()] == [Stage.ANSWERED]
            await turns.progress("wamid.1", Stage.DONE)
            assert await leases.release(lease) is True
            assert (await RedisUserLimits(client, keys, LimitsConfig()).admit(USER)).allowed
            responses = RedisResponses(client, keys, default_ttl=60)
            reply = AgentReply((AgentMessage("Inform", "At 9."),))
            assert await responses.record("q", "u1", reply, trusted=True) == "confirmed"
            assert await responses.lookup("q") is not None
            assert await index.scan() == []
            assert list(await sessions.load_sessions()) == [USER]
            assert await check_server(client) == []


async def test_sentinel_mode_finds_the_primary(own_redis: RedisServer, keys: Keys) -> None:
    sentinel = RedisServer(
        require_redis_server(), extra=["--sentinel"], config_file="sentinel.conf",
        ready="+monitor master",
    )  # fmt: skip
    (sentinel.dir / "sentinel.conf").write_text(
        f"sentinel monitor wa-agentd 127.0.0.1 {own_redis.port} 1\n"
    )
    sentinel.start()
    try:
        settings = config_for(
            own_redis,
            url="redis://ignored-in-sentinel-mode:1/0",
            mode="sentinel",
            sentinels=(f"127.0.0.1:{sentinel.port}",),
        )
        async with open_client(settings) as client:
            with trio.fail_after(10):
                journal = RedisJournal(client, keys)
                inbound = Inbound("wamid.1", User(USER, USER), Kind.TEXT, text="hello")
                assert await journal.accept([inbound]) == [inbound]
        async with open_client(config_for(own_redis)) as direct:
            assert await RedisJournal(direct, keys).accept([inbound]) == []  # it went there
    finally:
        sentinel.close()
