"""Twilio's public voice notes in Redis: any host can serve ``GET /media/<token>``.

Twilio downloads outbound media from a URL (reference/whatsapp.md §6); behind a load
balancer that request may reach any host, so the bytes are kept in Redis rather than in
the memory of the host that made them (daemon/channels/twilio/public_media.py, the one-host
version, whose contract this follows). ``P{media:<token>}`` is a hash of the bytes and
their MIME type that Redis deletes after ``ttl`` ([twilio] media_ttl, 10 minutes).

Bounds: one note is at most ``max_bytes``; the total is what the daemon sends in ``ttl``
(≈ 40 KB a spoken answer: 1000 answers in 10 minutes hold ≈ 40 MB). Only bytes the daemon
produced go in. The token is 256 bits from the OS CSPRNG: the only secret in a public URL.
"""

from __future__ import annotations

import secrets

from daemon.state.redis.client import RedisClient
from daemon.state.redis.errors import mapped
from daemon.state.redis.keys import Keys
from daemon.state.redis.scripts import ms, text

MiB = 1024 * 1024


class RedisPublicMedia:
    def __init__(
        self, client: RedisClient, keys: Keys, *, ttl: float = 600.0, max_bytes: int = 16 * MiB
    ) -> None:
        if ttl <= 0 or max_bytes <= 0:
            raise ValueError("ttl and max_bytes must be > 0")
        self._client = client
        self._keys = keys
        self.ttl = ttl
        self.max_bytes = max_bytes

    def _key(self, token: str) -> str:
        return self._keys.shared("media", token)

    async def put(self, data: bytes, mime_type: str) -> str:
        if len(data) > self.max_bytes:
            raise ValueError(f"{len(data)} bytes exceed the public media bound {self.max_bytes}")
        token = secrets.token_urlsafe(32)
        key = self._key(token)
        with mapped():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(key, {"data": data, "mime": mime_type})
                pipe.pexpire(key, ms(self.ttl))
        return token

    async def get(self, token: str) -> tuple[bytes, str] | None:
        with mapped():
            values = await self._client.hmget(self._key(token), ["data", "mime"])
        if values[0] is None or values[1] is None:
            return None
        data = values[0]
        return (data if isinstance(data, bytes) else data.encode()), text(values[1])

    async def discard(self, token: str) -> None:
        with mapped():
            await self._client.delete([self._key(token)])


__all__ = ["RedisPublicMedia"]
