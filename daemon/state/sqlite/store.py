"""The durable inbox and the agent sessions, in SQLite: nothing lost, nothing doubled.

Inbox (reference/anchors.md §C.3). A message is written here *before* its webhook is answered
200, in the same transaction as the dedupe check: the row is the dedupe memory and the turn's
to-do item at once. Each turn then records how far it got (``Stage``) together with what it
got: the transcript, the agent's answer, the ids of the messages it sent. After a crash or a
restart, ``unfinished()`` lists the turns to resume, and the record says what is already done:
an answer already received is not asked again, a text already sent is not sent again (the
"outbox" half of §C.3, kept in the same row). Finished rows stay as the dedupe memory for as
long as Meta may redeliver (``dedupe_ttl``, 7 days), bounded by ``max_ids``; ``prune()``
drops the rest.

Sessions. User key -> Agentforce session id, next sequence id and last use (wall clock), so
a restart continues the users' conversations. The agent client keeps its in-memory LRU; this
table is its write-through backing.

Durability: WAL with ``synchronous=NORMAL``. A commit then lands in the WAL file through the
OS page cache without an fsync; the WAL is fsynced at checkpoints. That is durable against
the death of the process (kill -9, OOM, a crash): the kernel still writes the pages out. Only
a power cut or a kernel crash can lose the last few commits, and the database stays
consistent even then. ``FULL`` would fsync on every commit, i.e. on every webhook, on the
path that gates Meta's 200: milliseconds each (far more on network disks) for protection
against an event that takes the turns in flight down with the host anyway.

Threads: sqlite3 calls block, so every one runs in a worker thread (``trio.to_thread``) and
the event loop never waits on the disk. One connection serves them all
(``check_same_thread=False``), one thread at a time: a sqlite3 connection must not be used
by two threads at once, and a single writer needs no retry logic. The serialisation is a
``CapacityLimiter(1)`` passed to ``to_thread.run_sync`` rather than a ``trio.Lock`` held
around the call: trio releases a limiter token only when the thread really returns, even if
the waiting task were abandoned, whereas a lock is released by the task, so an abandoned
call could overlap the next one on the same connection. Calls are not abandoned on
cancellation either (``abandon_on_cancel=False``): a store call is a short transaction, and a
caller that knows whether its write happened is worth a few milliseconds of delay to a
cancellation. ``busy_timeout`` only matters against another process holding the file (an
operator's ``sqlite3`` shell, say).

The rows hold user keys and addresses (phone numbers) in clear: the daemon needs them to
answer after a restart. The file is created mode 0600 (systemd's ``UMask=0077`` does the same
for the WAL; SQLite gives it the database file's mode in any case).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import trio

from daemon.model import Inbound, Transcript
from daemon.state.base import Stage, Store, StoreClosed, TurnRecord
from daemon.state.sqlite import queries
from daemon.state.sqlite.schema import BUSY_TIMEOUT_MS, SCHEMA_VERSION, connect, probe

log = logging.getLogger("daemon.state.sqlite")

T = TypeVar("T")


class SqliteStore:
    """Open with ``await Store.open(path)``; every method runs its SQL in a worker thread."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        dedupe_ttl: float,
        max_ids: int,
        wall_clock: Callable[[], float],
    ) -> None:
        self._conn: sqlite3.Connection | None = connection
        self._limiter = trio.CapacityLimiter(1)
        self.dedupe_ttl = dedupe_ttl
        self.max_ids = max_ids
        self._wall_clock = wall_clock

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        dedupe_ttl: float = 7 * 86400,
        max_ids: int = 1_000_000,
        wall_clock: Callable[[], float] = time.time,
        busy_timeout: float = BUSY_TIMEOUT_MS / 1000,
    ) -> SqliteStore:
        """Open (creating it and its directories if need be) the store at ``path``.

        ``busy_timeout``: seconds a write waits for another process's lock on the file.
        Raises ``StoreError`` when the file was written by a newer schema than this code's.
        """
        if dedupe_ttl <= 0 or max_ids < 1:
            raise ValueError("dedupe_ttl must be > 0 and max_ids >= 1")
        connection = await trio.to_thread.run_sync(connect, path, busy_timeout)
        log.info("state store open: %s (schema v%d, WAL)", path, SCHEMA_VERSION)
        return cls(connection, dedupe_ttl=dedupe_ttl, max_ids=max_ids, wall_clock=wall_clock)

    async def close(self) -> None:
        """Close the connection (a checkpoint folds the WAL in). Idempotent."""
        await trio.to_thread.run_sync(self._close_in_thread, limiter=self._limiter)

    def _close_in_thread(self) -> None:
        connection, self._conn = self._conn, None
        if connection is not None:
            # SQLite's advice for long-lived connections: let it refresh its statistics.
            connection.execute("PRAGMA optimize")
            connection.close()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            # Read inside the thread: the limiter orders this after any close() queued before.
            connection = self._conn
            if connection is None:
                raise StoreClosed("the state store is closed")
            return fn(connection)

        return await trio.to_thread.run_sync(call, limiter=self._limiter)

    async def probe(self) -> None:
        """Commit one tiny write, the way accepting a webhook would; raises when the store
        can't take writes now (disk full, read-only, locked past ``busy_timeout``). For
        /readyz (daemon/observe/health.py)."""
        now = self._wall_clock()
        await self._run(lambda connection: probe(connection, now))

    # -- inbox ---------------------------------------------------------------------------------

    async def accept(self, messages: Sequence[Inbound]) -> list[Inbound]:
        """Record every message not seen before, in one transaction; return those, in order.

        Known ids (earlier in the same batch included) are skipped: they are redeliveries.
        Once this returns, the new messages survive a crash, so the webhook may answer 200.
        """
        if not messages:
            return []
        now = self._wall_clock()
        return await self._run(lambda conn: queries.accept(conn, messages, now))

    async def forget(self, message_ids: Sequence[str]) -> int:
        """Delete messages that could not be queued, so Meta's retry is processed; returns how
        many went. Only turns still at ``received`` go: a turn that got further must stay a
        duplicate, or a redelivery would answer it twice."""
        if not message_ids:
            return 0
        return await self._run(lambda conn: queries.forget(conn, message_ids))

    async def finish_unanswered(self, message_ids: Sequence[str], *, outcome: str) -> int:
        """Mark messages done without a turn, in one transaction (over a per-user limit, the
        notice given already: daemon/intake.py). They stay as duplicates for the dedupe
        window, so a redelivery is not turned either. Only rows still at ``received`` move;
        returns how many did."""
        if not message_ids:
            return 0
        now = self._wall_clock()
        return await self._run(
            lambda conn: queries.finish_unanswered(conn, message_ids, outcome, now)
        )

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
        """Record that the turn reached ``stage``, with what it got there.

        Stages only move forward: an earlier (or equal) stage than the recorded one leaves
        the stage as it is, and a finished turn stays finished. The fields given are written
        whatever the stage; those left ``None`` keep their value. ``text_ids`` replaces the
        list (pass all ids so far: a repeated call then changes nothing). Returns the stage
        now recorded, or ``None`` when the id is unknown (forgotten or pruned).
        """
        target = Stage(stage)  # ValueError on an unknown name
        updates: dict[str, object] = {}
        if transcript is not None:
            updates["transcript"] = transcript.text
            updates["transcript_language"] = transcript.language
        if answer is not None:
            updates["answer"] = answer
        if outcome is not None:
            updates["outcome"] = outcome
        if text_ids is not None:
            updates["text_ids"] = json.dumps(list(text_ids))
        if voice_id is not None:
            updates["voice_id"] = voice_id
        now = self._wall_clock()
        return await self._run(
            lambda conn: queries.progress(conn, message_id, target, updates, now)
        )

    async def get(self, message_id: str) -> TurnRecord | None:
        return await self._run(lambda conn: queries.get(conn, message_id))

    async def unfinished(self) -> list[TurnRecord]:
        """Turns not yet done, failed or apologized for, oldest first: what to resume."""
        return await self._run(queries.unfinished)

    async def attempt(self, message_id: str) -> int:
        """Count one more run of the turn and return the count, so a turn that keeps crashing
        the daemon can be given up after a few. ``KeyError`` when the id is unknown."""
        return await self._run(lambda conn: queries.attempt(conn, message_id))

    async def release(self, message_id: str) -> None:
        """Take back one ``attempt``: the run ended without taking the daemon down (it
        finished, was deferred, or a drain cancelled it). What stays counted are the runs
        that never got here: crashes, kill -9, OOM kills."""
        await self._run(lambda conn: queries.release(conn, message_id))

    async def prune(self, now: float | None = None) -> int:
        """Drop finished turns received more than ``dedupe_ttl`` ago, then the oldest finished
        ones beyond ``max_ids``; returns how many rows went. Open turns are never dropped (the
        lanes' bounds keep them few), so with many open turns the table can exceed
        ``max_ids`` until they finish. Meant to run at start-up and then every few minutes."""
        cutoff = (self._wall_clock() if now is None else now) - self.dedupe_ttl
        removed, over = await self._run(lambda conn: queries.prune(conn, cutoff, self.max_ids))
        if over > 0:
            log.warning("state store: %d open turns above max_ids %d", over, self.max_ids)
        return removed

    async def counts(self) -> dict[str, int]:
        """Rows by stage, every stage present (a gauge per stage). Scans the table: call it
        from a periodic task, not per metrics scrape."""
        return await self._run(queries.counts)

    # -- sessions ------------------------------------------------------------------------------

    async def load_sessions(self) -> dict[str, tuple[str, int, float]]:
        """User -> (session id, next sequence id, last use on the wall clock), least recently
        used first (the order an LRU is filled in)."""
        return await self._run(queries.load_sessions)

    async def save_session(
        self, user: str, session_id: str, next_sequence: int, last_used: float
    ) -> None:
        await self._run(
            lambda conn: queries.save_session(conn, user, session_id, next_sequence, last_used)
        )

    async def drop_idle_sessions(self, idle_since: float) -> int:
        """Forget sessions last used before ``idle_since`` (wall clock): the agent client ends
        idle sessions upstream, and these rows must not outgrow them."""
        return await self._run(
            lambda conn: (
                conn.execute("DELETE FROM sessions WHERE last_used < ?", (idle_since,)).rowcount
            )
        )

    async def drop_session(self, user: str, session_id: str | None = None) -> bool:
        """Forget the user's session; with ``session_id``, only if it is still that one (as
        ``SessionStore.drop``). Returns whether a row went."""
        return await self._run(lambda conn: queries.drop_session(conn, user, session_id))


if TYPE_CHECKING:

    def _fits(store: SqliteStore) -> Store:
        """Never called: mypy holds the store to the protocol of state/base.py."""
        return store
