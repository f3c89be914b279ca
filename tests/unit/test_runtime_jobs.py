"""The one loop of the background jobs (daemon/runtime/jobs.py), on trio's MockClock."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from daemon.runtime.jobs import every, once


class Rounds:
    """A job that notes when each round ran, failing the rounds it is told to."""

    def __init__(self, *, failing: frozenset[int] = frozenset(), hang: bool = False) -> None:
        self.started: list[float] = []
        self.finished: list[float] = []
        self._failing = failing
        self._hang = hang

    async def __call__(self) -> None:
        self.started.append(trio.current_time())
        if len(self.started) in self._failing:
            raise RuntimeError(f"round {len(self.started)} broke")
        if self._hang:
            await trio.sleep_forever()
        self.finished.append(trio.current_time())


async def test_every_runs_now_then_every_period_and_outlives_a_failed_round(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    job = Rounds(failing=frozenset({2}))
    with caplog.at_level(logging.ERROR, logger="wa_agentd"), trio.move_on_after(35):
        await every(10.0, job, "counting things")
    assert job.started == [0.0, 10.0, 20.0, 30.0]
    assert job.finished == [0.0, 20.0, 30.0]
    [failed] = caplog.records
    assert failed.getMessage() == "counting things failed" and failed.exc_info is not None


async def test_every_can_wait_a_period_before_the_first_round(
    autojump_clock: trio.testing.MockClock,
) -> None:
    job = Rounds()
    with trio.move_on_after(25):
        await every(10.0, job, "reaping", wait_first=True)
    assert job.started == [10.0, 20.0]


async def test_a_round_that_hangs_is_given_up_after_its_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    job = Rounds(hang=True)
    with trio.move_on_after(25):
        await every(10.0, job, "reaping", limit=3.0)
    # Each round is cut at 3 s, then the period starts: 0, 13, ...
    assert job.started == [0.0, 13.0]
    assert job.finished == []


async def test_once_logs_instead_of_raising(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="wa_agentd"):
        await once(Rounds(failing=frozenset({1})), "warming the caches")
    assert caplog.messages == ["warming the caches failed"]


async def test_cancellation_is_not_a_failed_round(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    job = Rounds(hang=True)
    with caplog.at_level(logging.ERROR, logger="wa_agentd"), trio.move_on_after(5):
        await every(10.0, job, "reaping")
    assert job.started == [0.0] and caplog.records == []
