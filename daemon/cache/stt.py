"""Speech-to-text cache: a voice note heard once is not transcribed again.

Keyed by the sha256 of the audio file. Meta puts it in the webhook (``Media.sha256``,
reference/whatsapp.md §2.4), so a forwarded voice note — the same file sent by many users —
skips download *and* STT. When a channel gives no sha256 (Twilio), the turn may hash the
downloaded bytes itself and still skip STT. A transcript is the content of the audio, so
sharing it between users who hold the same file reveals nothing new.

How the turn uses it::

    transcript = stt_cache.get(media.sha256 or "")
    if transcript is None:
        transcript = await stt(audio)
        stt_cache.put(media.sha256 or "", transcript)

An empty transcript (silence, noise, a failed recognition) is never cached: the next attempt,
maybe with a better model or after a glitch, deserves a chance. Use one cache per STT model.

``stats()`` counts hits and misses for /metrics. A lookup without a sha256 (a channel that
gives none) is neither: nothing could be looked up, and counting it as a miss would make the
hit rate say more about the provider than about the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import trio
from cachetools import TTLCache

from daemon.model import Transcript


@dataclass(frozen=True)
class TranscriptCacheStats:
    hits: int
    misses: int
    entries: int
    bytes: int  # UTF-8 size of the transcript texts held


class TranscriptCache:
    def __init__(
        self,
        *,
        max_entries: int,
        ttl: float,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._transcripts: TTLCache[str, Transcript] = TTLCache(max_entries, ttl, clock)
        self._hits = 0
        self._misses = 0

    def get(self, sha256: str) -> Transcript | None:
        if not sha256:
            return None
        found = self._transcripts.get(_norm(sha256))
        if found is None:
            self._misses += 1
        else:
            self._hits += 1
        return found

    def put(self, sha256: str, transcript: Transcript) -> None:
        if sha256 and transcript.text.strip():
            self._transcripts[_norm(sha256)] = transcript

    def flush(self) -> int:
        self._transcripts.expire()
        n = len(self._transcripts)
        self._transcripts.clear()
        return n

    def __len__(self) -> int:
        self._transcripts.expire()
        return len(self._transcripts)

    def stats(self) -> TranscriptCacheStats:
        self._transcripts.expire()  # len() counts expired items until they are purged
        return TranscriptCacheStats(
            hits=self._hits,
            misses=self._misses,
            entries=len(self._transcripts),
            bytes=sum(len(t.text.encode()) for t in self._transcripts.values()),
        )


def _norm(sha256: str) -> str:
    # Meta sends hex today; casing and stray white space must not split one file into two keys.
    return sha256.strip().lower()
