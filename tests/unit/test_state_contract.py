"""The contract of a whole one-host state backend (``Store`` of daemon/state/base.py), held
by SQLite and memory alike: dedupe, stages that only move forward, attempts, pruning,
sessions. What only SQLite does (restarts, kill -9, WAL, threads): test_state_sqlite.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from daemon.config import InboxConfig, StateConfig
from daemon.model import Inbound, Transcript
from daemon.state import open_store
from daemon.state.base import Stage, Store, StoreClosed
from daemon.state.memory import MemoryStore
from daemon.state.sqlite import SqliteStore
from tests.unit.test_state_sqlite import WallClock, text_message, voice_message


@pytest.fixture(params=["sqlite", "memory"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def open_backend(backend: str, tmp_path: Path, **kw: Any) -> Store:
    if backend == "memory":
        return MemoryStore(**kw)
    return await SqliteStore.open(tmp_path / "state.db", **kw)


async def test_state_backend_picks_the_store(tmp_path: Path) -> None:
    with trio.fail_after(10):
        inbox = InboxConfig(dedupe_ttl=60.0, dedupe_max_ids=5)
        memory = await open_store(StateConfig(backend="memory"), inbox, tmp_path)
        assert isinstance(memory, MemoryStore) and memory.max_ids == 5
        assert not (tmp_path / "wa-agentd.sqlite3").exists()  # nothing written
        sqlite = await open_store(StateConfig(), inbox, tmp_path)
        assert isinstance(sqlite, SqliteStore) and sqlite.dedupe_ttl == 60.0
        assert (tmp_path / "wa-agentd.sqlite3").exists()
        await sqlite.close()


async def test_accept_dedupes_within_a_batch_and_across_calls(backend: str, tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = await open_backend(backend, tmp_path)
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


async def test_accept_records_received_at_on_the_wall_clock(backend: str, tmp_path: Path) -> None:
    with trio.fail_after(10):
        clock = WallClock(1234.5)
        store = await open_backend(backend, tmp_path, wall_clock=clock)
        await store.accept([voice_message("v")])
        record = await store.get("v")
        assert record is not None
        assert record.received_at == 1234.5
        assert record.inbound == voice_message("v")
        await store.close()


async def test_forget_makes_an_id_new_again_but_only_before_any_progress(
    backend: str, tmp_path: Path
) -> None:
    with trio.fail_after(10):
        store = await open_backend(backend, tmp_path)
        a, b = text_message("a"), text_message("b")
        assert await store.accept([a, b]) == [a, b]
        await store.progress("b", Stage.ANSWERED, answer="hello")
        assert await store.forget(["a", "b", "unknown"]) == 1
        assert await store.forget([]) == 0
        assert await store.get("a") is None
        assert await store.accept([a, b]) == [a]  # b got an answer: still a duplicate
        await store.close()


async def test_progress_only_moves_forward_and_keeps_fields(backend: str, tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = await open_backend(backend, tmp_path)
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


async def test_text_ids_are_replaced_so_a_repeat_changes_nothing(
    backend: str, tmp_path: Path
) -> None:
    with trio.fail_after(10):
        store = await open_backend(backend, tmp_path)
        await store.accept([text_message("a")])
        await store.progress("a", Stage.ANSWERED, answer="long", text_ids=["o1"])
        await store.progress("a", Stage.ANSWERED, text_ids=["o1", "o2"])
        await store.progress("a", Stage.ANSWERED, text_ids=["o1", "o2"])
        record = await store.get("a")
        assert record is not None
        assert record.text_ids == ("o1", "o2")
        assert record.stage is Stage.ANSWERED
        await store.close()


async def test_unfinished_lists_exactly_the_open_turns_oldest_first(
    backend: str, tmp_path: Path
) -> None:
    with trio.fail_after(10):
        clock = WallClock()
        store = await open_backend(backend, tmp_path, wall_clock=clock)
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


async def test_release_takes_back_a_run_that_ended_and_never_goes_below_zero(
    backend: str, tmp_path: Path
) -> None:
    with trio.fail_after(10):
        store = await open_backend(backend, tmp_path)
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


async def test_counts_by_stage(backend: str, tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = await open_backend(backend, tmp_path)
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


async def test_prune_drops_finished_turns_past_the_dedupe_ttl(backend: str, tmp_path: Path) -> None:
    with trio.fail_after(10):
        clock = WallClock(0.0)
        store = await open_backend(backend, tmp_path, dedupe_ttl=100.0, wall_clock=clock)
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


async def test_prune_bounds_the_ids_oldest_finished_first(backend: str, tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = await open_backend(backend, tmp_path, max_ids=3)
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


async def test_a_closed_store_refuses_work(backend: str, tmp_path: Path) -> None:
    with trio.fail_after(10):
        store = await open_backend(backend, tmp_path)
        await store.close()
        await store.close()  # idempotent
        with pytest.raises(StoreClosed):
            await store.accept([text_message("a")])
        with pytest.raises(StoreClosed):
            await store.load_sessions()


async def test_concurrent_accepts_are_serialised_without_duplicates(
    backend: str, tmp_path: Path
) -> None:
    with trio.fail_after(10):
        store = await open_backend(backend, tmp_path)
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
