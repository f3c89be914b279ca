"""Speech-to-text cache: a voice note heard once is not transcribed again.

Keyed by the sha256 of the audio file, and *written* only under the sha256 of the bytes the
daemon actually downloaded and transcribed (``audio_digest``), never under a digest someone
stated: a webhook's ``sha256`` comes from the sender's client, and a hostile client could
otherwise store its own words under the digest of a popular forwarded voice note, for every
later forward to be "heard" as them.

*Read* by either: Meta puts the file's sha256 in the webhook (``Media.sha256``, base64,
reference/whatsapp.md §2.4), so a forwarded voice note — the same file sent by many users —
skips download *and* STT; a lookup by a false claim can only find the transcript of the file
whose digest was claimed. When a channel gives no sha256 (Twilio), the turn looks the
downloaded bytes up by their digest and still skips STT. A transcript is the content of the
audio, so sharing it between users who hold the same file reveals nothing new.

How the turn uses it::

    transcript = stt_cache.get(media.sha256 or "")       # before the download
    if transcript is None:
        audio = await download(media)
        digest = audio_digest(audio)
        transcript = stt_cache.get(digest) or await stt(audio)
        stt_cache.put(digest, transcript)

An empty transcript (silence, noise, a failed recognition) is never cached: the next attempt,
maybe with a better model or after a glitch, deserves a chance. Use one cache per STT model.

``stats()`` counts hits and misses for /metrics. A lookup without a sha256 (a channel that
gives none) is neither: nothing could be looked up, and counting it as a miss would make the
hit rate say more about the provider than about the cache.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NewType

import trio
from cachetools import TTLCache

from daemon.model import Transcript

AudioDigest = NewType("AudioDigest", str)
"""The sha256 (lower-case hex) of audio bytes the daemon holds, from ``audio_digest``."""

_HEX = re.compile(r"[0-9a-fA-F]{64}")


def audio_digest(data: bytes) -> AudioDigest:
    """The key a transcript of ``data`` is stored under."""
    return AudioDigest(hashlib.sha256(data).hexdigest())


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
        """The transcript of the file with this sha256, as hex or base64 (a webhook's claim or
        an ``audio_digest``); None when unknown or when ``sha256`` is no sha256 at all."""
        key = _key(sha256)
        if key is None:
            return None
        found = self._transcripts.get(key)
        if found is None:
            self._misses += 1
        else:
            self._hits += 1
        return found

    def get_downloaded(self, digest: AudioDigest, *, claimed: str | None) -> Transcript | None:
        """``get(digest)`` of audio just downloaded, unless the webhook's ``claimed`` digest
        named the same file (then that lookup was this one, and a second would count a second
        miss)."""
        if claimed is not None and _key(claimed) == digest:
            return None
        return self.get(digest)

    def put(self, digest: AudioDigest, transcript: Transcript) -> None:
        """Remember what ``transcript`` heard in the audio whose ``audio_digest`` this is."""
        key = _key(digest)
        if key is not None and transcript.text.strip():
            self._transcripts[key] = transcript

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


def _key(sha256: str) -> str | None:
    """One key per file whatever the form: webhooks state base64 (§2.4), GET /<media-id> and
    ``audio_digest`` hex; casing and stray white space must not split one file into two."""
    text = sha256.strip()
    if _HEX.fullmatch(text):
        return text.lower()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None
