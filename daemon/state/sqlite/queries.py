"""The SQL of the SQLite store, synchronous: each function runs whole in one worker thread
(daemon/state/sqlite/store.py says which, and why one at a time)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from daemon.model import Inbound
from daemon.state.base import FINISHED, RANK, Stage, TurnRecord
from daemon.state.codec import inbound_from_json, inbound_to_json
from daemon.state.sqlite.schema import transaction

TURN_COLUMNS = (
    "inbound, stage, transcript, transcript_language, answer, outcome, text_ids, voice_id,"
    " attempts, received_at"
)

TurnRow = tuple[
    str, str, str | None, str | None, str | None, str | None, str, str | None, int, float
]


def accept(
    connection: sqlite3.Connection, messages: Sequence[Inbound], now: float
) -> list[Inbound]:
    new: list[Inbound] = []
    with transaction(connection):
        for message in messages:
            cursor = connection.execute(
                "INSERT INTO turns (message_id, inbound, stage, received_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
                (message.message_id, inbound_to_json(message), Stage.RECEIVED.value, now, now),
            )
            if cursor.rowcount == 1:
                new.append(message)
    return new


def forget(connection: sqlite3.Connection, message_ids: Sequence[str]) -> int:
    removed = 0
    with transaction(connection):
        for message_id in message_ids:
            cursor = connection.execute(
                "DELETE FROM turns WHERE message_id = ? AND stage = ?",
                (message_id, Stage.RECEIVED.value),
            )
            removed += cursor.rowcount
    return removed


def finish_unanswered(
    connection: sqlite3.Connection, message_ids: Sequence[str], outcome: str, now: float
) -> int:
    finished = 0
    with transaction(connection):
        for message_id in message_ids:
            finished += connection.execute(
                "UPDATE turns SET stage = ?, open = 0, outcome = ?, updated_at = ?"
                " WHERE message_id = ? AND stage = ?",
                (Stage.DONE.value, outcome, now, message_id, Stage.RECEIVED.value),
            ).rowcount
    return finished


def progress(
    connection: sqlite3.Connection,
    message_id: str,
    target: Stage,
    updates: dict[str, object],
    now: float,
) -> Stage | None:
    with transaction(connection):
        row = connection.execute(
            "SELECT stage FROM turns WHERE message_id = ?", (message_id,)
        ).fetchone()
        if row is None:
            return None
        stage = Stage(row[0])
        if RANK[target] > RANK[stage]:
            stage = target
        values = {**updates, "stage": stage.value, "open": int(stage not in FINISHED)}
        # The column names come from this module (progress()'s keywords), never from input.
        assignments = ", ".join(f"{column} = ?" for column in values)
        connection.execute(
            f"UPDATE turns SET {assignments}, updated_at = ? WHERE message_id = ?",
            (*values.values(), now, message_id),
        )
    return stage


def record(row: TurnRow) -> TurnRecord:
    inbound, stage, transcript, language, answer, outcome, text_ids, voice_id, attempts, at = row
    return TurnRecord(
        inbound=inbound_from_json(inbound),
        stage=Stage(stage),
        transcript=transcript,
        transcript_language=language,
        answer=answer,
        outcome=outcome,
        text_ids=tuple(str(i) for i in json.loads(text_ids)),
        voice_id=voice_id,
        attempts=attempts,
        received_at=at,
    )


def get(connection: sqlite3.Connection, message_id: str) -> TurnRecord | None:
    row = connection.execute(
        f"SELECT {TURN_COLUMNS} FROM turns WHERE message_id = ?", (message_id,)
    ).fetchone()
    return None if row is None else record(row)


def unfinished(connection: sqlite3.Connection) -> list[TurnRecord]:
    rows = connection.execute(f"SELECT {TURN_COLUMNS} FROM turns WHERE open = 1 ORDER BY seq")
    return [record(row) for row in rows]


def attempt(connection: sqlite3.Connection, message_id: str) -> int:
    # No RETURNING: it needs SQLite 3.35, newer than some distributions still ship.
    with transaction(connection):
        connection.execute(
            "UPDATE turns SET attempts = attempts + 1 WHERE message_id = ?", (message_id,)
        )
        row = connection.execute(
            "SELECT attempts FROM turns WHERE message_id = ?", (message_id,)
        ).fetchone()
    if row is None:
        raise KeyError(message_id)
    count: int = row[0]
    return count


def release(connection: sqlite3.Connection, message_id: str) -> None:
    with transaction(connection):
        connection.execute(
            "UPDATE turns SET attempts = max(attempts - 1, 0) WHERE message_id = ?",
            (message_id,),
        )


def prune(connection: sqlite3.Connection, cutoff: float, max_ids: int) -> tuple[int, int]:
    """Returns (rows removed, open rows still above ``max_ids``)."""
    with transaction(connection):
        removed = connection.execute(
            "DELETE FROM turns WHERE open = 0 AND received_at < ?", (cutoff,)
        ).rowcount
        total: int = connection.execute("SELECT count(*) FROM turns").fetchone()[0]
        if total > max_ids:
            removed_by_count = connection.execute(
                "DELETE FROM turns WHERE seq IN"
                " (SELECT seq FROM turns WHERE open = 0 ORDER BY seq LIMIT ?)",
                (total - max_ids,),
            ).rowcount
            removed += removed_by_count
            total -= removed_by_count
    return removed, max(0, total - max_ids)


def counts(connection: sqlite3.Connection) -> dict[str, int]:
    counts = {stage.value: 0 for stage in Stage}
    for stage, count in connection.execute("SELECT stage, count(*) FROM turns GROUP BY stage"):
        counts[stage] = count
    return counts


def load_sessions(connection: sqlite3.Connection) -> dict[str, tuple[str, int, float]]:
    rows = connection.execute(
        "SELECT user_key, session_id, next_sequence, last_used FROM sessions"
        " ORDER BY last_used, user_key"
    )
    return {
        user: (session_id, sequence, last_used) for user, session_id, sequence, last_used in rows
    }


def save_session(
    connection: sqlite3.Connection,
    user: str,
    session_id: str,
    next_sequence: int,
    last_used: float,
) -> None:
    # A single statement is its own transaction in autocommit mode.
    connection.execute(
        "INSERT INTO sessions (user_key, session_id, next_sequence, last_used)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (user_key) DO UPDATE SET"
        " session_id = excluded.session_id, next_sequence = excluded.next_sequence,"
        " last_used = excluded.last_used",
        (user, session_id, next_sequence, last_used),
    )


def drop_session(connection: sqlite3.Connection, user: str, session_id: str | None) -> bool:
    if session_id is None:
        cursor = connection.execute("DELETE FROM sessions WHERE user_key = ?", (user,))
    else:
        cursor = connection.execute(
            "DELETE FROM sessions WHERE user_key = ? AND session_id = ?", (user, session_id)
        )
    return cursor.rowcount > 0
