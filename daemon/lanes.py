"""Per-user ordering: one turn at a time per user, in arrival order; users in parallel.

Agentforce answers 423 to a second request on a busy session, and users send bursts, so the
messages of one user must be turned strictly one after another. Each user with work gets a
*lane*: a bounded queue and one task draining it. A lane with nothing to do for
``idle_seconds`` goes away, so memory follows the number of active users, not of all users.

Bounds, each answered with ``Overloaded`` (the web layer turns it into 503, and Meta retries):
``max_lanes`` lanes at once, ``queue_size`` messages waiting across all lanes.
``max_concurrent_turns`` caps turns running at once.

One user never blocks the others: a message that finds its user's lane full
(``max_pending``) is answered ``Waiting`` (an ``Overloaded`` for that user only). It is
already in the durable inbox, so it simply stays there: the user is *parked*, every later
message of theirs waits in the inbox too (so their order holds), and the resume loop
(daemon/resume.py) hands them over oldest first as the lane drains, then unparks the user.
The web layer answers 200 for the batch. A lane of a parked user that finishes a turn sets
``room`` so the resume loop need not wait for its next round.

The lanes run in a nursery the daemon owns (never the web framework's: quart-trio cancels its
background tasks at shutdown, reference/trio-stack.md §1). ``close()`` stops intake; every
lane then finishes what it holds and ends, which is the drain.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from daemon.model import Inbound

log = logging.getLogger(__name__)

Handler = Callable[[Inbound], Awaitable[None]]


class Overloaded(Exception):
    """No room for this message now; the sender should retry later."""


class Waiting(Overloaded):
    """This user's lane is full (or earlier messages of theirs wait): the message stays in the
    durable inbox, for the resume loop to hand over in order. Other users are not affected."""


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
    ) -> None:
        self._nursery = nursery
        self._handler = handler
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
            )
            try:
                yield lanes
            finally:
                lanes.close()

    # -- intake ---------------------------------------------------------------------------

    def submit(self, message: Inbound, *, resumed: bool = False) -> None:
        """Queue ``message`` on its user's lane, without blocking.

        Raises Waiting when the user's lane is full or the user is parked (unless
        ``resumed``: the resume loop handing parked messages over, oldest first), Overloaded
        when a global bound is reached and Closed while draining. Synchronous, so the caller
        learns at once whether the message was taken. A message already queued or running is
        not queued twice (the resume loop may find it in the inbox before the web layer's
        submit). Dedupe is not done here: the durable inbox records ids before the webhook is
        answered (daemon/state/sqlite.py).
        """
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
                        await self._handler(message)
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
