"""audio_key and AudioCache: memory and disk tiers, atomic sound files, byte bounds."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from daemon.cache.audio import AudioCache, audio_key
from daemon.sim.audio import listen, speak

VOICE = {"voice_id": "v1", "model_id": "eleven_flash_v2_5", "output_format": "opus_48000_32"}


def key(text: str, **over: object) -> str:
    args: dict[str, object] = {**VOICE, "voice_settings": {"stability": 0.5, "speed": 1.0}}
    args.update(over)
    return audio_key(text=text, **args)  # type: ignore[arg-type]


def ogg(size: int, fill: bytes = b"x") -> bytes:
    return b"OggS" + fill * (size - 4)


def path_of(root: Path, k: str) -> Path:
    return root / k[:2] / f"{k}.ogg"


def files(root: Path, pattern: str = "*.ogg") -> dict[str, int]:
    """name stem -> size of the files under ``root`` (tiny test dirs: blocking is fine)."""
    return {p.stem: p.stat().st_size for p in root.rglob(pattern)}


# --------------------------------------------------------------------------- audio_key


def test_audio_key_folds_white_space_and_compatibility_forms_but_not_case() -> None:
    base = key("We are open 9-17.")
    assert key("  We are  open\n9-17. ") == base
    assert key("We are open ９-１７.") == base  # full-width digits (NFKC)
    assert key("WE ARE OPEN 9-17.") != base  # casing changes prosody
    assert len(base) == 64


def test_audio_key_depends_on_everything_that_changes_the_sound() -> None:
    base = key("hello")
    variants = {
        key("hello", voice_id="v2"),
        key("hello", model_id="eleven_multilingual_v2"),
        key("hello", output_format="mp3_44100_128"),
        key("hello", voice_settings={"stability": 0.7, "speed": 1.0}),
        key("hello", voice_settings=None),
        key("hello", extra={"language_code": "ar"}),
    }
    assert base not in variants and len(variants) == 6


def test_audio_key_settings_order_does_not_matter() -> None:
    a = key("hi", voice_settings={"stability": 0.5, "speed": 1.0})
    b = key("hi", voice_settings={"speed": 1.0, "stability": 0.5})
    assert a == b


# --------------------------------------------------------------------------- memory tier


async def test_memory_tier_round_trip_and_stats() -> None:
    cache = AudioCache(max_bytes=1000)
    k = key("hello")
    with trio.fail_after(10):
        assert await cache.get(k) is None
        await cache.put(k, ogg(100))
        assert await cache.get(k) == ogg(100)
    s = cache.stats()
    assert (s.memory_hits, s.misses, s.memory_entries, s.memory_bytes) == (1, 1, 1, 100)
    assert (s.disk_entries, s.disk_bytes) == (0, 0)


async def test_memory_tier_byte_bound_evicts_least_recently_used() -> None:
    cache = AudioCache(max_bytes=250)
    a, b, c = key("a"), key("b"), key("c")
    with trio.fail_after(10):
        await cache.put(a, ogg(100))
        await cache.put(b, ogg(100))
        assert await cache.get(a) is not None  # a is now the most recent
        await cache.put(c, ogg(100))
        assert await cache.get(b) is None
        assert await cache.get(a) is not None and await cache.get(c) is not None
        await cache.put(key("huge"), ogg(1000))  # larger than the whole budget: not kept
        assert await cache.get(key("huge")) is None
    assert cache.stats().memory_bytes <= 250


async def test_refuses_what_is_not_ogg_and_keys_that_are_not_digests(tmp_path: Path) -> None:
    cache = AudioCache(max_bytes=1000, disk_dir=tmp_path, disk_max_bytes=10_000)
    with trio.fail_after(10):
        await cache.put(key("mp3"), b"ID3\x04 mp3 data")
        assert await cache.get(key("mp3")) is None
        assert not files(tmp_path)
        with pytest.raises(ValueError):
            await cache.get("../../etc/passwd")
        with pytest.raises(ValueError):
            await cache.put("A" * 64, ogg(10))


# --------------------------------------------------------------------------- disk tier


async def test_disk_tier_survives_a_new_instance(tmp_path: Path) -> None:
    data = speak("We are open nine to five.")
    k = key("We are open nine to five.")
    with trio.fail_after(10):
        first = AudioCache(max_bytes=1_000_000, disk_dir=tmp_path, disk_max_bytes=1_000_000)
        await first.put(k, data)
        assert path_of(tmp_path, k).is_file()
        assert not files(tmp_path, "*.tmp")

        second = AudioCache(max_bytes=1_000_000, disk_dir=tmp_path, disk_max_bytes=1_000_000)
        assert await second.load_index() == 1
        got = await second.get(k)
    assert got == data
    assert listen(got)[0] == "We are open nine to five."  # still a sound voice note
    s = second.stats()
    assert (s.disk_hits, s.memory_hits, s.disk_entries) == (1, 0, 1)
    assert s.memory_entries == 1  # promoted to memory


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b[:20],  # cut inside the header
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),  # one bit flipped
        lambda b: b"",  # empty, as after a crash before the data reached the disk
        lambda b: b"garbage" * 20,
    ],
)
async def test_corrupt_or_truncated_file_is_ignored_and_removed(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    k = key("hello")
    with trio.fail_after(10):
        writer = AudioCache(max_bytes=10_000, disk_dir=tmp_path, disk_max_bytes=100_000)
        await writer.put(k, ogg(500))
        p = path_of(tmp_path, k)
        p.write_bytes(damage(p.read_bytes()))

        reader = AudioCache(max_bytes=10_000, disk_dir=tmp_path, disk_max_bytes=100_000)
        assert await reader.get(k) is None
    assert not p.exists()
    s = reader.stats()
    assert (s.misses, s.disk_entries, s.disk_bytes) == (1, 0, 0)


async def test_leftover_temporary_files_are_cleaned_at_start(tmp_path: Path) -> None:
    k = key("hello")
    (tmp_path / k[:2]).mkdir()
    leftover = tmp_path / k[:2] / f"{k[:8]}.abc.tmp"
    leftover.write_bytes(b"OggS half")
    with trio.fail_after(10):
        cache = AudioCache(max_bytes=1000, disk_dir=tmp_path, disk_max_bytes=10_000)
        assert await cache.load_index() == 0
    assert not leftover.exists()


async def test_disk_byte_bound_evicts_least_recently_used(tmp_path: Path) -> None:
    keys = [key(f"phrase {i}") for i in range(5)]
    entry = 1000 + 45  # payload + header
    with trio.fail_after(10):
        cache = AudioCache(max_bytes=1, disk_dir=tmp_path, disk_max_bytes=3 * entry)
        for k in keys[:3]:
            await cache.put(k, ogg(1000))
        assert await cache.get(keys[0]) is not None  # touched: now the most recent
        await cache.put(keys[3], ogg(1000))
        await cache.put(keys[4], ogg(1000))
        s = cache.stats()
        assert s.disk_bytes <= 3 * entry and s.disk_entries == 3
        on_disk = files(tmp_path)
        assert set(on_disk) == {keys[0], keys[3], keys[4]}
        assert sum(on_disk.values()) <= 3 * entry
        await cache.put(key("too big"), ogg(5000))  # larger than the disk budget: skipped
        assert not path_of(tmp_path, key("too big")).exists()


async def test_start_up_index_enforces_the_bound_oldest_first(tmp_path: Path) -> None:
    keys = [key(f"phrase {i}") for i in range(4)]
    with trio.fail_after(10):
        big = AudioCache(max_bytes=1, disk_dir=tmp_path, disk_max_bytes=100_000)
        for i, k in enumerate(keys):
            await big.put(k, ogg(1000))
            os.utime(path_of(tmp_path, k), (1_000_000 + i, 1_000_000 + i))
        small = AudioCache(max_bytes=1, disk_dir=tmp_path, disk_max_bytes=2 * 1045)
        assert await small.load_index() == 2
    assert set(files(tmp_path)) == set(keys[2:])


async def test_flush_empties_both_tiers(tmp_path: Path) -> None:
    with trio.fail_after(10):
        cache = AudioCache(max_bytes=10_000, disk_dir=tmp_path, disk_max_bytes=100_000)
        for i in range(3):
            await cache.put(key(str(i)), ogg(100))
        assert await cache.flush() == 3
        assert all([await cache.get(key(str(i))) is None for i in range(3)])
        fresh = AudioCache(max_bytes=10_000, disk_dir=tmp_path, disk_max_bytes=100_000)
        assert await fresh.load_index() == 0
    assert not files(tmp_path)
    s = cache.stats()
    assert (s.memory_entries, s.disk_entries, s.disk_bytes) == (0, 0, 0)


# --------------------------------------------------------------------------- rendering


async def test_get_or_render_renders_once_for_concurrent_askers() -> None:
    cache = AudioCache(max_bytes=10_000)
    release = trio.Event()
    calls = 0

    async def render() -> bytes:
        nonlocal calls
        calls += 1
        await release.wait()
        return ogg(100)

    results: list[bytes] = []

    async def ask() -> None:
        results.append(await cache.get_or_render(key("hi"), render))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
        assert await cache.get_or_render(key("hi"), render) == ogg(100)
    assert calls == 1 and results == [ogg(100)] * 10


async def test_prerender_skips_cached_phrases_and_logs_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = AudioCache(max_bytes=10_000)
    await cache.put(key("already"), ogg(50))
    asked: list[str] = []

    async def synthesize(text: str) -> bytes:
        asked.append(text)
        if text == "broken":
            raise RuntimeError("429 too many requests")
        return ogg(50, fill=text[:1].encode())

    with trio.fail_after(10), caplog.at_level(logging.WARNING, logger="daemon.cache.audio"):
        n = await cache.prerender(["already", "hello", "broken", "bye"], synthesize, key)
    assert n == 2
    assert asked == ["hello", "broken", "bye"]
    assert await cache.get(key("hello")) == ogg(50, fill=b"h")
    assert await cache.get(key("broken")) is None
    assert "prerender failed" in caplog.text and "429" in caplog.text
