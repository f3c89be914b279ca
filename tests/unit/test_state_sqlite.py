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
from daemon.state.base import Stage, StoreClosed, StoreError
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


async def test_accept_dedupes_within_a_batch_and_across_calls(tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = await SqliteStore.open(tmp_path / "state.db")
        a, b, c = text_message("a"), text_message("b"), text_message("c")
        assert await store.accept([a, b, a]) == [a, b]
        assert await store.accept([b, c, a]) == [c]
        assert await store.accept([a, b, c]) == []
        assert await store.accept([]) == []
        record = await store.get("c")
        assert record is not None
        assert record.inbound == c
        assert record.stage is Stage.RECEIVED
        assert record.attempts == 0
        assert await store.get("nope") is None
        await store.close()


async def test_accept_records_received_at_on_the_wall_clock(tmp_path: Path) -> None:
    with trio.fail_after(10):
        clock = WallClock(1234.5)
        store = await SqliteStore.open(tmp_path / "state.db", wall_clock=clock)
        await store.accept([voice_message("v")])
        record = await store.get("v")
        assert record is not None
        assert record.received_at == 1234.5
        assert record.inbound == voice_message("v")
        await store.close()


async def test_forget_makes_an_id_new_again_but_only_before_any_progress(
    tmp_path: Path,
) -> None:
    with trio.fail_after(10):
        store = await SqliteStore.open(tmp_path / "state.db")
        a, b = text_message("a"), text_message("b")
        assert await store.accept([a, b]) == [a, b]
        await store.progress("b", Stage.ANSWERED, answer="hello")
        assert await store.forget(["a", "b", "unknown"]) == 1
        assert await store.forget([]) == 0
        assert await store.get("a") is None
        assert await store.accept([a, b]) == [a]  # b got an answer: still a duplicate
        await store.close()


async def test_progress_only_moves_forward_and_keeps_fields(tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = await SqliteStore.open(tmp_path / "state.db")
        await store.accept([voice_message("v")])

        stage = await store.progress("v", "transcribed", transcript=Transcript("hola", "es"))
        assert stage is Stage.TRANSCRIBED
        assert await store.progress("v", Stage.ANSWERED, answer="¡Hola!") is Stage.ANSWERED
        assert await store.progress("v", Stage.TEXT_SENT, text_ids=["wamid.o1"]) is (
            Stage.TEXT_SENT
        )
        # An earlier stage does not move it back, but its fields are kept.
        assert await store.progress("v", Stage.ANSWERED, outcome="answered") is Stage.TEXT_SENT

        record = await store.get("v")
        assert record is not None
        assert record.stage is Stage.TEXT_SENT
        assert (record.transcript, record.transcript_language) == ("hola", "es")
        assert record.answer == "¡Hola!"
        assert record.outcome == "answered"
        assert record.text_ids == ("wamid.o1",)
        assert record.voice_id is None
        assert not record.finished

        assert await store.progress("v", Stage.VOICE_SENT, voice_id="wamid.o2") is (
            Stage.VOICE_SENT
        )
        assert await store.progress("v", Stage.DONE) is Stage.DONE
        # Finished is final: neither another final stage nor an earlier one moves it.
        assert await store.progress("v", Stage.APOLOGIZED) is Stage.DONE
        assert await store.progress("v", Stage.RECEIVED) is Stage.DONE

        record = await store.get("v")
        assert record is not None
        assert record.finished
        assert record.voice_id == "wamid.o2"
        assert record.text_ids == ("wamid.o1",)
        assert record.answer == "¡Hola!"

        assert await store.progress("unknown", Stage.DONE) is None
        with pytest.raises(ValueError):
            await store.progress("v", "sent")
        await store.close()


async def test_text_ids_are_replaced_so_a_repeat_changes_nothing(tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = await SqliteStore.open(tmp_path / "state.db")
        await store.accept([text_message("a")])
        await store.progress("a", Stage.ANSWERED, answer="long", text_ids=["o1"])
        await store.progress("a", Stage.ANSWERED, text_ids=["o1", "o2"])
        await store.progress("a", Stage.ANSWERED, text_ids=["o1", "o2"])
        record = await store.get("a")
        assert record is not None
        assert record.text_ids == ("o1", "o2")
        assert record.stage is Stage.ANSWERED
        await store.close()


async def test_unfinished_lists_exactly_the_open_turns_oldest_first(tmp_path: Path) -> None:
    with trio.fail_after(10):
        clock = WallClock()
        store = await SqliteStore.open(tmp_path / "state.db", wall_clock=clock)
        for name in ("m1", "m2", "m3", "m4", "m5", "m6"):
            await store.accept([text_message(name)])
            clock.now -= 10  # a wall clock stepping back does not reorder arrivals
        await store.progress("m1", Stage.DONE)
        await store.progress("m3", Stage.FAILED)
        await store.progress("m4", Stage.APOLOGIZED)
        await store.progress("m5", Stage.VOICE_SENT)
        await store.progress("m2", Stage.ANSWERED, answer="x")

        open_turns = await store.unfinished()
        assert [r.inbound.message_id for r in open_turns] == ["m2", "m5", "m6"]
        assert [r.stage for r in open_turns] == [Stage.ANSWERED, Stage.VOICE_SENT, Stage.RECEIVED]
        assert open_turns[0].answer == "x"
        await store.close()


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


async def test_release_takes_back_a_run_that_ended_and_never_goes_below_zero(
    tmp_path: Path,
) -> None:
    with trio.fail_after(10):
        store = await SqliteStore.open(tmp_path / "state.db")
        await store.accept([text_message("a")])
        await store.attempt("a")
        await store.attempt("a")
        await store.release("a")
        assert await store.attempt("a") == 2
        for _ in range(3):
            await store.release("a")
        assert await store.attempt("a") == 1
        await store.release("unknown")  # a pruned row: nothing to take back, no error
        await store.close()


async def test_counts_by_stage(tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = await SqliteStore.open(tmp_path / "state.db")
        await store.accept([text_message(f"m{i}") for i in range(4)])
        await store.progress("m0", Stage.DONE)
        await store.progress("m1", Stage.DONE)
        await store.progress("m2", Stage.ANSWERED)
        counts = await store.counts()
        assert counts == {
            "received": 1,
            "transcribed": 0,
            "answered": 1,
            "text_sent": 0,
            "voice_sent": 0,
            "done": 2,
            "failed": 0,
            "apologized": 0,
        }
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


async def test_prune_drops_finished_turns_past_the_dedupe_ttl(tmp_path: Path) -> None:
    with trio.fail_after(10):
        clock = WallClock(0.0)
        store = await SqliteStore.open(tmp_path / "state.db", dedupe_ttl=100.0, wall_clock=clock)
        await store.accept([text_message("old-done"), text_message("old-open")])
        clock.now = 50.0
        await store.accept([text_message("new-done")])
        await store.progress("old-done", Stage.DONE)
        await store.progress("new-done", Stage.APOLOGIZED)

        assert await store.prune(100.0) == 0  # exactly at the TTL: kept
        clock.now = 100.5
        assert await store.prune() == 1

        assert await store.get("old-done") is None
        assert await store.get("old-open") is not None  # open turns are never pruned
        assert await store.accept([text_message("new-done")]) == []  # still remembered
        assert await store.accept([text_message("old-done")]) == [text_message("old-done")]
        assert await store.prune(1e9) == 1  # new-done; old-open and the new row stay
        assert {r.inbound.message_id for r in await store.unfinished()} == {
            "old-open",
            "old-done",
        }
        await store.close()


async def test_prune_bounds_the_ids_oldest_finished_first(tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = await SqliteStore.open(tmp_path / "state.db", max_ids=3)
        await store.accept([text_message(f"m{i}") for i in range(6)])
        for i in (0, 2, 3, 4, 5):
            await store.progress(f"m{i}", Stage.DONE)
        # m1 is open, so it stays although it is among the oldest.
        assert await store.prune() == 3
        remaining = [m for m in (f"m{i}" for i in range(6)) if await store.get(m) is not None]
        assert remaining == ["m1", "m4", "m5"]
        assert await store.prune() == 0

        # Only open turns above the bound: nothing can go.
        await store.accept([text_message(f"x{i}") for i in range(3)])
        assert await store.prune() == 2  # m4, m5
        assert sum((await store.counts()).values()) == 4
        await store.close()


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


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = await SqliteStore.open(tmp_path / "state.db")
        await store.close()
        await store.close()  # idempotent
        with pytest.raises(StoreClosed):
            await store.accept([text_message("a")])
        with pytest.raises(StoreClosed):
            await store.load_sessions()


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


async def test_concurrent_accepts_are_serialised_without_duplicates(tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = await SqliteStore.open(tmp_path / "state.db")
        results: list[list[Inbound]] = []

        async def deliver(start: int) -> None:
            # Overlapping batches, as when Meta redelivers while we are still answering.
            batch = [text_message(f"m{i}") for i in range(start, start + 10)]
            results.append(await store.accept(batch))
            await store.progress(f"m{start}", Stage.ANSWERED, answer=str(start))

        async with trio.open_nursery() as nursery:
            for start in range(0, 100, 2):
                nursery.start_soon(deliver, start)

        accepted = [m.message_id for batch in results for m in batch]
        assert len(accepted) == len(set(accepted)) == 108  # m0 .. m107, each once
        assert (await store.counts())["answered"] == 50
        await store.close()
