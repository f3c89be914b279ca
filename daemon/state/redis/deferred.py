"""Per user, the ids of messages whose turn was deferred, oldest first (turn.py's map).

A later message of the same user waits behind them, so answers keep the order of the
questions. With several hosts the user's ``open`` queue (journal.py) already orders their
turns; this list is what lets the holder tell "deferred, try later" from "open, run now".
``P{u}:deferred`` lives the retry window ([inbox] retry_window): past it a deferred turn is
given up anyway.
"""

from __future__ import annotations

from daemon.state.redis.client import RedisClient
from daemon.state.redis.errors import mapped
from daemon.state.redis.keys import Keys, user_tag
from daemon.state.redis.scripts import call, ms, text

# KEYS: list. ARGV: id, ttl ms. Appends once.
ADD = """
if not redis.call('LPOS', KEYS[1], ARGV[1]) then redis.call('RPUSH', KEYS[1], ARGV[1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""


class RedisDeferred:
    def __init__(self, client: RedisClient, keys: Keys, *, ttl: float = 86400.0) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        self._client = client
        self._keys = keys
        self.ttl = ttl
        self._add = client.register_script(ADD)

    def _key(self, user: str) -> str:
        return self._keys.user(user_tag(user), "deferred")

    async def ids(self, user: str) -> list[str]:
        with mapped():
            return [text(v) for v in await self._client.lrange(self._key(user), 0, -1)]

    async def add(self, user: str, message_id: str) -> None:
        await call(self._add, [self._key(user)], [message_id, ms(self.ttl)])

    async def discard(self, user: str, message_id: str) -> None:
        with mapped():
            await self._client.lrem(self._key(user), 0, message_id)


__all__ = ["RedisDeferred"]
