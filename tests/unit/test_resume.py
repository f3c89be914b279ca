"""Open turns in the durable inbox are run again: skipped while queued, given up when old."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from daemon.lanes import Lanes, Waiting
from daemon.model import Inbound, Kind, User
from daemon.observe.logs import message_tag
from daemon.resume import count_deferred, keep_resuming, resume_unfinished
from daemon.state.base import Stage, TurnRecord
from daemon.state.sqlite import SqliteStore

NOW = 1_800_000_000.0


def message(n: int, user: str = "u1") -> Inbound:
    return Inbound(f"wamid.{n}", User(user, "+1555000"), Kind.TEXT, text=f"question {n}")


def open_lanes(handle: Callable[[Inbound], Awaitable[None]], max_lanes: int = 10) -> Any:
    return Lanes.open(
        handle,
        max_lanes=max_lanes,
        max_pending=10,
        queue_size=10,
        idle_seconds=5,
        max_concurrent_turns=10,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(tmp_path / "state.sqlite3", wall_clock=lambda: NOW)
    yield store
    await store.close()


async def test_open_turns_are_queued_oldest_first_and_finished_ones_are_not(
    store: SqliteStore,
) -> None:
    await store.accept([message(1), message(2), message(3)])
    await store.progress("wamid.2", Stage.DONE, outcome="answered")
    seen: list[str] = []
    release = trio.Event()

    async def handle(m: Inbound) -> None:
        seen.append(m.message_id)
        await release.wait()

    async with open_lanes(handle) as lanes:
        assert await resume_unfinished(store, lanes, window=3600, wall_clock=lambda: NOW) == 2
        # Queued or running: a second round leaves them alone (no turn runs twice at once).
        assert await resume_unfinished(store, lanes, window=3600, wall_clock=lambda: NOW) == 0
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert seen == ["wamid.1", "wamid.3"]


async def test_a_turn_older_than_the_window_is_given_up(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    await store.accept([message(1)])

    async def handle(m: Inbound) -> None:
        raise AssertionError("an expired turn must not run")

    async with open_lanes(handle) as lanes:
        later = NOW + 86400 + 1
        assert await resume_unfinished(store, lanes, window=86400, wall_clock=lambda: later) == 0
    record = await store.get("wamid.1")
    assert record is not None and record.stage is Stage.FAILED and record.outcome == "expired"
    # Logged, with the id hashed: a Meta wamid is base64 of the sender's phone number.
    (line,) = [r.getMessage() for r in caplog.records if "given up" in r.getMessage()]
    assert "wamid.1" not in line and message_tag("wamid.1") in line


async def test_a_full_queue_stops_the_round_and_the_rest_wait(store: SqliteStore) -> None:
    await store.accept([message(n, user=f"u{n}") for n in range(5)])
    release = trio.Event()

    async def handle(m: Inbound) -> None:
        await release.wait()

    async with open_lanes(handle, max_lanes=2) as lanes:
        assert await resume_unfinished(store, lanes, window=3600, wall_clock=lambda: NOW) == 2
        release.set()
    assert len(await store.unfinished()) == 5  # nothing was lost or marked by the full queue


class MemoryStore:
    """Just what the retry loop reads, without SQLite's worker thread: MockClock's autojump
    counts a task waiting on a thread as idle, and would jump past the store's answer."""

    def __init__(self, *messages: Inbound) -> None:
        self.open = {m.message_id: m for m in messages}

    async def unfinished(self) -> list[TurnRecord]:
        return [TurnRecord(m, Stage.ANSWERED, received_at=NOW) for m in self.open.values()]

    async def progress(self, message_id: str, stage: Stage, **fields: object) -> None:
        if stage in (Stage.DONE, Stage.FAILED):
            self.open.pop(message_id, None)


async def test_keep_resuming_picks_up_a_deferred_turn_on_its_next_round(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore(message(1))
    runs: list[float] = []
    delivered = trio.Event()

    async def handle(m: Inbound) -> None:
        runs.append(trio.current_time())
        if len(runs) == 2:  # the second try delivers
            await store.progress(m.message_id, Stage.DONE)
            delivered.set()

    async with open_lanes(handle) as lanes, trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: keep_resuming(store, lanes, every=30, window=86400)  # type: ignore[arg-type]
        )
        with trio.fail_after(200):
            await delivered.wait()
        await trio.sleep(100)  # finished: no further rounds pick it up
        nursery.cancel_scope.cancel()
    assert runs == [pytest.approx(30), pytest.approx(60)]


