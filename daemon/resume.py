"""Turns the durable inbox holds and nobody is running: they are run again.

Three kinds end up there:

- turns the last run of the daemon accepted and did not finish (a crash, kill -9, a drain
  that ran out of time): resumed at start-up, where they stopped;
- turns *deferred* because nothing could be delivered and WhatsApp said "not now" (its
  circuit open, "slow down" answers that outlasted the retries, a refused token): their row
  stays open, and they are tried again every ``every`` seconds until delivery works;
- messages *waiting* because their user's lane was full (daemon/lanes.py, "parked"): handed
  over oldest first as the lane drains, the user's later messages behind them.

A turn older than ``window`` is given up without a word: WhatsApp accepts free-form messages
only within 24 hours of the user's last message (reference/whatsapp.md §5), so past that
nothing can reach the user anyway. A message whose turn is queued or running is left alone.

Which of them runs when, for one user, is daemon/lanes.py's to decide (its rules 2 and 3):
a round hands a user's messages over oldest first, and a waiting or deferred message keeps
its place ahead of its user's newer ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

from daemon.lanes import Closed, Lanes, Overloaded
from daemon.observe.logs import message_tag
from daemon.state.base import Backlog, Stage

log = logging.getLogger(__name__)


async def resume_unfinished(
    store: Backlog, lanes: Lanes, *, window: float, wall_clock: Callable[[], float] = time.time
) -> int:
    """Queue every open turn that is not queued or running; returns how many were queued."""
    handover = lanes.handover()  # before the inbox is read: see lanes.Handover
    now = wall_clock()
    queued = 0
    for record in await store.unfinished():
        message = record.inbound
        if handover.skips(message):
            continue
        if now - record.received_at > window:
            log.error(
                "message %s given up unanswered: nothing could be delivered for %.0f s",
                message_tag(message.message_id),
                now - record.received_at,
            )
            await store.progress(message.message_id, Stage.FAILED, outcome="expired")
            continue
        try:
            if not handover.submit(message):
                continue  # this user's lane is full again: their later messages wait
        except (Overloaded, Closed) as exc:  # the rest wait for the next round
            log.info("resuming unfinished turns paused: %s", exc or type(exc).__name__)
            return queued
        queued += 1
    handover.finish()  # every message these users had in the inbox is in their lane now
    if queued:
        log.info("resuming %d unfinished turns", queued)
    return queued


# A parked user's lane finishing a turn starts a round early, at most this often: a round
# reads every open row of the inbox.
MIN_ROUND_GAP = 1.0


async def keep_resuming(store: Backlog, lanes: Lanes, *, every: float, window: float) -> None:
    """``resume_unfinished`` every ``every`` seconds, and soon after a parked user's lane has
    room again, for as long as the daemon serves."""
    while not lanes.closed:
        with trio.move_on_after(every):
            await lanes.room.wait()
            await trio.sleep(MIN_ROUND_GAP)
        lanes.room = trio.Event()  # re-armed before the round: a turn ending now counts
        try:
            await resume_unfinished(store, lanes, window=window)
        except Exception:  # the next round may do better; the daemon serves regardless
            log.exception("resuming unfinished turns failed")


async def count_deferred(store: Backlog, lanes: Lanes) -> int:
    """Open turns no lane holds: deferred (nothing could be delivered now; ``keep_resuming``
    tries them again each round) or left unfinished by the last run, waiting for a round.
    Not the messages of users whose lane is full (parked): they are a queue, not trouble,
    and ``wa_agentd_users_waiting`` counts them."""
    parked = set(lanes.parked())
    return sum(
        not lanes.holds(r.inbound.message_id) and r.inbound.user.key not in parked
        for r in await store.unfinished()
    )
