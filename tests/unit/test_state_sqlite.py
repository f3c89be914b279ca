"""SqliteStore: the durable inbox (dedupe + turn progress) and agent sessions, in SQLite."""

from __future__ import annotations

import signal
import sqlite3
import stat
import sys
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from daemon.model import Inbound, Kind, Media, Transcript, User
from daemon.state.base import Stage, StoreError
from daemon.state.codec import inbound_from_json, inbound_to_json
from daemon.state.sqlite import SCHEMA_VERSION, SqliteStore

REPO = Path(__file__).resolve().parents[2]


def text_message(message_id: str, user: str = "u1", text: str = "hi") -> Inbound:
    return Inbound(
        message_id=message_id,
        user=User(key=user, address=f"+{user}"),
        kind=Kind.TEXT,
        text=text,
        original_type="text",
        timestamp=1_700_000_000,
        channel_ref="PNID",
    )


def voice_message(message_id: str) -> Inbound:
    return Inbound(
        message_id=message_id,
        user=User(key="BSUID.abc", address="+15551234567"),
        kind=Kind.VOICE,
        media=Media(id="media-1", mime_type="audio/ogg; codecs=opus", sha256="c2hh", voice=True),
        original_type="audio",
        timestamp=1_700_000_001,
        channel_ref="PNID",
    )


class WallClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- Inbound <-> JSON ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        text_message("wamid.t", text="مرحبا «hello» 👋\nline two"),
        voice_message("wamid.v"),
        Inbound("SM1", User("whatsapp:+1555", "whatsapp:+1555"), Kind.UNSUPPORTED, "", None),
        Inbound("wamid.m", User("k", "a"), Kind.VOICE, media=Media("https://x/y", "audio/mpeg")),
    ],
)
def test_inbound_json_round_trip(message: Inbound) -> None:
    assert inbound_from_json(inbound_to_json(message)) == message


def test_inbound_from_json_fills_defaults_and_rejects_bad_shapes() -> None:
    minimal = '{"message_id":"m","user":{"key":"k","address":"a"},"kind":"text"}'
    assert inbound_from_json(minimal) == Inbound("m", User("k", "a"), Kind.TEXT)
    for bad in (
        "[]",
        '{"user":{"key":"k","address":"a"},"kind":"text"}',  # no message_id
        '{"message_id":"m","user":"k","kind":"text"}',
        '{"message_id":"m","user":{"key":"k","address":"a"},"kind":"video"}',
        '{"message_id":"m","user":{"key":"k","address":"a"},"kind":"text","timestamp":true}',
        '{"message_id":"m","user":{"key":"k","address":"a"},"kind":"voice","media":{"id":1}}',
    ):
        with pytest.raises(ValueError):
            inbound_from_json(bad)


# -- inbox ---------------------------------------------------------------------------------------


async def test_attempt_counts_runs_and_survives_a_restart(tmp_path: Path) -> None:
    with trio.fail_after(10):
        path = tmp_path / "state.db"
        store = await SqliteStore.open(path)
        await store.accept([text_message("a")])
        assert await store.attempt("a") == 1
        assert await store.attempt("a") == 2
        with pytest.raises(KeyError):
            await store.attempt("unknown")
        await store.close()

        store = await SqliteStore.open(path)
        assert await store.attempt("a") == 3
        (record,) = await store.unfinished()
        assert record.attempts == 3
        await store.close()


# -- restarts and crashes ------------------------------------------------------------------------


async def test_a_restart_resumes_where_the_turn_stopped(tmp_path: Path) -> None:
    with trio.fail_after(10):
        path = tmp_path / "nested" / "dir" / "state.db"  # directories are created
        store = await SqliteStore.open(path)
        a = voice_message("wamid.a")
        await store.accept([a])
        await store.progress("wamid.a", Stage.TRANSCRIBED, transcript=Transcript("hi", "en"))
        await store.progress("wamid.a", Stage.ANSWERED, answer="Hello there")
        await store.close()  # not finished

        store = await SqliteStore.open(path)
        (record,) = await store.unfinished()
        assert record.inbound == a
        assert record.stage is Stage.ANSWERED
        assert record.answer == "Hello there"
        assert record.transcript == "hi"
        assert await store.accept([a]) == []  # still a duplicate
        await store.close()


