"""The official Python clients are synchronous (httpx.Client, requests): their calls run in
a worker thread while the simulators serve on trio.

A blocked worker thread cannot be cancelled, so ``in_thread`` abandons it when its
``fail_after`` fires (``abandon_on_cancel``): the test fails in time instead of hanging on
a client that waits for an answer that never comes. Each client is also given its own
HTTP timeout (twilio-python's default is none), so the abandoned thread ends soon after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import trio

E = TypeVar("E", bound=BaseException)


async def in_thread(fn: Callable[[], Any], *, seconds: float = 30) -> Any:
    """``fn()`` in a worker thread, bounded in time (the thread abandoned when it is up)."""
    with trio.fail_after(seconds):
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


async def raised(kind: type[E], fn: Callable[[], Any]) -> E:
    """The ``kind`` error ``fn()`` raises, caught in the worker thread itself: some clients'
    errors are frozen dataclasses (pywa), which trio cannot re-raise across threads (it
    sets __traceback__). A body that streams (text-to-speech) is read to the end, where
    such clients raise."""

    def call() -> E | None:
        try:
            result = fn()
            if isinstance(result, Iterable) and not isinstance(result, bytes | str | dict):
                for _ in result:
                    pass
        except kind as exc:
            return exc
        return None

    error = await in_thread(call)
    assert error is not None, f"the client raised no {kind.__name__}"
    return error