async def test_waiting_messages_are_handed_over_in_order_and_others_go_on(
    store: SqliteStore,
) -> None:
    """User a's lane is full: a's messages wait in the inbox. A round hands over what fits,
    leaves the rest of a's (in order) for the next round, and goes on with user b's."""
    a = [message(n, user="a") for n in range(4)]
    b = message(9, user="b")
    await store.accept([*a, b])
    done: list[str] = []
    release = trio.Event()

    async def handle(m: Inbound) -> None:
        if m.user.key == "a":
            await release.wait()
        done.append(m.message_id)
        await store.progress(m.message_id, Stage.DONE)

    lanes_cm = Lanes.open(
        handle, max_lanes=10, max_pending=1, queue_size=10, idle_seconds=5, max_concurrent_turns=10
    )
    with trio.fail_after(5):
        async with lanes_cm as lanes:
            # a-0 fills a's lane (its task has not started yet); a-1 and on wait; b-9 goes in.
            assert await resume_unfinished(store, lanes, window=3600, wall_clock=lambda: NOW) == 2
            assert lanes.parked() == ["a"]
            await trio.testing.wait_all_tasks_blocked()
            assert done == ["wamid.9"]
            release.set()
            while lanes.parked():
                await lanes.room.wait()
                lanes.room = trio.Event()
                await trio.testing.wait_all_tasks_blocked()
                await resume_unfinished(store, lanes, window=3600, wall_clock=lambda: NOW)
    assert done == ["wamid.9", "wamid.0", "wamid.1", "wamid.2", "wamid.3"]
    assert await store.unfinished() == []


async def test_a_user_parked_after_the_inbox_was_read_stays_parked(store: SqliteStore) -> None:
    """A message parked while a round runs may not be in the round's read of the inbox: the
    round must not unpark its user, or the next message would jump the queue."""
    await store.accept([message(1, user="a")])
    block = trio.Event()

    async def handle(m: Inbound) -> None:
        await block.wait()

    lanes_cm = Lanes.open(
        handle, max_lanes=10, max_pending=1, queue_size=10, idle_seconds=5, max_concurrent_turns=10
    )

    class Racing:
        """The inbox read of a round; meanwhile a webhook parks user a."""

        async def unfinished(self) -> list[TurnRecord]:
            records = await store.unfinished()
            with pytest.raises(Waiting):
                lanes.submit(message(3, user="a"))
            return records

        async def progress(self, *args: object, **kw: object) -> None:
            raise AssertionError("nothing expires here")

    with trio.fail_after(5):
        async with lanes_cm as lanes:
            lanes.submit(message(0, user="a"))
            await trio.testing.wait_all_tasks_blocked()
            lanes.submit(message(2, user="a"))
            with pytest.raises(Waiting):
                lanes.submit(message(1, user="a"))  # parked (it is in the inbox)
            await resume_unfinished(Racing(), lanes, window=3600, wall_clock=lambda: NOW)  # type: ignore[arg-type]
            assert lanes.parked() == ["a"]
            block.set()


async def test_count_deferred_counts_open_turns_that_no_lane_holds(store: SqliteStore) -> None:
    await store.accept([message(1), message(2), message(3, user="u2")])
    await store.progress("wamid.2", Stage.DONE, outcome="answered")
    release = trio.Event()

    async def handle(m: Inbound) -> None:
        await release.wait()

    async with open_lanes(handle) as lanes:
        assert await count_deferred(store, lanes) == 2  # 1 and 3: open, nobody runs them
        lanes.submit(message(3, user="u2"))  # running (or queued) now: not waiting
        assert await count_deferred(store, lanes) == 1
        release.set()


async def test_messages_waiting_for_a_full_lane_are_not_counted_as_deferred(
    store: SqliteStore,
) -> None:
    await store.accept([message(n, user="a") for n in range(3)])
    release = trio.Event()

    async def handle(m: Inbound) -> None:
        await release.wait()

    lanes_cm = Lanes.open(
        handle, max_lanes=10, max_pending=1, queue_size=10, idle_seconds=5, max_concurrent_turns=10
    )
    with trio.fail_after(5):
        async with lanes_cm as lanes:
            await resume_unfinished(store, lanes, window=3600, wall_clock=lambda: NOW)
            assert lanes.parked() == ["a"]
            assert await count_deferred(store, lanes) == 0  # waiting, not deferred
            release.set()
