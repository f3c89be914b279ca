"""Turns the durable inbox holds and nobody is running: they are run again.

Two kinds end up there:

- turns the last run of the daemon accepted and did not finish (a crash, kill -9, a drain
  that ran out of time): resumed at start-up, where they stopped;
- turns *deferred* because nothing could be delivered and WhatsApp said "not now" (its
  circuit open, "slow down" answers that outlasted the retries, a refused token): their row
  stays open, and they are tried again every ``every`` seconds until delivery works.

A turn older than ``window`` is given up without a word: WhatsApp accepts free-form messages
only within 24 hours of the user's last message (reference/whatsapp.md §5), so past that
nothing can reach the user anyway. A message whose turn is queued or running is left alone.

A deferred turn may be answered after a newer message of the same user that came in once
WhatsApp was back; per-user order holds among the turns that run, not across a deferral.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

from daemon.lanes import Closed, Lanes, Overloaded
from daemon.state.store import Stage, Store

log = logging.getLogger(__name__)


async def resume_unfinished(
    store: Store, lanes: Lanes, *, window: float, wall_clock: Callable[[], float] = time.time
) -> int:
    """Queue every open turn that is not queued or running; returns how many were queued."""
    now = wall_clock()
    queued = 0
    for record in await store.unfinished():
        message_id = record.inbound.message_id
        if lanes.holds(message_id):
            continue
        if now - record.received_at > window:
            log.error(
                "message %s given up unanswered: nothing could be delivered for %.0f s",
                message_id,
                now - record.received_at,
            )
            await store.progress(message_id, Stage.FAILED, outcome="expired")
            continue
        try:
            lanes.submit(record.inbound)
        except (Overloaded, Closed) as exc:  # the rest wait for the next round
            log.info("resuming unfinished turns paused: %s", exc or type(exc).__name__)
            break
        queued += 1
    if queued:
        log.info("resuming %d unfinished turns", queued)
    return queued


async def keep_resuming(store: Store, lanes: Lanes, *, every: float, window: float) -> None:
    """``resume_unfinished`` every ``every`` seconds, for as long as the daemon serves."""
    while not lanes.closed:
        await trio.sleep(every)
        try:
            await resume_unfinished(store, lanes, window=window)
        except Exception:  # the next round may do better; the daemon serves regardless
            log.exception("resuming unfinished turns failed")


async def count_deferred(store: Store, lanes: Lanes) -> int:
    """Open turns no lane holds: deferred (nothing could be delivered now; ``keep_resuming``
    tries them again each round) or left unfinished by the last run, waiting for a round."""
    return sum(not lanes.holds(r.inbound.message_id) for r in await store.unfinished())