# Runs in a child process that kills itself with SIGKILL after the writes: no close(), no
# atexit, no flush of anything — what the store wrote must already be in the file.
CRASHING_CHILD = """
import os, signal, sys
from pathlib import Path
import trio
from daemon.model import Inbound, Kind, User
from daemon.state.base import Stage, StoreClosed, StoreError
from daemon.state.sqlite import SqliteStore

async def main() -> None:
    store = await SqliteStore.open(Path(sys.argv[1]))
    messages = [Inbound(f"wamid.{i}", User("u", "+1"), Kind.TEXT, f"text {i}") for i in range(3)]
    await store.accept(messages)
    await store.progress("wamid.0", Stage.DONE)
    await store.progress("wamid.1", Stage.ANSWERED, answer="the answer")
    await store.progress("wamid.1", Stage.TEXT_SENT, text_ids=["wamid.out1"])
    await store.save_session("u", "sess-1", 4, 1234.0)
    os.kill(os.getpid(), signal.SIGKILL)

trio.run(main)
"""


async def test_kill_9_loses_nothing_that_was_written(tmp_path: Path) -> None:
    with trio.fail_after(10):
        path = tmp_path / "state.db"
        child = await trio.run_process(
            [sys.executable, "-c", CRASHING_CHILD, str(path)], cwd=REPO, check=False
        )
        assert child.returncode == -signal.SIGKILL

        store = await SqliteStore.open(path)
        open_turns = await store.unfinished()
        assert [(r.inbound.message_id, r.stage) for r in open_turns] == [
            ("wamid.1", Stage.TEXT_SENT),
            ("wamid.2", Stage.RECEIVED),
        ]
        assert open_turns[0].answer == "the answer"
        assert open_turns[0].text_ids == ("wamid.out1",)
        assert open_turns[1].inbound.text == "text 2"
        redelivery = [Inbound(f"wamid.{i}", User("u", "+1"), Kind.TEXT) for i in range(3)]
        assert await store.accept(redelivery) == []
        assert await store.load_sessions() == {"u": ("sess-1", 4, 1234.0)}
        await store.close()


# -- pruning -------------------------------------------------------------------------------------


# -- sessions ------------------------------------------------------------------------------------


async def test_sessions_round_trip_across_a_restart(tmp_path: Path) -> None:
    with trio.fail_after(10):
        path = tmp_path / "state.db"
        store = await SqliteStore.open(path)
        assert await store.load_sessions() == {}
        await store.save_session("u2", "s-2", 3, 200.0)
        await store.save_session("u1", "s-1", 1, 100.0)
        await store.save_session("u3", "s-3", 1, 300.0)
        await store.save_session("u1", "s-1", 7, 400.0)  # update: now the most recent
        await store.close()

        store = await SqliteStore.open(path)
        sessions = await store.load_sessions()
        assert sessions == {
            "u2": ("s-2", 3, 200.0),
            "u3": ("s-3", 1, 300.0),
            "u1": ("s-1", 7, 400.0),
        }
        assert list(sessions) == ["u2", "u3", "u1"]  # least recently used first

        assert not await store.drop_session("u2", "s-other")  # a newer session is kept
        assert await store.drop_session("u2", "s-2")
        assert await store.drop_session("u3")
        assert not await store.drop_session("u3")
        assert await store.load_sessions() == {"u1": ("s-1", 7, 400.0)}
        await store.close()


# -- the file, the threads, the connection -------------------------------------------------------


async def test_wal_mode_schema_version_and_private_file(tmp_path: Path) -> None:
    with trio.fail_after(10):
        path = tmp_path / "state.db"
        store = await SqliteStore.open(path)
        await store.accept([text_message("a")])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        other = sqlite3.connect(path)
        try:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert other.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert other.execute("SELECT count(*) FROM turns").fetchone()[0] == 1
        finally:
            other.close()
        await store.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    with trio.fail_after(10):
        path = tmp_path / "state.db"
        store = await SqliteStore.open(path)
        await store.close()
        other = sqlite3.connect(path)
        other.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        other.close()
        with pytest.raises(StoreError, match="schema"):
            await SqliteStore.open(path)


async def test_the_event_loop_runs_while_the_database_is_busy(tmp_path: Path) -> None:
    """Another connection holds the write lock; the store's accept waits in its thread
    (busy_timeout) while other tasks keep running, and completes once the lock is free."""
    with trio.fail_after(10):
        path = tmp_path / "state.db"
        store = await SqliteStore.open(path)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        accepted: list[Inbound] = []
        done = trio.Event()

        async def accept() -> None:
            accepted.extend(await store.accept([text_message("a")]))
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept)
            ticks = 0
            while ticks < 50:  # the loop is free: this task runs while accept waits
                await trio.lowlevel.checkpoint()
                assert not done.is_set()
                ticks += 1
            blocker.execute("COMMIT")
            await done.wait()
        blocker.close()
        assert accepted == [text_message("a")]
        await store.close()
