"""Intake: a delivery's messages into the inbox and the lanes, one user never costing the
others; per-user limits decided as messages come in (daemon/intake.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from daemon import intake
from daemon.config import LimitsConfig
from daemon.intake import Taken
from daemon.lanes import Lanes
from daemon.limits import MemoryUserLimits
from daemon.model import Inbound, Kind, User
from daemon.state.base import Stage
from daemon.state.sqlite import SqliteStore


def message(user: str, n: int, text: str = "hi") -> Inbound:
    return Inbound(f"{user}-{n}", User(user, "+1555"), Kind.TEXT, text=text)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(tmp_path / "state.sqlite3")
    yield store
    await store.close()


class Held:
    """A turn handler that holds every turn until released."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.started: list[str] = []

    async def __call__(self, m: Inbound) -> None:
        self.started.append(m.message_id)
        await self.release.wait()


def lanes_for(handler: Held, **over: int) -> object:
    kw = dict(max_lanes=10, max_pending=2, queue_size=100, idle_seconds=5, max_concurrent_turns=10)
    kw.update(over)
    return Lanes.open(handler, **kw)  # type: ignore[arg-type]


async def take(
    messages: list[Inbound],
    store: SqliteStore,
    lanes: Lanes,
    counts: Counter[str],
    *,
    limits: MemoryUserLimits | None = None,
    max_waiting: int = 100,
) -> Taken:
    return await intake.take(
        messages,
        inbox=store,
        lanes=lanes,
        limits=limits,
        max_waiting=max_waiting,
        count=lambda outcome, n: counts.update({outcome: n}),
    )


async def test_one_users_full_lane_leaves_the_batch_accepted_and_the_rest_waiting(
    store: SqliteStore,
) -> None:
    """25 messages of one user and one of another, in one delivery: 200 for all of it, the
    other user's message queued, the overflow waiting in the inbox (today: a 503 for the
    whole batch, on every redelivery)."""
    held, counts = Held(), Counter[str]()
    flood = [message("flood", n) for n in range(25)]
    victim = message("victim", 0)
    with trio.fail_after(5):
        async with lanes_for(held) as lanes:  # type: ignore[attr-defined]
            assert await take([*flood, victim], store, lanes, counts) is Taken.ACCEPTED
            await trio.testing.wait_all_tasks_blocked()
            assert "victim-0" in held.started
            assert lanes.parked() == ["flood"]
            again = await take([*flood, victim], store, lanes, counts)  # Meta's redelivery
            assert again is Taken.ACCEPTED
            open_rows = [r.inbound.message_id for r in await store.unfinished()]
            waiting = [i for i in open_rows if not lanes.holds(i)]
            held.release.set()
    assert counts == {"accepted": 3, "waiting": 23, "duplicate": 26}
    assert waiting == [m.message_id for m in flood[2:]]  # in order, for the resume loop


async def test_a_global_bound_refuses_the_delivery_and_forgets_what_was_not_queued(
    store: SqliteStore,
) -> None:
    held, counts = Held(), Counter[str]()
    with trio.fail_after(5):
        async with lanes_for(held, max_lanes=1) as lanes:  # type: ignore[attr-defined]
            batch = [message("a", 0), message("b", 0), message("c", 0)]
            assert await take(batch, store, lanes, counts) is Taken.OVERLOADED
            held.release.set()
    assert [r.inbound.message_id for r in await store.unfinished()] == ["a-0"]
    assert await store.get("b-0") is None and await store.get("c-0") is None


async def test_a_flood_is_limited_at_intake_with_one_notice(store: SqliteStore) -> None:
    held, counts = Held(), Counter[str]()
    limits = MemoryUserLimits(LimitsConfig(burst=3, per_minute=1))
    flood = [message("flood", n) for n in range(20)]
    with trio.fail_after(5):
        async with lanes_for(held, max_pending=50) as lanes:  # type: ignore[attr-defined]
            assert await take(flood, store, lanes, counts, limits=limits) is Taken.ACCEPTED
            held.release.set()
    assert counts == {"accepted": 4, "limited": 16}
    notice = await store.get("flood-3")
    assert notice is not None and notice.outcome == "limited_rate"  # its turn says it
    for n in range(4, 20):
        record = await store.get(f"flood-{n}")
        assert record is not None and record.stage is Stage.DONE
        assert record.outcome == "limited_rate"
    assert limits.refusals() == {"rate": 17}


async def test_a_user_with_too_many_waiting_messages_loses_the_excess_counted(
    store: SqliteStore,
) -> None:
    held, counts = Held(), Counter[str]()
    with trio.fail_after(5):
        async with lanes_for(held, max_pending=1) as lanes:  # type: ignore[attr-defined]
            batch = [message("flood", n) for n in range(10)]
            assert await take(batch, store, lanes, counts, max_waiting=3) is Taken.ACCEPTED
            held.release.set()
    assert counts == {"accepted": 1, "waiting": 3, "dropped_waiting": 6}
    record = await store.get("flood-9")
    assert record is not None and record.stage is Stage.DONE
    assert record.outcome == "dropped_waiting"


async def test_a_message_the_inbox_cannot_store_is_skipped(store: SqliteStore) -> None:
    held, counts = Held(), Counter[str]()
    with trio.fail_after(5):
        async with lanes_for(held) as lanes:  # type: ignore[attr-defined]
            batch = [message("a", 0, text="\ud83d"), message("b", 0)]
            assert await take(batch, store, lanes, counts) is Taken.ACCEPTED
            held.release.set()
    assert counts == {"ignored_unstorable": 1, "accepted": 1}
