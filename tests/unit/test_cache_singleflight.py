"""SingleFlight: one load per key for concurrent callers; errors and cancellation."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from cachetools import LRUCache

from daemon.cache.singleflight import SingleFlight


class Loader:
    """A load that blocks until released, then returns or raises what it is told."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = trio.Event()
        self.fail_first = 0

    async def __call__(self) -> str:
        self.calls += 1
        n = self.calls
        await self.release.wait()
        if n <= self.fail_first:
            raise RuntimeError(f"load {n} failed")
        return f"value-{n}"


async def test_fifty_concurrent_calls_one_load() -> None:
    sf: SingleFlight[str, str] = SingleFlight()
    load = Loader()
    results: list[str] = []

    async def call() -> None:
        results.append(await sf.run("k", load))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(call)
            await trio.testing.wait_all_tasks_blocked()
            assert len(sf) == 1
            load.release.set()
    assert load.calls == 1
    assert results == ["value-1"] * 50
    assert sf.loads == 1 and sf.shared == 49
    assert len(sf) == 0


async def test_different_keys_load_separately() -> None:
    sf: SingleFlight[str, str] = SingleFlight()
    load = Loader()
    load.release.set()
    with trio.fail_after(10):
        assert await sf.run("a", load) == "value-1"
        assert await sf.run("b", load) == "value-2"
    assert load.calls == 2


async def test_failed_leader_error_goes_to_leader_only_followers_retry() -> None:
    sf: SingleFlight[str, str] = SingleFlight()
    load = Loader()
    load.fail_first = 1
    leader_error: list[BaseException] = []
    follower_results: list[str] = []

    async def leader() -> None:
        try:
            await sf.run("k", load)
        except RuntimeError as exc:
            leader_error.append(exc)

    async def follower() -> None:
        follower_results.append(await sf.run("k", load))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(leader)
            await trio.testing.wait_all_tasks_blocked()  # the leader holds the key
            for _ in range(5):
                nursery.start_soon(follower)
            await trio.testing.wait_all_tasks_blocked()
            load.release.set()
    assert [str(e) for e in leader_error] == ["load 1 failed"]
    assert follower_results == ["value-2"] * 5  # one follower became the new leader
    assert load.calls == 2


async def test_error_is_not_cached() -> None:
    sf: SingleFlight[str, str] = SingleFlight()
    load = Loader()
    load.fail_first = 1
    load.release.set()
    with trio.fail_after(10):
        with pytest.raises(RuntimeError):
            await sf.run("k", load)
        assert await sf.run("k", load) == "value-2"
    assert load.calls == 2


async def test_cancelled_leader_lets_a_follower_load() -> None:
    sf: SingleFlight[str, str] = SingleFlight()
    load = Loader()
    results: list[str] = []
    leader_scope = trio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await sf.run("k", load)
        results.append("leader-cancelled")

    async def follower() -> None:
        results.append(await sf.run("k", load))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(leader)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(follower)
            nursery.start_soon(follower)
            await trio.testing.wait_all_tasks_blocked()
            leader_scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert load.calls == 2  # a follower took over and started its own load
            load.release.set()
    assert sorted(results) == ["leader-cancelled", "value-2", "value-2"]


async def test_cancelled_follower_just_leaves() -> None:
    sf: SingleFlight[str, str] = SingleFlight()
    load = Loader()
    results: list[str] = []
    follower_scope = trio.CancelScope()

    async def leader() -> None:
        results.append(await sf.run("k", load))

    async def follower() -> None:
        with follower_scope:
            await sf.run("k", load)
        results.append("follower-cancelled")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(leader)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(follower)
            await trio.testing.wait_all_tasks_blocked()
            follower_scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            load.release.set()
    assert sorted(results) == ["follower-cancelled", "value-1"]
    assert load.calls == 1 and len(sf) == 0


async def test_get_or_load_uses_and_fills_the_cache() -> None:
    sf: SingleFlight[str, str] = SingleFlight()
    cache: LRUCache[str, str] = LRUCache(maxsize=10)
    load = Loader()
    load.release.set()
    with trio.fail_after(10):
        assert await sf.get_or_load(cache, "k", load) == "value-1"
        assert cache["k"] == "value-1"
        assert await sf.get_or_load(cache, "k", load) == "value-1"
    assert load.calls == 1


async def test_get_or_load_coalesces_and_stores_once() -> None:
    sf: SingleFlight[str, str] = SingleFlight()
    cache: LRUCache[str, str] = LRUCache(maxsize=10)
    load = Loader()
    results: list[str] = []

    async def call() -> None:
        results.append(await sf.get_or_load(cache, "k", load))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(call)
            await trio.testing.wait_all_tasks_blocked()
            load.release.set()
    assert load.calls == 1 and results == ["value-1"] * 20 and cache["k"] == "value-1"


async def test_get_or_load_store_predicate_and_oversized_values() -> None:
    sf: SingleFlight[str, str] = SingleFlight()
    load = Loader()
    load.release.set()
    cache: LRUCache[str, str] = LRUCache(maxsize=10)
    with trio.fail_after(10):
        assert await sf.get_or_load(cache, "k", load, store=lambda v: False) == "value-1"
        assert "k" not in cache
        # A byte-budget cache refuses an item larger than its whole budget with ValueError.
        small: LRUCache[str, str] = LRUCache(maxsize=3, getsizeof=len)
        assert await sf.get_or_load(small, "k", load) == "value-2"
        assert "k" not in small
    assert load.calls == 2


async def test_get_or_load_does_not_cache_errors() -> None:
    sf: SingleFlight[str, str] = SingleFlight()
    cache: LRUCache[str, str] = LRUCache(maxsize=10)
    load = Loader()
    load.fail_first = 1
    load.release.set()
    with trio.fail_after(10):
        with pytest.raises(RuntimeError):
            await sf.get_or_load(cache, "k", load)
        assert "k" not in cache
        assert await sf.get_or_load(cache, "k", load) == "value-2"
