"""TranscriptCache: forwarded voice notes are transcribed once; nothing empty is kept; written
only under the digest of the bytes really heard."""

from __future__ import annotations

import base64
import hashlib

import pytest
import trio

from daemon.cache.stt import AudioDigest, TranscriptCache, audio_digest
from daemon.model import Transcript

AUDIO = b"OggS a voice note"
SHA = audio_digest(AUDIO)  # hex
SHA_B64 = base64.b64encode(hashlib.sha256(AUDIO).digest()).decode()  # as webhooks state it


async def test_round_trip_by_the_digest_of_the_audio() -> None:
    cache = TranscriptCache(max_entries=10, ttl=3600)
    t = Transcript("what are your opening hours", "en")
    assert cache.get(SHA) is None
    cache.put(SHA, t)
    assert cache.get(SHA) == t
    assert cache.get(SHA.upper()) == t  # one file, one key, whatever the casing
    assert cache.get(f" {SHA}\n") == t
    assert len(cache) == 1


async def test_a_webhook_states_the_digest_in_base64_and_finds_the_same_file() -> None:
    cache = TranscriptCache(max_entries=10, ttl=3600)
    cache.put(SHA, Transcript("hello", "en"))
    assert SHA_B64 != SHA and cache.get(SHA_B64) == Transcript("hello", "en")


def test_audio_digest_is_the_sha256_of_the_bytes() -> None:
    assert hashlib.sha256(AUDIO).hexdigest() == SHA


@pytest.mark.parametrize(
    "claim",
    ["", "   ", "not a digest", "4654+8g=", "ab" * 31, "zz" * 32, SHA_B64[:-4], "\ud83d"],
)
async def test_what_is_not_a_sha256_finds_nothing_and_is_not_counted(claim: str) -> None:
    cache = TranscriptCache(max_entries=10, ttl=3600)
    cache.put(SHA, Transcript("hello", "en"))
    assert cache.get(claim) is None
    assert (cache.stats().hits, cache.stats().misses) == (0, 0)


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
    digests = [audio_digest(bytes([i])) for i in range(3)]
    for i, digest in enumerate(digests):
        cache.put(digest, Transcript(f"t{i}"))
    assert len(cache) == 2 and cache.get(digests[0]) is None
    assert cache.flush() == 2 and len(cache) == 0


async def test_stats_count_hits_misses_entries_and_bytes() -> None:
    cache = TranscriptCache(max_entries=10, ttl=600)
    assert cache.get(SHA) is None  # miss
    cache.put(SHA, Transcript("héllo", "fr"))
    assert cache.get(SHA) is not None and cache.get(SHA_B64) is not None  # two hits
    assert cache.get("") is None  # no sha256: nothing looked up, neither hit nor miss
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries, stats.bytes) == (2, 1, 1, 6)


async def test_stats_do_not_count_expired_transcripts(autojump_clock: trio.abc.Clock) -> None:
    cache = TranscriptCache(max_entries=10, ttl=600)
    cache.put(AudioDigest(SHA), Transcript("hello", "en"))
    await trio.sleep(601)
    assert (cache.stats().entries, cache.stats().bytes) == (0, 0)


async def test_audio_just_downloaded_is_looked_up_once() -> None:
    cache = TranscriptCache(max_entries=10, ttl=600)
    assert cache.get(SHA_B64) is None  # by the webhook's claim: a miss
    assert cache.get_downloaded(SHA, claimed=SHA_B64) is None  # the same file: not again
    assert cache.stats().misses == 1
    cache.put(SHA, Transcript("hello"))
    other = audio_digest(b"other")
    cache.put(other, Transcript("other"))
    assert cache.get_downloaded(other, claimed=SHA_B64) == Transcript("other")  # claim lied
    assert cache.get_downloaded(other, claimed=None) == Transcript("other")  # no claim
