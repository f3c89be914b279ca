"""TranscriptCache: forwarded voice notes are transcribed once; nothing empty is kept."""

from __future__ import annotations

import trio

from daemon.cache.stt import TranscriptCache
from daemon.model import Transcript

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


async def test_round_trip_by_sha256() -> None:
    cache = TranscriptCache(max_entries=10, ttl=3600)
    t = Transcript("what are your opening hours", "en")
    assert cache.get(SHA) is None
    cache.put(SHA, t)
    assert cache.get(SHA) == t
    assert cache.get(SHA.upper()) == t  # one file, one key, whatever the casing
    assert len(cache) == 1


async def test_empty_sha256_is_ignored() -> None:
    cache = TranscriptCache(max_entries=10, ttl=3600)
    cache.put("", Transcript("hello", "en"))
    assert cache.get("") is None and len(cache) == 0


async def test_empty_transcript_is_never_cached() -> None:
    cache = TranscriptCache(max_entries=10, ttl=3600)
    cache.put(SHA, Transcript(""))
    cache.put(SHA, Transcript("  \n "))
    assert cache.get(SHA) is None and len(cache) == 0


async def test_transcripts_expire(autojump_clock: trio.abc.Clock) -> None:
    cache = TranscriptCache(max_entries=10, ttl=600)
    cache.put(SHA, Transcript("hello", "en"))
    await trio.sleep(599)
    assert cache.get(SHA) is not None
    await trio.sleep(2)
    assert cache.get(SHA) is None


async def test_bounded_and_flush() -> None:
    cache = TranscriptCache(max_entries=2, ttl=600)
    for i in range(3):
        cache.put(f"{i:064x}", Transcript(f"t{i}"))
    assert len(cache) == 2 and cache.get(f"{0:064x}") is None
    assert cache.flush() == 2 and len(cache) == 0


async def test_stats_count_hits_misses_entries_and_bytes() -> None:
    cache = TranscriptCache(max_entries=10, ttl=600)
    assert cache.get(SHA) is None  # miss
    cache.put(SHA, Transcript("héllo", "fr"))
    assert cache.get(SHA) is not None and cache.get(SHA.upper()) is not None  # two hits
    assert cache.get("") is None  # no sha256: nothing looked up, neither hit nor miss
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries, stats.bytes) == (2, 1, 1, 6)


async def test_stats_do_not_count_expired_transcripts(autojump_clock: trio.abc.Clock) -> None:
    cache = TranscriptCache(max_entries=10, ttl=600)
    cache.put(SHA, Transcript("hello", "en"))
    await trio.sleep(601)
    assert (cache.stats().entries, cache.stats().bytes) == (0, 0)
