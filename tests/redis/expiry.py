"""Leases running out, on Redis' own clock: a few milliseconds of PEXPIRE, then poll."""

from __future__ import annotations

import trio

from daemon.state.redis.client import RedisClient


async def run_out(client: RedisClient, key: str) -> None:
    """Let ``key`` expire the way a lease does when its holder stops renewing, and return
    once Redis says it is gone (within a deadline, never a fixed sleep)."""
    with trio.fail_after(5):
        await client.pexpire(key, 5)
        # Redis has no "key expired" event to wait on here (keyspace notifications are off
        # by default), so poll; the deadline above bounds it.
        while await client.exists([key]):  # noqa: ASYNC110
            await trio.sleep(0.001)
