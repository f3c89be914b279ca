"""A lease holder in a process of its own, for the SIGSTOP test (test_paused_host.py).

    python -m tests.redis.paused_holder URL PREFIX TAG TTL

Takes the user's lease and keeps renewing it (``Leases.keep``), prints ``held <fence>``,
then for every line on stdin asks ``may_send`` and prints ``send`` or ``refused`` (and
``lost`` once its renewal loop found the lease gone). The test stops it with SIGSTOP, lets
the lease run out, has another host take the user over, continues it, and reads what it
would have done.
"""

from __future__ import annotations

import sys

import trio

from daemon.config import RedisConfig
from daemon.state.redis.client import open_client
from daemon.state.redis.errors import LeaseLost
from daemon.state.redis.keys import Keys
from daemon.state.redis.leases import Lease, Leases


def say(line: str) -> None:
    print(line, flush=True)


async def main(url: str, prefix: str, tag: str, ttl: float) -> None:
    async with open_client(RedisConfig(url=url)) as client:
        leases = Leases(client, Keys(prefix), ttl=ttl)
        lease = await leases.acquire(tag)
        assert isinstance(lease, Lease)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(leases.keep, lease, lambda: say("lost"))
            say(f"held {lease.fence}")
            stdin = trio.lowlevel.FdStream(0)
            buffer = b""
            while True:
                chunk = await stdin.receive_some()
                if not chunk:
                    break
                buffer += chunk
                while b"\n" in buffer:
                    _, buffer = buffer.split(b"\n", 1)
                    try:
                        await leases.may_send(lease)
                        say("send")
                    except LeaseLost:
                        say("refused")
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
