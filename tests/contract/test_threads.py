"""tests/contract/threads.py: a client call blocked in its worker thread does not hold up
the test past its ``fail_after``."""

from __future__ import annotations

import threading

import pytest
import trio

from tests.contract.threads import in_thread


async def test_a_blocked_client_call_is_abandoned_when_its_time_is_up(
    autojump_clock: trio.abc.Clock,
) -> None:
    release = threading.Event()
    # Only a safety valve: were the thread not abandoned, the call would return once this
    # fires (30 s of real time), too late, and the assertions below would say so.
    valve = threading.Timer(30, release.set)
    valve.start()
    try:
        with pytest.raises(trio.TooSlowError):
            await in_thread(release.wait, seconds=5)  # the mock clock jumps the 5 s
        assert not release.is_set()  # the deadline fired while the thread still blocked
    finally:
        valve.cancel()
        release.set()  # the abandoned thread ends
