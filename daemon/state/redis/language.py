"""The language each user last spoke, remembered for the canned texts of their next turn.

The turn's ``[lanes] remembered_ttl`` map (one key per user, ``P{u}:lang``), shared so that
a user whose next message lands on another host still gets "one moment" in their language.
"""

from __future__ import annotations

from daemon.state.redis.client import RedisClient
from daemon.state.redis.errors import mapped
from daemon.state.redis.keys import Keys, user_tag
from daemon.state.redis.scripts import ms, text


class RedisLanguages:
    def __init__(self, client: RedisClient, keys: Keys, *, ttl: float = 86400.0) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        self._client = client
        self._keys = keys
        self.ttl = ttl

    async def get(self, user: str) -> str | None:
        with mapped():
            value = await self._client.get(self._keys.user(user_tag(user), "lang"))
        return None if value is None else text(value)

    async def remember(self, user: str, language: str) -> None:
        with mapped():
            await self._client.set(
                self._keys.user(user_tag(user), "lang"), language, px=ms(self.ttl)
            )


__all__ = ["RedisLanguages"]
