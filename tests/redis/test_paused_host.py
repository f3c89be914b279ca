"""The edge of issue 13: a host paused past its lease (SIGSTOP) wakes up and must not send.

A real process holds the user's lease and renews it in the background; the test freezes it
with SIGSTOP, lets the lease run out on Redis' clock, has another host take the user over,
then lets the frozen one go on: its renewal finds the lease lost, and its "may I send"
check is refused. Before the pause the same check said yes, so the refusal is the pause's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import trio

from daemon.state.redis.client import RedisClient
from daemon.state.redis.keys import Keys, user_tag
from daemon.state.redis.leases import Held, Leases
from tests.redis.helpers import hold
from tests.redis.server import RedisServer

TAG = user_tag("+15550001")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def test_a_host_paused_past_its_lease_does_not_send(
    redis_server: RedisServer, redis: RedisClient, keys: Keys
) -> None:
    child = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.redis.paused_holder", redis_server.url, keys.prefix, TAG,
         "0.5"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    stdout = child.stdout
    buffer = b""

    async def line() -> str:
        nonlocal buffer
        while b"\n" not in buffer:
            chunk = await stdout.receive_some()
            assert chunk, "the holder exited"
            buffer += chunk
        first, buffer = buffer.split(b"\n", 1)
        return first.decode()

    try:
        with trio.fail_after(20):
            held = await line()
            assert held.startswith("held ")
            old_fence = int(held.split()[1])
            await child.stdin.send_all(b"?\n")
            assert await line() == "send"
            other = Leases(redis, keys, ttl=30)
            assert isinstance(await other.acquire(TAG), Held)  # it renews: nobody can take it
            os.kill(child.pid, signal.SIGSTOP)
            # Frozen, it renews nothing: wait for the lease to run out on Redis' clock.
            while await redis.exists([keys.lease(TAG)]):  # noqa: ASYNC110
                await trio.sleep(0.02)
            taken = await hold(other, TAG)
            assert taken.fence > old_fence
            os.kill(child.pid, signal.SIGCONT)
            await child.stdin.send_all(b"?\n")
            answers = {await line(), await line()}
            assert answers == {"lost", "refused"}
            await other.may_send(taken)  # the new holder sends
    finally:
        os.kill(child.pid, signal.SIGCONT)
        child.kill()
        await child.wait()
