"""daemon.cache.sentences: PCM of sentences said again, kept from the second sighting."""

from __future__ import annotations

import pytest

from daemon.cache.sentences import SentenceAudioCache


def test_a_sentence_is_kept_from_its_second_sighting() -> None:
    cache = SentenceAudioCache(max_bytes=1000)
    assert cache.get("a") is None
    cache.put("a", b"\0" * 10)  # seen once: a one-off costs a counter, not its audio
    assert cache.get("a") is None
    cache.put("a", b"\1" * 10)
    assert cache.get("a") == b"\1" * 10
    assert cache.stats().__dict__ == {"hits": 1, "misses": 2, "entries": 1, "bytes": 10}


def test_the_byte_budget_pushes_the_least_recently_used_out() -> None:
    cache = SentenceAudioCache(max_bytes=25, min_sightings=1)
    for key in ("a", "b", "c"):
        cache.get(key)
        cache.put(key, b"x" * 10)
    assert cache.stats().bytes <= 25
    assert cache.get("a") is None  # the oldest went
    assert cache.get("c") == b"x" * 10


def test_audio_bigger_than_the_budget_is_not_kept() -> None:
    cache = SentenceAudioCache(max_bytes=5, min_sightings=1)
    cache.get("a")
    cache.put("a", b"x" * 6)
    assert cache.stats().entries == 0


def test_sightings_are_bounded() -> None:
    cache = SentenceAudioCache(max_bytes=100, remembered=2)
    for key in ("a", "b", "c"):  # "a" is forgotten: its next sighting is a first again
        cache.get(key)
    cache.get("a")
    cache.put("a", b"x")
    assert cache.get("a") is None


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        SentenceAudioCache(max_bytes=0)
