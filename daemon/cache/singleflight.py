"""Single-flight for trio: many concurrent callers with one key cause one load.

cachetools is synchronous, and ``@cached`` on an ``async def`` caches the coroutine object, not
its result (reference/trio-stack.md §3). This is the small trio-native piece that sits in front
of a cache: the first caller of a key (the *leader*) runs the load; callers that arrive while it
runs (the *followers*) wait on a ``trio.Event`` and get the leader's value.

Where the turn uses it — only for loads whose result is the same whoever asks:

- text-to-speech of one text with one voice (``AudioCache.get_or_render``),
- the upload of one audio file to the business number (``MetaChannel.send_voice``, key: the
  audio key),
- the FAQ answers an operator rule vouches for (``answers.CachedAgent``); a follower takes
  the leader's reply only if the response cache accepted it as the answer for everybody
  (``ResponseCache.holds``), else it asks the agent itself.

Speech-to-text of one voice note is cached by its sha256 but not coalesced: forwarded notes
arrive seconds apart, not at the same instant.

Never for the agent otherwise: the agent answers in the asking user's own session, and an
answer is only shared after several users got it (``cache.response``). Coalescing agent calls
across users would hand the leader's, possibly personal, answer to everyone who asked at the
same moment.

Design: the load runs **in the leader's own task**, inside the leader's cancel scope.

- Failure: the leader's error is raised to the leader only and is never cached; followers wake
  up and retry, and the first of them to run becomes the new leader. An error can belong to the
  leader's call (its 429, its timeout) and says nothing certain about the next attempt. When an
  upstream is really down, each retry fails fast on the circuit breaker, and every follower's
  own deadline bounds how long it keeps trying.
- Cancellation: a cancelled leader (its turn hit its deadline, the user's lane was stopped)
  cancels its load; a follower takes over. A cancelled follower just leaves: nothing of it is
  registered anywhere.

The alternative (reference/anchors.md §B.6) runs the load in a long-lived service nursery, so
it outlives a leader that goes away and no work is thrown away. It was not chosen: a task that
outlives its caller needs a nursery owned and drained at shutdown, has nobody to report its
error to, keeps spending an upstream's quota and concurrency after every caller has given up,
and makes "which cancel scope bounds this call" a question. Here every upstream call stays
inside exactly one turn's deadline (structured concurrency), there is nothing to own or drain,
and the price — a load started again after a rare cancelled leader — is small, because followers
asked at about the same time and share about the same deadline.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable, MutableMapping
from typing import Generic, TypeVar, cast

import trio

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Flight(Generic[V]):
    """One load in progress. ``ok`` tells followers whether ``value`` is meaningful."""

    __slots__ = ("done", "ok", "value")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.ok = False
        self.value: V | None = None


class SingleFlight(Generic[K, V]):
    """Coalesce concurrent loads of one key into one call. Touch only from one trio run."""

    def __init__(self) -> None:
        self._flights: dict[K, _Flight[V]] = {}
        self.loads = 0  # loads started (leaders), for metrics and tests
        self.shared = 0  # callers served by someone else's load

    def __len__(self) -> int:
        """Loads in progress now."""
        return len(self._flights)

    async def run(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """Return ``await load()``, running at most one ``load`` per key at a time."""
        while True:
            flight = self._flights.get(key)
            if flight is None:
                return await self._lead(key, load)
            await flight.done.wait()  # cancelled follower: nothing to undo
            if flight.ok:
                self.shared += 1
                return cast(V, flight.value)  # ok: the leader set it
            # The leader failed or was cancelled: try again, maybe as the new leader.

    async def _lead(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        flight: _Flight[V] = _Flight()
        self._flights[key] = flight
        self.loads += 1
        try:
            value = await load()
            flight.value, flight.ok = value, True
            return value
        finally:
            # On success, error and Cancelled alike: forget the key (an error is never
            # cached) and wake the followers, who take the value or retry.
            del self._flights[key]
            flight.done.set()

    async def get_or_load(
        self,
        cache: MutableMapping[K, V],
        key: K,
        load: Callable[[], Awaitable[V]],
        *,
        store: Callable[[V], bool] = lambda v: True,
    ) -> V:
        """The cached value, else one coalesced ``load()`` whose result is cached if ``store``.

        ``cache`` is a cachetools cache (or any mapping). A value larger than a
        ``getsizeof`` cache's whole budget makes cachetools raise ValueError: it is then
        returned without being cached.
        """
        try:
            return cache[key]
        except KeyError:
            pass

        async def load_and_store() -> V:
            # A retrying follower may find the value a previous leader stored.
            try:
                return cache[key]
            except KeyError:
                pass
            value = await load()
            if store(value):
                try:
                    cache[key] = value
                except ValueError:
                    log.debug("value too large to cache, returned uncached")
            return value

        return await self.run(key, load_and_store)
