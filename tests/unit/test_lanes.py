"""Lanes: per-user order, users in parallel, bounds, idle lanes go away, drain."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from daemon.lanes import Closed, Deferrals, Lanes, Overloaded, Ran, TooManyWaiting, Waiting
from daemon.model import Inbound, Kind, User
from daemon.state.base import Stage
from daemon.state.memory import MemoryDeferred, MemoryStore


def msg(user: str, n: int) -> Inbound:
    return Inbound(
        message_id=f"{user}-{n}", user=User(user, "+" + user), kind=Kind.TEXT, text=str(n)
    )


def lanes_kwargs(**over: float) -> dict[str, float]:
    base: dict[str, float] = dict(
        max_lanes=100, max_pending=10, queue_size=100, idle_seconds=5.0, max_concurrent_turns=10
    )
    base.update(over)
    return base


async def test_one_user_in_order_users_in_parallel() -> None:
    done: list[str] = []
    release = trio.Event()
    b_done = trio.Event()

    async def handler(m: Inbound) -> None:
        if m.user.key == "a":
            await release.wait()  # user a's turns are blocked ...
        done.append(m.message_id)
        if m.user.key == "b":
            b_done.set()

    with trio.fail_after(5):
        async with Lanes.open(handler, **lanes_kwargs()) as lanes:  # type: ignore[arg-type]
            for n in range(3):
                lanes.submit(msg("a", n))
            lanes.submit(msg("b", 0))
            await b_done.wait()  # ... while user b is answered
            assert done == ["b-0"]
            assert lanes.running == 1 and lanes.queued == 2
            release.set()
    assert done == ["b-0", "a-0", "a-1", "a-2"]


async def test_a_lane_runs_one_turn_at_a_time() -> None:
    in_flight = 0
    most = 0

    async def handler(m: Inbound) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await trio.sleep(0.01)
        in_flight -= 1

    with trio.fail_after(5):
        async with Lanes.open(handler, **lanes_kwargs()) as lanes:  # type: ignore[arg-type]
            for n in range(5):
                lanes.submit(msg("a", n))
    assert most == 1


async def test_bounds_answer_overloaded() -> None:
    block = trio.Event()

    async def handler(m: Inbound) -> None:
        await block.wait()

    with trio.fail_after(5):
        async with Lanes.open(
            handler,
            **lanes_kwargs(max_pending=2, max_lanes=2, queue_size=4),  # type: ignore[arg-type]
        ) as lanes:
            lanes.submit(msg("a", 0))
            await trio.testing.wait_all_tasks_blocked()  # a-0 is running, not queued
            lanes.submit(msg("a", 1))
            lanes.submit(msg("a", 2))
            with pytest.raises(Overloaded, match="this user"):
                lanes.submit(msg("a", 3))
            lanes.submit(msg("b", 0))
            with pytest.raises(Overloaded, match="active users"):
                lanes.submit(msg("c", 0))
            lanes.submit(msg("b", 1))
            with pytest.raises(Overloaded, match="queue full"):
                lanes.submit(msg("b", 2))
            block.set()


async def test_idle_lane_goes_away_and_comes_back(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[str] = []

    async def handler(m: Inbound) -> None:
        seen.append(m.message_id)

    async with Lanes.open(handler, **lanes_kwargs(idle_seconds=60)) as lanes:  # type: ignore[arg-type]
        lanes.submit(msg("a", 0))
        await trio.sleep(1)
        assert lanes.active == 1  # still within its idle time
        await trio.sleep(60)
        assert lanes.active == 0
        lanes.submit(msg("a", 1))
        await trio.sleep(1)
        assert seen == ["a-0", "a-1"]


async def test_close_drains_what_is_queued_and_refuses_more() -> None:
    seen: list[str] = []

    async def handler(m: Inbound) -> None:
        await trio.sleep(0.001)
        seen.append(m.message_id)

    with trio.fail_after(5):
        async with Lanes.open(handler, **lanes_kwargs()) as lanes:  # type: ignore[arg-type]
            for n in range(3):
                lanes.submit(msg("a", n))
            lanes.close()
            with pytest.raises(Closed):
                lanes.submit(msg("a", 9))
    assert seen == ["a-0", "a-1", "a-2"]


async def test_a_failing_turn_does_not_end_the_lane() -> None:
    seen: list[str] = []

    async def handler(m: Inbound) -> None:
        seen.append(m.message_id)
        if m.message_id == "a-0":
            raise RuntimeError("bug")

    with trio.fail_after(5):
        async with Lanes.open(handler, **lanes_kwargs()) as lanes:  # type: ignore[arg-type]
            lanes.submit(msg("a", 0))
            lanes.submit(msg("a", 1))
    assert seen == ["a-0", "a-1"]


# -- one user never blocks the others (issue 10) -------------------------------------------------


async def test_a_full_lane_parks_its_user_and_their_later_messages_wait_too() -> None:
    block = trio.Event()

    async def handler(m: Inbound) -> None:
        await block.wait()

    with trio.fail_after(5):
        async with Lanes.open(handler, **lanes_kwargs(max_pending=1)) as lanes:  # type: ignore[arg-type]
            lanes.submit(msg("a", 0))
            await trio.testing.wait_all_tasks_blocked()  # a-0 runs
            lanes.submit(msg("a", 1))  # waits in the lane
            with pytest.raises(Waiting, match="this user"):
                lanes.submit(msg("a", 2))
            assert lanes.parked() == ["a"]
            lanes.submit(msg("b", 0))  # others are not affected
            with pytest.raises(Waiting, match="wait in the inbox"):
                lanes.submit(msg("a", 3))  # behind a-2, even with room: order holds
            assert lanes.parked_messages("a") == 2
            assert isinstance(Waiting(), Overloaded)  # callers that know only Overloaded
            block.set()


async def test_the_resume_loop_hands_parked_messages_over_and_unparks() -> None:
    done: list[str] = []
    block = trio.Event()

    async def handler(m: Inbound) -> None:
        await block.wait()
        done.append(m.message_id)

    with trio.fail_after(5):
        async with Lanes.open(handler, **lanes_kwargs(max_pending=1)) as lanes:  # type: ignore[arg-type]
            lanes.submit(msg("a", 0))
            await trio.testing.wait_all_tasks_blocked()
            lanes.submit(msg("a", 1))
            with pytest.raises(Waiting):
                lanes.submit(msg("a", 2))
            seen = lanes.park_generation()
            with pytest.raises(Waiting):
                lanes.submit(msg("a", 2), resumed=True)  # still full: still waiting
            block.set()
            await lanes.room.wait()  # a turn of a parked user ended: room in the lane
            await trio.testing.wait_all_tasks_blocked()
            lanes.submit(msg("a", 2), resumed=True)
            assert not lanes.unpark("a", seen=seen)  # parked again after `seen`
            assert lanes.unpark("a", seen=lanes.park_generation())
            assert lanes.parked() == []
            lanes.submit(msg("a", 3))
    assert done == ["a-0", "a-1", "a-2", "a-3"]


async def test_a_message_already_queued_is_not_queued_twice() -> None:
    done: list[str] = []

    async def handler(m: Inbound) -> None:
        done.append(m.message_id)

    with trio.fail_after(5):
        async with Lanes.open(handler, **lanes_kwargs()) as lanes:  # type: ignore[arg-type]
            lanes.submit(msg("a", 0))
            lanes.submit(msg("a", 0), resumed=True)  # the resume loop found it in the inbox
            assert lanes.queued == 1
    assert done == ["a-0"]


async def test_over_max_waiting_a_parked_users_next_message_is_refused() -> None:
    block = trio.Event()

    async def handler(m: Inbound) -> None:
        await block.wait()

    with trio.fail_after(5):
        async with Lanes.open(handler, **lanes_kwargs(max_pending=1)) as lanes:  # type: ignore[arg-type]
            lanes.submit(msg("a", 0), max_waiting=2)
            await trio.testing.wait_all_tasks_blocked()
            lanes.submit(msg("a", 1), max_waiting=2)
            for n in (2, 3):
                with pytest.raises(Waiting):
                    lanes.submit(msg("a", n), max_waiting=2)
            with pytest.raises(TooManyWaiting, match="2 of this user's messages wait already"):
                lanes.submit(msg("a", 4), max_waiting=2)
            assert lanes.parked_messages("a") == 2  # the refused one is not counted
            lanes.submit(msg("b", 0), max_waiting=2)  # others are not affected
            block.set()


async def test_a_later_message_waits_behind_a_deferred_one_of_its_user() -> None:
    """Rule 3: a-0 is deferred, so a-1 is held back (reported, not run) until a-0 is
    finished; b is not affected. The handover of the next round brings both, in order."""
    store = MemoryStore()
    messages = [msg("a", 0), msg("a", 1), msg("b", 0)]
    await store.accept(messages)
    handled: list[str] = []
    held: list[str] = []
    deferring = {"a-0"}

    async def handler(m: Inbound) -> Ran:
        handled.append(m.message_id)
        return Ran.DEFERRED if m.message_id in deferring else Ran.DONE

    async def hold(m: Inbound) -> None:
        held.append(m.message_id)

    deferrals = Deferrals(MemoryDeferred(), store, hold)
    with trio.fail_after(5):
        async with Lanes.open(handler, deferrals=deferrals, **lanes_kwargs()) as lanes:
            for m in messages:
                lanes.submit(m)
        assert sorted(handled) == ["a-0", "b-0"] and held == ["a-1"]

        # The next round, with a-0 still deferred: both stay where they are.
        async with Lanes.open(handler, deferrals=deferrals, **lanes_kwargs()) as lanes:
            lanes.submit(msg("a", 0))
            lanes.submit(msg("a", 1))
        assert handled[2:] == ["a-0"] and held == ["a-1", "a-1"]

        # a-0 goes through at last: a-1 runs behind it.
        deferring.clear()
        async with Lanes.open(handler, deferrals=deferrals, **lanes_kwargs()) as lanes:
            lanes.submit(msg("a", 0))
            lanes.submit(msg("a", 1))
        assert handled[3:] == ["a-0", "a-1"] and held == ["a-1", "a-1"]


async def test_a_deferred_message_finished_elsewhere_is_no_longer_in_the_way() -> None:
    store = MemoryStore()
    await store.accept([msg("a", 0), msg("a", 1)])
    handled: list[str] = []

    async def handler(m: Inbound) -> Ran:
        handled.append(m.message_id)
        return Ran.DEFERRED if m.message_id == "a-0" else Ran.DONE

    async def hold(m: Inbound) -> None:
        raise AssertionError("nothing is held back")

    deferrals = Deferrals(MemoryDeferred(), store, hold)
    with trio.fail_after(5):
        async with Lanes.open(handler, deferrals=deferrals, **lanes_kwargs()) as lanes:
            lanes.submit(msg("a", 0))
        # The resume loop gave a-0 up (past the retry window): a-1 runs.
        await store.progress("a-0", Stage.FAILED, outcome="expired")
        async with Lanes.open(handler, deferrals=deferrals, **lanes_kwargs()) as lanes:
            lanes.submit(msg("a", 1))
    assert handled == ["a-0", "a-1"]
