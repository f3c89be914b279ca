"""Small helpers of the Redis tests: a lease held, a lease running out on Redis' clock."""

from __future__ import annotations

import trio

from daemon.state.redis.client import RedisClient
from daemon.state.redis.leases import Lease, Leases


async def run_out(client: RedisClient, key: str) -> None:
    """Let ``key`` expire the way a lease does when its holder stops renewing, and return
    once Redis says it is gone (within a deadline, never a fixed sleep)."""
    with trio.fail_after(5):
        await client.pexpire(key, 5)
        # Redis has no "key expired" event to wait on here (keyspace notifications are off
        # by default), so poll; the deadline above bounds it.
        while await client.exists([key]):  # noqa: ASYNC110
            await trio.sleep(0.001)


async def hold(leases: Leases, tag: str) -> Lease:
    """The user's lease, which the test expects to get."""
    lease = await leases.acquire(tag)
    assert isinstance(lease, Lease), lease
    return lease
