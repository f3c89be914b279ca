"""MediaIds: uploaded voice notes reused per business number, forgotten well before 30 days."""

from __future__ import annotations

import pytest
import trio

from daemon.cache.media_ids import DAY, MediaIds


async def test_ids_are_per_audio_and_business_number() -> None:
    ids = MediaIds(max_entries=10)
    ids.put("audio1", "pn1", "media-1")
    assert ids.get("audio1", "pn1") == "media-1"
    assert ids.get("audio1", "pn2") is None  # a media id belongs to the number it was sent to
    assert ids.get("audio2", "pn1") is None
    ids.put("audio1", "pn2", "")  # an empty id is no id
    assert ids.get("audio1", "pn2") is None and len(ids) == 1


async def test_ids_expire_before_meta_deletes_the_media(autojump_clock: trio.abc.Clock) -> None:
    ids = MediaIds(max_entries=10)  # default: 25 days
    ids.put("audio1", "pn1", "media-1")
    await trio.sleep(25 * DAY - 60)
    assert ids.get("audio1", "pn1") == "media-1"
    await trio.sleep(120)
    assert ids.get("audio1", "pn1") is None  # gone on day 25, Meta keeps it until day 30
    assert len(ids) == 0


@pytest.mark.parametrize("ttl", [30 * DAY, 31 * DAY, 0, -1])
def test_ttl_must_stay_under_thirty_days(ttl: float) -> None:
    with pytest.raises(ValueError, match="30 days"):
        MediaIds(max_entries=10, ttl=ttl)


async def test_forget_flush_and_bound() -> None:
    ids = MediaIds(max_entries=2)
    ids.put("a", "pn", "m-a")
    ids.put("b", "pn", "m-b")
    ids.forget("a", "pn")
    assert ids.get("a", "pn") is None and ids.get("b", "pn") == "m-b"
    ids.forget("never", "pn")  # no error
    ids.put("c", "pn", "m-c")
    ids.put("d", "pn", "m-d")
    assert len(ids) == 2
    assert ids.flush() == 2
    assert len(ids) == 0 and ids.get("d", "pn") is None


async def test_stats_count_hits_misses_and_ids_graph_refused() -> None:
    ids = MediaIds(max_entries=10)
    assert ids.get("a", "pn") is None  # miss: upload
    ids.put("a", "pn", "m-a")
    assert ids.get("a", "pn") == "m-a"  # hit: sent without uploading
    ids.forget("a", "pn")  # Graph said the media is gone
    ids.forget("a", "pn")  # nothing left to forget: not counted twice
    assert ids.get("a", "pn") is None
    stats = ids.stats()
    assert (stats.hits, stats.misses, stats.gone, stats.entries) == (1, 2, 1, 0)
