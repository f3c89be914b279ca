"""/readyz reasons: failing upstreams, open circuits, a store that can't write, draining."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import trio
import trio.testing

from daemon.config import Settings
from daemon.observe.health import Readiness, StoreProbe, UpstreamHealth, is_failure
from daemon.observe.metrics import Metrics
from daemon.runtime import build_guard
from daemon.state.sqlite import SqliteStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- upstreams


@pytest.mark.parametrize(
    ("status", "failed"),
    [
        ("200", False),
        ("204", False),
        ("400", False),  # our request was wrong: the upstream answered
        ("404", False),
        ("423", False),
        ("429", True),  # told to slow down
        ("500", True),
        ("503", True),
        ("timeout", True),
        ("error", True),
        ("circuit_open", True),
    ],
)
def test_what_counts_as_a_failure(status: str, failed: bool) -> None:
    assert is_failure(status) is failed


def test_an_upstream_is_down_after_threshold_failures_in_a_row() -> None:
    health = UpstreamHealth(threshold=3, clock=Clock())
    for status in ("503", "timeout"):
        health.record("agentforce", status)
    assert health.down() == []
    health.record("agentforce", "500")
    assert health.down() == ["agentforce failing (3 calls in a row, last: 500)"]
    health.record("agentforce", "error")
    assert health.down() == ["agentforce failing (4 calls in a row, last: error)"]


def test_one_success_ends_the_streak() -> None:
    health = UpstreamHealth(threshold=2, clock=Clock())
    for status in ("503", "503", "200", "503"):
        health.record("whatsapp", status)
    assert health.down() == []


def test_a_streak_older_than_memory_no_longer_counts() -> None:
    # Nobody called the upstream for a while (no traffic, or the breaker keeps callers
    # away): an old streak must not keep the daemon out of the load balancer forever.
    clock = Clock()
    health = UpstreamHealth(threshold=2, memory=300, clock=clock)
    health.record("elevenlabs-tts", "503")
    health.record("elevenlabs-tts", "503")
    clock.now += 299
    assert health.down() == ["elevenlabs-tts failing (2 calls in a row, last: 503)"]
    clock.now += 1
    assert health.down() == []


def test_each_upstream_has_its_own_streak_and_all_are_reported_sorted() -> None:
    health = UpstreamHealth(threshold=1, clock=Clock())
    health.record("whatsapp", "429")
    health.record("agentforce", "timeout")
    health.record("elevenlabs-stt", "200")
    assert health.down() == [
        "agentforce failing (1 calls in a row, last: timeout)",
        "whatsapp failing (1 calls in a row, last: 429)",
    ]


# --------------------------------------------------------------------------- the store probe


class FakeWrite:
    def __init__(self) -> None:
        self.error: Exception | None = None
        self.hang = False
        self.calls = 0
        self.release = trio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        if self.hang:
            await self.release.wait()
        if self.error is not None:
            raise self.error


async def test_store_probe_reports_a_write_that_fails_and_its_recovery(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    write = FakeWrite()
    probe = StoreProbe(write, every=5.0)
    await probe.check()
    assert probe.problem() is None
    write.error = sqlite3.OperationalError("database or disk is full")
    with caplog.at_level(logging.INFO, logger="daemon.observe.health"):
        await probe.check()
        assert probe.problem() == (
            "state store not writable (OperationalError: database or disk is full)"
        )
        await probe.check()  # the same error again: one warning, not one per probe
        write.error = None
        await probe.check()
    assert probe.problem() is None
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "state store can't take writes: OperationalError: database or disk is full",
        ),
        ("INFO", "state store takes writes again"),
    ]


async def test_store_probe_reports_a_write_that_hangs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A disk that hangs (NFS, a dying device) never raises: the write just doesn't return,
    # and neither would a webhook's. Reported once it has waited stall_after seconds.
    write = FakeWrite()
    write.hang = True
    probe = StoreProbe(write, stall_after=10.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe.check)
        await trio.sleep(9.5)
        assert probe.problem() is None
        await trio.sleep(1)
        assert probe.problem() == "state store not answering (a write has waited 10s)"
        write.release.set()
    assert probe.problem() is None


async def test_store_probe_writes_when_asked_at_most_once_per_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    write = FakeWrite()
    probe = StoreProbe(write, every=5.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe.run)
        await trio.sleep(60)
        assert write.calls == 1  # once at start, then nobody asked: no writes on an idle host
        for _ in range(120):  # a load balancer asking every 0.1 s
            probe.problem()
            await trio.sleep(0.1)
        # 12 s of asking: a write at once (the last one was long ago), then one per 5 s.
        assert write.calls == 4
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- the real store


async def test_the_store_probe_fails_while_another_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    # An operator's `sqlite3` shell in a write transaction: every write of the daemon waits
    # busy_timeout, then fails. os.access() saw nothing of this (and, as root, nothing at all).
    path = tmp_path / "wa-agentd.sqlite3"
    with trio.fail_after(10):
        store = await SqliteStore.open(path, busy_timeout=0.05)
        try:
            await store.probe()
            other = sqlite3.connect(path, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                probe = StoreProbe(store.probe)
                await probe.check()
                assert probe.problem() == (
                    "state store not writable (OperationalError: database is locked)"
                )
                other.execute("ROLLBACK")
                await probe.check()
                assert probe.problem() is None
            finally:
                other.close()
        finally:
            await store.close()


async def test_the_store_probe_fails_once_the_store_is_closed(tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = await SqliteStore.open(tmp_path / "s.sqlite3")
        await store.close()
        probe = StoreProbe(store.probe)
        await probe.check()
    assert probe.problem() == "state store not writable (StoreClosed: the state store is closed)"


async def test_the_probe_row_is_outside_the_versioned_schema(tmp_path: Path) -> None:
    # An older daemon must still open the file after a rollback: no new schema version.
    path = tmp_path / "s.sqlite3"
    with trio.fail_after(10):
        store = await SqliteStore.open(path)
        await store.probe()
        await store.probe()
        await store.close()
    with closing(sqlite3.connect(path)) as db:  # sqlite3's own `with` does not close
        assert db.execute("SELECT count(*) FROM health_probe").fetchone() == (1,)
        assert db.execute("PRAGMA user_version").fetchone() == (1,)


# --------------------------------------------------------------------------- readiness


def readiness(
    *,
    draining: bool = False,
    probe: StoreProbe | None = None,
    circuits: list[str] | None = None,
    health: UpstreamHealth | None = None,
) -> Readiness:
    return Readiness(
        draining=lambda: draining,
        store=probe,
        circuits=lambda: circuits or [],
        upstreams=health or UpstreamHealth(clock=Clock()),
    )


def test_ready_when_nothing_is_wrong() -> None:
    assert readiness()() == (True, "ready")


async def test_every_reason_at_once_in_a_fixed_order() -> None:
    write = FakeWrite()
    write.error = OSError(30, "Read-only file system")
    probe = StoreProbe(write)
    await probe.check()
    health = UpstreamHealth(threshold=2, clock=Clock())
    health.record("whatsapp", "503")
    health.record("whatsapp", "503")
    ready = readiness(
        draining=True, probe=probe, circuits=["agentforce circuit open"], health=health
    )
    assert ready() == (
        False,
        "draining; state store not writable (OSError: [Errno 30] Read-only file system); "
        "agentforce circuit open; whatsapp failing (2 calls in a row, last: 503)",
    )


async def test_an_open_circuit_makes_the_daemon_unready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = Settings()
    guard = build_guard(settings, Metrics())  # the Prometheus sink is a hook itself
    ready = Readiness(
        draining=lambda: False,
        store=None,
        circuits=guard.open_circuits,
        upstreams=UpstreamHealth(),
    )
    assert ready() == (True, "ready")
    breaker = guard.breakers["elevenlabs-tts"]
    for _ in range(settings.breakers.min_calls):
        assert breaker.allow()
        breaker.record(False, 0.1)
    assert ready() == (False, "elevenlabs-tts circuit open")
    await trio.sleep(settings.breakers.open_seconds)  # half-open: trial calls may go
    assert ready() == (True, "ready")
