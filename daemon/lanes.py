"""Per-user ordering, the one place that decides it: one turn at a time per user, in arrival
order; users in parallel.

Agentforce answers 423 to a second request on a busy session, and users send bursts, so the
messages of one user must be turned strictly one after another. Each user with work gets a
*lane*: a bounded queue and one task draining it. A lane with nothing to do for
``idle_seconds`` goes away, so memory follows the number of active users, not of all users.

The rules of a user's order, all kept here:

1. **Arrival order.** A user's messages run one at a time, in the order they were
   submitted (the web layer submits in the order the inbox accepted them).
2. **Parked users.** A message that finds its user's lane full (``max_pending``) is
   answered ``Waiting`` (an ``Overloaded`` for that user only). It is already in the
   durable inbox, so it simply stays there: the user is *parked*, every later message of
   theirs waits in the inbox too (so their order holds), and the resume loop
   (daemon/resume.py) hands them over oldest first as the lane drains (``Handover``),
   then unparks the user. A lane of a parked user that finishes a turn sets ``room`` so the
   resume loop need not wait for its next round. More than ``max_waiting`` of one user's
   messages waiting: the next is refused (``TooManyWaiting``; the per-user rate limit keeps
   a flood far below it).
3. **Deferred turns.** A turn that could deliver nothing because WhatsApp said "not now"
   is *deferred* (its row stays open, and the resume loop tries it again). A later message
   of the same user then waits behind it (``Deferrals``): it is not run, only reported, and
   joins the queue of deferred messages, so the answers keep the order of the questions.

Bounds, each answered with ``Overloaded`` (the web layer turns it into 503, and Meta retries):
``max_lanes`` lanes at once, ``queue_size`` messages waiting across all lanes.
``max_concurrent_turns`` caps turns running at once. One user never blocks the others.

The lanes run in a nursery the daemon owns (never the web framework's: quart-trio cancels its
background tasks at shutdown, reference/trio-stack.md §1). ``close()`` stops intake; every
lane then finishes what it holds and ends, which is the drain.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from daemon.model import Inbound
from daemon.state.base import DeferredMessages, Journal

log = logging.getLogger(__name__)


class Ran(enum.Enum):
    """What a turn's run means for its user's later messages."""

    DONE = "done"  # finished (answered, apologised, given up, ...): the next one may run
    DEFERRED = "deferred"  # tried again later: the user's later messages wait behind it


# Runs one message's turn; None counts as DONE.
Handler = Callable[[Inbound], Awaitable[Ran | None]]


class Overloaded(Exception):
    """No room for this message now; the sender should retry later."""


class Waiting(Overloaded):
    """This user's lane is full (or earlier messages of theirs wait): the message stays in the
    durable inbox, for the resume loop to hand over in order. Other users are not affected."""


class TooManyWaiting(Exception):
    """This user has ``max_waiting`` messages waiting in the inbox already: refused."""


class Closed(Exception):
    """The lanes are draining and take no new work."""


@dataclass
class _Parked:
    generation: int  # ``Lanes.park_generation()`` when the user was last parked
    messages: int = 0  # messages parked since (an upper bound: for the per-user bound)


@dataclass
class _Lane:
    send: trio.MemorySendChannel[Inbound]
    receive: trio.MemoryReceiveChannel[Inbound]


class Lanes:
    def __init__(
        self,
        nursery: trio.Nursery,
        handler: Handler,
        *,
        max_lanes: int,
        max_pending: int,
        queue_size: int,
        idle_seconds: float,
        max_concurrent_turns: int,
        deferrals: Deferrals | None = None,
    ) -> None:
        self._nursery = nursery
        self._handler = handler
        self._deferrals = deferrals
        self._max_lanes = max_lanes
        self._max_pending = max_pending
        self._queue_size = queue_size
        self._idle = idle_seconds
        self._limiter = trio.CapacityLimiter(max_concurrent_turns)
        self._lanes: dict[str, _Lane] = {}
        self._held: set[str] = set()  # message ids queued or running (bounded like them)
        # Users with messages waiting in the inbox, not in their lane (at most max_lanes).
        self._parked: dict[str, _Parked] = {}
        self._generation = 0
        self.room = trio.Event()  # a parked user's lane finished a turn: resume may go on
        self._queued = 0  # accepted, not yet started, across all lanes
        self._running = 0
        self._closed = False
        self._drained = trio.Event()  # set once closed and every lane has ended

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        handler: Handler,
        *,
        max_lanes: int,
        max_pending: int,
        queue_size: int,
        idle_seconds: float,
        max_concurrent_turns: int,
        deferrals: Deferrals | None = None,
    ) -> AsyncIterator[Lanes]:
        """Lanes whose tasks live in a nursery of their own; leaving the block drains them."""
        async with trio.open_nursery() as nursery:
            lanes = cls(
                nursery,
                handler,
                max_lanes=max_lanes,
                max_pending=max_pending,
                queue_size=queue_size,
                idle_seconds=idle_seconds,
                max_concurrent_turns=max_concurrent_turns,
                deferrals=deferrals,
            )
            try:
                yield lanes
            finally:
                lanes.close()

    # -- intake ---------------------------------------------------------------------------

    def submit(
        self, message: Inbound, *, resumed: bool = False, max_waiting: int | None = None
    ) -> None:
        """Queue ``message`` on its user's lane, without blocking.

        Raises TooManyWaiting when ``max_waiting`` of the user's messages wait already,
        Waiting when the user's lane is full or the user is parked (unless ``resumed``: the
        resume loop handing parked messages over, oldest first), Overloaded when a global
        bound is reached and Closed while draining. Synchronous, so the caller learns at once
        whether the message was taken. A message already queued or running is not queued
        twice (the resume loop may find it in the inbox before the web layer's submit).
        Dedupe is not done here: the durable inbox records ids before the webhook is
        answered (daemon/state/sqlite/).
        """
        if max_waiting is not None and self.parked_messages(message.user.key) >= max_waiting:
            raise TooManyWaiting(f"{max_waiting} of this user's messages wait already")
        if self._closed:
            raise Closed()
        if message.message_id in self._held:
            return
        key = message.user.key
        if not resumed and key in self._parked:
            self._park(key)
            raise Waiting("earlier messages of this user wait in the inbox")
        if self._queued >= self._queue_size:
            raise Overloaded("queue full")
        lane = self._lanes.get(key)
        if lane is None:
            if len(self._lanes) >= self._max_lanes:
                raise Overloaded("too many active users")
            send, receive = trio.open_memory_channel[Inbound](self._max_pending)
            lane = self._lanes[key] = _Lane(send, receive)
            self._nursery.start_soon(self._drain, key, lane)
        try:
            lane.send.send_nowait(message)
        except trio.WouldBlock:
            self._park(key)
            raise Waiting("too many messages waiting for this user") from None
        self._queued += 1
        self._held.add(message.message_id)

    # -- parked users -----------------------------------------------------------------------

    def _park(self, key: str) -> None:
        parked = self._parked.get(key)
        if parked is None:
            if len(self._parked) >= self._max_lanes:
                raise Overloaded("too many users waiting")
            parked = self._parked[key] = _Parked(self._generation)
        self._generation += 1
        parked.generation = self._generation
        parked.messages += 1

    def handover(self) -> Handover:
        """A round of the resume loop; make it before reading the inbox."""
        return Handover(self)

    def park_generation(self) -> int:
        """A counter that grows with every message parked: the resume loop reads it before
        it reads the inbox, so it can tell parks it has seen from later ones."""
        return self._generation

    def parked(self) -> list[str]:
        """The users whose messages wait in the inbox."""
        return list(self._parked)

    def parked_messages(self, key: str) -> int:
        """How many of this user's messages were parked since they were last unparked."""
        parked = self._parked.get(key)
        return 0 if parked is None else parked.messages

    def unpark(self, key: str, *, seen: int) -> bool:
        """The resume loop handed over every message of ``key`` it found in the inbox after
        reading ``seen = park_generation()``: unpark the user, unless one was parked after
        that (it may not have been in the inbox read). Returns whether the user was unparked."""
        parked = self._parked.get(key)
        if parked is None or parked.generation > seen:
            return False
        del self._parked[key]
        return True

    def close(self) -> None:
        """Take no new work; lanes finish what they hold, then end."""
        self._closed = True
        for lane in self._lanes.values():
            lane.send.close()
        self._check_drained()

    async def drained(self) -> None:
        """Return once closed and every lane has finished its work."""
        await self._drained.wait()

    def cancel(self) -> None:
        """Abandon the turns still running (the drain deadline passed)."""
        self._nursery.cancel_scope.cancel()

    def _check_drained(self) -> None:
        if self._closed and not self._lanes:
            self._drained.set()

    # -- state, for health and metrics ----------------------------------------------------

    def holds(self, message_id: str) -> bool:
        """Whether the message is queued or its turn is running now."""
        return message_id in self._held

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def active(self) -> int:
        return len(self._lanes)

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def running(self) -> int:
        return self._running

    # -- the lane task ---------------------------------------------------------------------

    async def _drain(self, key: str, lane: _Lane) -> None:
        try:
            while True:
                message = await self._next(lane)
                if message is None:
                    return
                try:
                    try:
                        await self._limiter.acquire()
                    finally:
                        self._queued -= 1  # started (or cancelled while waiting for a slot)
                    self._running += 1
                    try:
                        if self._deferrals is None:
                            await self._handler(message)
                        else:
                            await self._deferrals.run(message, self._handler)
                    except Exception:  # one broken turn must not end the lane or the daemon
                        log.exception("turn handler failed")
                    finally:
                        self._running -= 1
                        self._limiter.release()
                finally:
                    self._held.discard(message.message_id)
                    if key in self._parked:  # room in this lane: the resume loop may go on
                        self.room.set()
        finally:
            # No checkpoint between the last receive and this removal, so a message can't
            # slip into a lane that is going away: the next submit makes a new lane.
            if self._lanes.get(key) is lane:
                del self._lanes[key]
            lane.send.close()
            lane.receive.close()
            self._check_drained()

    async def _next(self, lane: _Lane) -> Inbound | None:
        """The next message, or None when the lane was idle too long or is closed and empty."""
        with trio.move_on_after(self._idle):
            try:
                return await lane.receive.receive()
            except trio.EndOfChannel:
                return None
        try:
            return lane.receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return None


class Handover:
    """One round of the resume loop handing the inbox's open turns to the lanes, oldest
    first (rule 2). Made before the inbox is read (``Lanes.handover``): a user parked after
    that may have messages the read missed, so only the users parked before stay unparked.
    A user whose lane fills up again during the round keeps the rest of their messages in
    the inbox for the next round; other users go on."""

    def __init__(self, lanes: Lanes) -> None:
        self._lanes = lanes
        self._seen = lanes.park_generation()
        self._full: set[str] = set()

    def skips(self, message: Inbound) -> bool:
        """Queued or running already, or behind a message of its user that did not fit."""
        return self._lanes.holds(message.message_id) or message.user.key in self._full

    def submit(self, message: Inbound) -> bool:
        """Hand ``message`` over; False when its user's lane is full again (the rest of that
        user's messages wait). Overloaded and Closed end the round: they propagate."""
        try:
            self._lanes.submit(message, resumed=True)
        except Waiting:
            self._full.add(message.user.key)
            return False
        return True

    def finish(self) -> None:
        """The whole inbox went through: unpark the users whose messages all went over."""
        for user in self._lanes.parked():
            if user not in self._full:
                self._lanes.unpark(user, seen=self._seen)


class Deferrals:
    """Rule 3: per user, the messages whose turn was deferred, oldest first (``deferred``:
    a bounded map on one host, Redis for several); a later message of the user waits behind
    them until the journal says they are finished (or given up by the resume loop). A
    message held back is reported by ``held`` (outcome ``deferred``) and joins the queue,
    so the resume loop brings it again after the one it waits for."""

    def __init__(
        self,
        deferred: DeferredMessages,
        journal: Journal,
        held: Callable[[Inbound], Awaitable[object]],
    ) -> None:
        self._deferred = deferred
        self._journal = journal
        self._held = held

    async def run(self, message: Inbound, handler: Handler) -> None:
        if await self._behind_deferred(message):
            await self._held(message)
            ran: Ran | None = Ran.DEFERRED
        else:
            ran = await handler(message)
        if ran is Ran.DEFERRED:
            await self._deferred.add(message.user.key, message.message_id)
        else:
            await self._deferred.discard(message.user.key, message.message_id)

    async def _behind_deferred(self, message: Inbound) -> bool:
        user = message.user.key
        for earlier in await self._deferred.ids(user):
            if earlier == message.message_id:
                return False
            record = await self._journal.get(earlier)
            if record is not None and not record.finished:
                return True
            await self._deferred.discard(user, earlier)
        return False
