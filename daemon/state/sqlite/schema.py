"""The SQLite store's schema and connection: WAL, pragmas, migrations, the probe's row.

Why these settings: daemon/state/sqlite/store.py's header.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daemon.state.base import StoreError

log = logging.getLogger("daemon.state.sqlite")

# Schema. ``PRAGMA user_version`` is the schema version: migration i takes it from i to i + 1.

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE turns (
        seq INTEGER PRIMARY KEY,            -- arrival order ("oldest first")
        message_id TEXT NOT NULL UNIQUE,    -- the dedupe key
        inbound TEXT NOT NULL,              -- inbound_to_json
        stage TEXT NOT NULL,
        open INTEGER NOT NULL DEFAULT 1,    -- 0 once the stage is a final one
        transcript TEXT,
        transcript_language TEXT,
        answer TEXT,
        outcome TEXT,
        text_ids TEXT NOT NULL DEFAULT '[]',
        voice_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        received_at REAL NOT NULL,          -- wall clock
        updated_at REAL NOT NULL
    );
    -- Both scans that run on a full table (resume at start-up, prune) read only their part.
    CREATE INDEX turns_open ON turns (seq) WHERE open = 1;
    CREATE INDEX turns_finished_by_age ON turns (received_at) WHERE open = 0;
    CREATE TABLE sessions (
        user_key TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        next_sequence INTEGER NOT NULL,
        last_used REAL NOT NULL             -- wall clock
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

BUSY_TIMEOUT_MS = 5000
# The WAL file is reused after each checkpoint but never shrinks on its own; cap what it keeps.
_JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024


def connect(path: Path, busy_timeout: float = BUSY_TIMEOUT_MS / 1000) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Create the file ourselves so that it (and the WAL, which takes its mode) is private
    # whatever the umask: it holds phone numbers.
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    # isolation_level=None: no implicit transactions; transaction() says where they are.
    connection = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
    )
    try:
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            # e.g. a filesystem without shared memory: still correct, only slower.
            log.warning("state store: journal_mode is %s, not wal", mode)
        connection.execute("PRAGMA synchronous = NORMAL")  # why: see the module docstring
        connection.execute(f"PRAGMA busy_timeout = {round(busy_timeout * 1000)}")
        connection.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT}")
        migrate(connection)
        # The readiness probe's one row. Outside the versioned schema on purpose: nothing
        # reads it, and a new schema version would stop an older daemon from opening the
        # file after a rollback (migrate refuses newer versions) for a health check's sake.
        connection.execute(
            "CREATE TABLE IF NOT EXISTS health_probe"
            " (id INTEGER PRIMARY KEY CHECK (id = 1), written_at REAL NOT NULL)"
        )
    except BaseException:
        connection.close()
        raise
    return connection


def migrate(connection: sqlite3.Connection) -> None:
    version: int = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(f"state store has schema v{version}; this daemon knows v{SCHEMA_VERSION}")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        # executescript commits any open transaction first, so the script carries its own;
        # user_version lives in the file header and commits (or not) with the tables.
        script = MIGRATIONS[target - 1]
        try:
            connection.executescript(
                f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {target}; COMMIT;"
            )
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        log.info("state store: schema migrated to v%d", target)


def probe(connection: sqlite3.Connection, now: float) -> None:
    # IMMEDIATE meets another process's lock; the commit appends a page to the WAL, which
    # meets a full disk or a read-only file system.
    with transaction(connection):
        connection.execute(
            "INSERT INTO health_probe (id, written_at) VALUES (1, ?)"
            " ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at",
            (now,),
        )


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front: a read-then-write transaction never has to
    # upgrade its lock, which is where SQLite deadlocks between connections happen.
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
