"""The state in this process's memory: the SQLite store's contract, nothing written to disk.

``[state] backend = "memory"``: for tests and throw-away runs (a demo, a benchmark). A
restart forgets everything — the inbox with its turns in flight, the dedupe memory, the
sessions — so it is never the production default. ``MemoryStore`` keeps the promises of
``SqliteStore`` otherwise, down to its edge cases (tests/unit/test_state_contract.py runs
the same tests against both): stages only move forward, ``forget`` takes back only turns
nobody has started, ``attempt`` raises ``KeyError`` for an unknown message, ``prune``
bounds the finished rows by ``dedupe_ttl`` and ``max_ids``.

Also the one-host forms of the per-user maps whose callers await them: the deferred
messages of daemon/lanes.py (``MemoryDeferred``, bounded LRU), and the response cache with
its pending context for daemon/answers.py (``MemoryResponses``, ``MemoryPending``:
daemon/cache/response.py's classes behind the async protocols, so that the same
``CachedAgent`` runs on Redis's). None of these methods waits for anything, so none is a
checkpoint: callers keep the scheduling they had with the synchronous classes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from cachetools import LRUCache

from daemon.cache.response import CachedAnswer, PendingContext, ResponseCache
from daemon.model import AgentReply, Inbound, Transcript
from daemon.state.base import RANK, Stage, StoreClosed, TurnRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Session:
    session_id: str
    next_sequence: int
    last_used: float


class MemoryStore:
    """Inbox, journal, backlog and sessions in dicts (``Store`` of state/base.py)."""

    def __init__(
        self,
        *,
        dedupe_ttl: float = 7 * 86400,
        max_ids: int = 1_000_000,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if dedupe_ttl <= 0 or max_ids < 1:
            raise ValueError("dedupe_ttl must be > 0 and max_ids >= 1")
        self.dedupe_ttl = dedupe_ttl
        self.max_ids = max_ids
        self._wall_clock = wall_clock
        # Insertion order is arrival order ("oldest first"): a forgotten id that comes again
        # goes to the end, as a new row does in SQLite.
        self._turns: dict[str, TurnRecord] = {}
        self._sessions: dict[str, _Session] = {}
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    async def probe(self) -> None:
        self._check()

    def _check(self) -> None:
        if self._closed:
            raise StoreClosed("the state store is closed")

    # -- inbox -------------------------------------------------------------------------------

    async def accept(self, messages: Sequence[Inbound]) -> list[Inbound]:
        self._check()
        now = self._wall_clock()
        new: list[Inbound] = []
        for message in messages:
            if message.message_id not in self._turns:
                self._turns[message.message_id] = TurnRecord(
                    message, Stage.RECEIVED, received_at=now
                )
                new.append(message)
        return new

    async def forget(self, message_ids: Sequence[str]) -> int:
        self._check()
        removed = 0
        for message_id in message_ids:
            record = self._turns.get(message_id)
            if record is not None and record.stage is Stage.RECEIVED:
                del self._turns[message_id]
                removed += 1
        return removed

    async def finish_unanswered(self, message_ids: Sequence[str], *, outcome: str) -> int:
        self._check()
        finished = 0
        for message_id in message_ids:
            record = self._turns.get(message_id)
            if record is not None and record.stage is Stage.RECEIVED:
                self._turns[message_id] = replace(record, stage=Stage.DONE, outcome=outcome)
                finished += 1
        return finished

    # -- journal -----------------------------------------------------------------------------

    async def progress(
        self,
        message_id: str,
        stage: Stage | str,
        *,
        transcript: Transcript | None = None,
        answer: str | None = None,
        outcome: str | None = None,
        text_ids: Sequence[str] | None = None,
        voice_id: str | None = None,
    ) -> Stage | None:
        target = Stage(stage)  # ValueError on an unknown name, as in SQLite
        self._check()
        record = self._turns.get(message_id)
        if record is None:
            return None
        if RANK[target] > RANK[record.stage]:
            record = replace(record, stage=target)
        if transcript is not None:
            record = replace(
                record, transcript=transcript.text, transcript_language=transcript.language
            )
        if answer is not None:
            record = replace(record, answer=answer)
        if outcome is not None:
            record = replace(record, outcome=outcome)
        if text_ids is not None:
            record = replace(record, text_ids=tuple(text_ids))
        if voice_id is not None:
            record = replace(record, voice_id=voice_id)
        self._turns[message_id] = record
        return record.stage

    async def get(self, message_id: str) -> TurnRecord | None:
        self._check()
        return self._turns.get(message_id)

    async def attempt(self, message_id: str) -> int:
        self._check()
        record = self._turns.get(message_id)
        if record is None:
            raise KeyError(message_id)
        record = self._turns[message_id] = replace(record, attempts=record.attempts + 1)
        return record.attempts

    async def release(self, message_id: str) -> None:
        self._check()
        record = self._turns.get(message_id)
        if record is not None:
            self._turns[message_id] = replace(record, attempts=max(record.attempts - 1, 0))

    # -- backlog -----------------------------------------------------------------------------

    async def unfinished(self) -> list[TurnRecord]:
        self._check()
        return [r for r in self._turns.values() if not r.finished]

    async def prune(self, now: float | None = None) -> int:
        self._check()
        cutoff = (self._wall_clock() if now is None else now) - self.dedupe_ttl
        old = [m for m, r in self._turns.items() if r.finished and r.received_at < cutoff]
        for message_id in old:
            del self._turns[message_id]
        over = len(self._turns) - self.max_ids
        oldest_finished = [m for m, r in self._turns.items() if r.finished][: max(over, 0)]
        for message_id in oldest_finished:
            del self._turns[message_id]
        over -= len(oldest_finished)
        if over > 0:
            log.warning("state store: %d open turns above max_ids %d", over, self.max_ids)
        return len(old) + len(oldest_finished)

    async def counts(self) -> dict[str, int]:
        self._check()
        counts = {stage.value: 0 for stage in Stage}
        for record in self._turns.values():
            counts[record.stage.value] += 1
        return counts

    # -- sessions ----------------------------------------------------------------------------

    async def load_sessions(self) -> dict[str, tuple[str, int, float]]:
        self._check()
        ordered = sorted(self._sessions.items(), key=lambda item: (item[1].last_used, item[0]))
        return {u: (s.session_id, s.next_sequence, s.last_used) for u, s in ordered}

    async def save_session(
        self, user: str, session_id: str, next_sequence: int, last_used: float
    ) -> None:
        self._check()
        self._sessions[user] = _Session(session_id, next_sequence, last_used)

    async def drop_idle_sessions(self, idle_since: float) -> int:
        self._check()
        idle = [u for u, s in self._sessions.items() if s.last_used < idle_since]
        for user in idle:
            del self._sessions[user]
        return len(idle)

    async def drop_session(self, user: str, session_id: str | None = None) -> bool:
        self._check()
        session = self._sessions.get(user)
        if session is None or session_id not in (None, session.session_id):
            return False
        del self._sessions[user]
        return True


class MemoryDeferred:
    """``DeferredMessages`` of one host: per user, a short list, for at most ``max_users``
    users (the least recently seen go first; their deferred turns still resume in order,
    oldest first, from the inbox — only the wait of a later message behind them is lost)."""

    def __init__(self, *, max_users: int = 10_000) -> None:
        self._ids: LRUCache[str, list[str]] = LRUCache(maxsize=max_users)

    async def ids(self, user: str) -> list[str]:
        return list(self._ids.get(user, ()))

    async def add(self, user: str, message_id: str) -> None:
        ids = self._ids.get(user, [])
        if message_id not in ids:
            ids.append(message_id)
        self._ids[user] = ids

    async def discard(self, user: str, message_id: str) -> None:
        ids = self._ids.get(user)
        if ids is not None and message_id in ids:
            ids.remove(message_id)
        if not ids:
            self._ids.pop(user, None)


class MemoryResponses:
    """The response cache of one host (``ResponseCache``) as the async ``Responses``."""

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache

    async def lookup(self, key: str, *, count_miss: bool = True) -> CachedAnswer | None:
        return self.cache.lookup(key, count_miss=count_miss)

    async def holds(self, key: str, reply: AgentReply) -> bool:
        return self.cache.holds(key, reply)

    async def record(
        self,
        key: str,
        user: str,
        reply: AgentReply,
        ttl: float | None = None,
        *,
        trusted: bool = False,
    ) -> None:
        self.cache.record(key, user, reply, ttl, trusted=trusted)

    async def forget(self, key: str) -> bool:
        return self.cache.forget(key)

    async def flush(self) -> int:
        return self.cache.flush()


class MemoryPending:
    """The pending context of one host (``PendingContext``) as the async ``PendingContexts``."""

    def __init__(self, pending: PendingContext) -> None:
        self.pending = pending

    async def remember(self, user: str, question: str, answer: str) -> None:
        self.pending.remember(user, question, answer)

    async def has(self, user: str) -> bool:
        return self.pending.has(user)

    async def take(self, user: str) -> tuple[str, str] | None:
        return self.pending.take(user)


if TYPE_CHECKING:
    from daemon.cache.audio import AudioCache
    from daemon.limits.memory import MemoryUserLimits
    from daemon.state import base

    def _fits(
        store: MemoryStore,
        deferred: MemoryDeferred,
        limits: MemoryUserLimits,
        responses: MemoryResponses,
        pending: MemoryPending,
        audio: AudioCache,
    ) -> None:
        """Never called: mypy holds the one-host maps to the protocols of state/base.py."""
        _: tuple[
            base.Store,
            base.DeferredMessages,
            base.UserLimits,
            base.Responses,
            base.PendingContexts,
            base.VoiceNotes,
        ] = (store, deferred, limits, responses, pending, audio)
