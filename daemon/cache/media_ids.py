"""Media ids of voice notes already uploaded to WhatsApp: send a cached answer without uploading.

Meta keeps uploaded media for 30 days (reference/whatsapp.md §4: "Media IDs returned by the API
(your uploads) expire after 30 days"). An id is kept here for 25 days by default, and never for
30 days or more, so the daemon never sends an id Meta has already deleted. A media id belongs
to the business number it was uploaded to, hence the key (audio key, phone_number_id).

How the turn uses it (Meta only; Twilio serves voice notes from our own URL and needs none)::

    media_id = media_ids.get(key, phone_number_id)
    if media_id is None:
        media_id = await channel.upload(ogg)       # one upload for concurrent askers
        media_ids.put(key, phone_number_id, media_id)
    try:
        await channel.send_voice(user, media_id)
    except <Graph says the media is unknown or gone>:
        media_ids.forget(key, phone_number_id)    # then upload again, once

In memory only: after a restart each answer is uploaded once more, which costs one upload.

``stats()`` counts hits (a voice note sent without uploading), misses and ids forgotten
because Graph refused them (``gone``: many of those say the TTL is too long) for /metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import trio
from cachetools import TTLCache

DAY = 86400.0
META_MEDIA_LIFETIME = 30 * DAY
DEFAULT_TTL = 25 * DAY  # days of margin: Meta's clock, our clock and restarts all drift


@dataclass(frozen=True)
class MediaIdStats:
    hits: int
    misses: int
    gone: int  # ids Graph refused, forgotten to upload again
    entries: int


class MediaIds:
    def __init__(
        self,
        *,
        max_entries: int,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        if not 0 < ttl < META_MEDIA_LIFETIME:
            raise ValueError(f"media id ttl must be > 0 and < 30 days, got {ttl} s")
        self._ids: TTLCache[tuple[str, str], str] = TTLCache(max_entries, ttl, clock)
        self._hits = 0
        self._misses = 0
        self._gone = 0

    def get(self, audio_key: str, phone_number_id: str) -> str | None:
        found = self._ids.get((audio_key, phone_number_id))
        if found is None:
            self._misses += 1
        else:
            self._hits += 1
        return found

    def put(self, audio_key: str, phone_number_id: str, media_id: str) -> None:
        if media_id:
            self._ids[(audio_key, phone_number_id)] = media_id

    def forget(self, audio_key: str, phone_number_id: str) -> None:
        """Graph no longer knows the media: the next send uploads again."""
        if self._ids.pop((audio_key, phone_number_id), None) is not None:
            self._gone += 1

    def flush(self) -> int:
        self._ids.expire()
        n = len(self._ids)
        self._ids.clear()
        return n

    def __len__(self) -> int:
        self._ids.expire()
        return len(self._ids)

    def stats(self) -> MediaIdStats:
        return MediaIdStats(self._hits, self._misses, self._gone, len(self))
