"""A first-wins claim shared by all hosts: ``SET key token NX PX ttl``, atomically.

For any "only once across hosts" decision that is not a turn (the inbox's own dedupe lives
in journal.py, in the same step as the record it guards). The caller's token makes a claim
idempotent: the same claimant asking again — a coredis retry after a lost reply, say —
is told it won, never that somebody else did.
"""

from __future__ import annotations

import secrets

from daemon.state.redis.client import RedisClient
from daemon.state.redis.keys import Keys
from daemon.state.redis.scripts import call, ms

# KEYS: the claim. ARGV: token, ttl ms. 1 when the caller holds the claim.
CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""


class Dedupe:
    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self._keys = keys
        self._claim = client.register_script(CLAIM)

    async def claim(self, name: str, ttl: float, token: str | None = None) -> bool:
        """Whether this caller is the first to claim ``name`` within ``ttl`` seconds."""
        key = self._keys.shared("dedupe", name)
        return bool(await call(self._claim, [key], [token or secrets.token_hex(8), ms(ttl)]))


__all__ = ["Dedupe"]
