"""Audio of single sentences that answers keep repeating, kept in memory.

Per-sentence text-to-speech (daemon/speech/composer.py) asks for one sentence at a time.
Most sentences are said once, but closing lines ("Is there anything else I can help you
with?") come back in answer after answer: those are worth keeping. A sentence is kept from
its ``min_sightings``-th lookup on (the second, by default), so a one-off sentence costs a
counter, not its audio.

What is kept is the raw PCM part (a few hundred KB per sentence), in a cachetools
``LRUCache`` whose size is a byte budget; the sightings are counted in a bounded LRU too.
Keys come from ``ElevenLabs.sentence_key``: everything the audio depends on but the
neighbouring text. Memory only: the whole voice notes go to the disk tier of
``AudioCache``; these parts are cheap to lose at a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from cachetools import LRUCache


@dataclass(frozen=True)
class SentenceCacheStats:
    hits: int
    misses: int
    entries: int
    bytes: int


class SentenceAudioCache:
    def __init__(
        self,
        *,
        max_bytes: int = 8 * 1024 * 1024,
        min_sightings: int = 2,
        remembered: int = 10_000,
    ) -> None:
        if max_bytes <= 0 or min_sightings < 1 or remembered < 1:
            raise ValueError("max_bytes, min_sightings and remembered must be positive")
        self._audio: LRUCache[str, bytes] = LRUCache(maxsize=max_bytes, getsizeof=len)
        self._sightings: LRUCache[str, int] = LRUCache(maxsize=remembered)
        self._min = min_sightings
        self._max_bytes = max_bytes
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> bytes | None:
        """The sentence's audio, or None (and this lookup counts as a sighting)."""
        audio = self._audio.get(key)
        if audio is not None:
            self.hits += 1
            return audio
        self.misses += 1
        self._sightings[key] = self._sightings.get(key, 0) + 1
        return None

    def put(self, key: str, audio: bytes) -> None:
        """Keep ``audio`` if its sentence was looked up often enough."""
        if self._sightings.get(key, 0) < self._min or len(audio) > self._max_bytes:
            return
        self._audio[key] = audio
        self._sightings.pop(key, None)

    def stats(self) -> SentenceCacheStats:
        return SentenceCacheStats(
            hits=self.hits,
            misses=self.misses,
            entries=len(self._audio),
            bytes=int(self._audio.currsize),
        )
