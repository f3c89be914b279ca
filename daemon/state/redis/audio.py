"""The spoken answers and their WhatsApp media ids, shared by all hosts.

What daemon/cache/audio.py and daemon/cache/media_ids.py keep per host, as a tier every
host reads: a voice note one host rendered (ElevenLabs, then Ogg/Opus) is served by the
others without rendering again, and one host's upload to Meta is reused by all of them.

- ``P{tts:<key>}`` — the Ogg/Opus bytes under the content address ``audio_key`` (voice,
  model, settings, format and text). A hit renews the TTL (``GETEX``): the least recently
  heard answers are the first to go. Bound: ``ttl`` (7 days by default) and ``max_bytes``
  a note; a cache key, so ``flush`` may drop it at any time.
- ``P{mid:<key>:<phone_number_id>}`` — the media id of that note's upload to one business
  number, kept 25 days by default and never 30 (Meta deletes uploads after 30 days,
  reference/whatsapp.md §4; cache/media_ids.py).
"""

from __future__ import annotations

from daemon.cache.audio import OGG_MAGIC
from daemon.cache.media_ids import DEFAULT_TTL, META_MEDIA_LIFETIME
from daemon.state.redis.client import RedisClient
from daemon.state.redis.errors import mapped
from daemon.state.redis.keys import Keys
from daemon.state.redis.scripts import ms, text

DAY = 86400.0
MiB = 1024 * 1024


class RedisAudio:
    def __init__(
        self, client: RedisClient, keys: Keys, *, ttl: float = 7 * DAY, max_bytes: int = 4 * MiB
    ) -> None:
        if ttl <= 0 or max_bytes <= 0:
            raise ValueError("ttl and max_bytes must be > 0")
        self._client = client
        self._keys = keys
        self.ttl = ttl
        self.max_bytes = max_bytes

    def _key(self, key: str) -> str:
        return self._keys.shared("tts", key)

    async def get(self, key: str) -> bytes | None:
        with mapped():
            data = await self._client.getex(self._key(key), px=ms(self.ttl))
        if not isinstance(data, bytes) or not data.startswith(OGG_MAGIC):
            return None  # absent (or not a voice note: never hand that to WhatsApp)
        return data

    async def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes or not data.startswith(OGG_MAGIC):
            return  # too big to share, or not Ogg: the host's own tiers still have it
        with mapped():
            await self._client.set(self._key(key), data, px=ms(self.ttl))


class RedisMediaIds:
    def __init__(self, client: RedisClient, keys: Keys, *, ttl: float = DEFAULT_TTL) -> None:
        if not 0 < ttl < META_MEDIA_LIFETIME:
            raise ValueError(f"media id ttl must be > 0 and < 30 days, got {ttl} s")
        self._client = client
        self._keys = keys
        self.ttl = ttl

    def _key(self, audio_key: str, phone_number_id: str) -> str:
        return self._keys.shared("mid", f"{audio_key}:{phone_number_id}")

    async def get(self, audio_key: str, phone_number_id: str) -> str | None:
        with mapped():
            value = await self._client.get(self._key(audio_key, phone_number_id))
        return None if value is None else text(value)

    async def put(self, audio_key: str, phone_number_id: str, media_id: str) -> None:
        if media_id:
            with mapped():
                await self._client.set(
                    self._key(audio_key, phone_number_id), media_id, px=ms(self.ttl)
                )

    async def forget(self, audio_key: str, phone_number_id: str) -> None:
        """Graph no longer knows the media: every host uploads again on its next send."""
        with mapped():
            await self._client.delete([self._key(audio_key, phone_number_id)])


__all__ = ["RedisAudio", "RedisMediaIds"]
