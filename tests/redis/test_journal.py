"""The inbox and turn journal on real Redis: the SQLite store's behaviour, shared."""

from __future__ import annotations

import pytest
import trio

from daemon.model import Inbound, Kind, Transcript, User
from daemon.state.base import Stage
from daemon.state.redis.client import RedisClient
from daemon.state.redis.errors import LeaseLost
from daemon.state.redis.journal import JournalTimes, RedisJournal
from daemon.state.redis.keys import Keys, message_tag, user_tag
from daemon.state.redis.leases import Leases
from tests.redis.helpers import hold, run_out

USER = "+15550001"
TAG = user_tag(USER)


def message(n: int, user: str = USER) -> Inbound:
    return Inbound(f"wamid.{user}.{n}", User(user, user), Kind.TEXT, text=f"question {n}")


async def test_accept_dedupes_and_keeps_order(redis: RedisClient, keys: Keys) -> None:
    journal = RedisJournal(redis, keys)
    with trio.fail_after(5):
        batch = [message(1), message(2, "+15550002"), message(1), message(3)]
        new = await journal.accept(batch)
        assert new == [batch[0], batch[1], batch[3]]
        assert await journal.accept(batch) == []
        open_turns = await journal.open_turns(TAG)
        assert [r.inbound for r in open_turns] == [batch[0], batch[3]]
        assert all(r.stage is Stage.RECEIVED and r.attempts == 0 for r in open_turns)
        record = await journal.get(batch[1].message_id, user="+15550002")
        assert record is not None and record.inbound == batch[1] and record.received_at > 0


async def test_two_hosts_accepting_the_same_deliveries_turn_each_message_once(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    # Meta redelivers to whichever host the balancer picks: 50 messages, each delivered
    # four times to two hosts at once. Each is new exactly once.
    hosts = [RedisJournal(redis, keys), RedisJournal(other_redis, keys)]
    batch = [message(n, f"+1555000{n % 5}") for n in range(50)]
    new: list[Inbound] = []

    async def deliver(journal: RedisJournal) -> None:
        new.extend(await journal.accept(batch))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for journal in hosts * 2:
                nursery.start_soon(deliver, journal)
    assert sorted(m.message_id for m in new) == sorted(m.message_id for m in batch)


async def test_progress_is_fenced_and_moves_forward_only(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    journal = RedisJournal(redis, keys)
    first = message(1)
    with trio.fail_after(5):
        await journal.accept([first])
        old = journal.fenced(await hold(Leases(redis, keys, ttl=30), TAG))
        assert await old.attempt(first.message_id) == 1
        transcript = Transcript("hello", "en")
        stage = await old.progress(
            first.message_id, Stage.ANSWERED, transcript=transcript, answer="hi"
        )
        assert stage is Stage.ANSWERED
        assert await old.progress(first.message_id, Stage.TRANSCRIBED) is Stage.ANSWERED
        # The host pauses past its lease; another takes the user over.
        await run_out(redis, keys.lease(TAG))
        new = RedisJournal(other_redis, keys).fenced(
            await hold(Leases(other_redis, keys, ttl=30), TAG)
        )
        for write in (
            old.progress(first.message_id, Stage.TEXT_SENT, text_ids=["wamid.out.1"]),
            old.attempt(first.message_id),
            old.release(first.message_id),
        ):
            with pytest.raises(LeaseLost):
                await write
        record = await new.get(first.message_id)
        assert record is not None
        assert (record.stage, record.answer, record.text_ids) == (Stage.ANSWERED, "hi", ())
        assert (record.transcript, record.transcript_language) == ("hello", "en")
        # The new holder resumes where the turn stood.
        assert await new.attempt(first.message_id) == 2
        await new.progress(first.message_id, Stage.TEXT_SENT, text_ids=["wamid.out.1"])
        assert await new.progress(first.message_id, Stage.DONE, outcome="answered") is Stage.DONE
        assert await new.progress(first.message_id, Stage.TEXT_SENT) is Stage.DONE
        assert await journal.open_turns(TAG) == []


async def test_a_finished_turn_stays_a_duplicate_after_its_record_goes(
    redis: RedisClient, keys: Keys
) -> None:
    journal = RedisJournal(redis, keys, times=JournalTimes(finished_ttl=60))
    first = message(1)
    member = message_tag(first.message_id)
    with trio.fail_after(5):
        await journal.accept([first])
        turns = journal.fenced(await hold(Leases(redis, keys, ttl=30), TAG))
        await turns.progress(first.message_id, Stage.DONE, outcome="answered")
        assert 0 < await redis.pttl(keys.turn(TAG, member)) <= 60_000
        assert await redis.pttl(keys.seen(TAG, member)) > 6 * 86400 * 1000
        await run_out(redis, keys.turn(TAG, member))
        assert await turns.get(first.message_id) is None  # as after the store's prune
        assert await journal.accept([first]) == []  # still a redelivery


async def test_forget_takes_back_only_untouched_turns_accepted_here(
    redis: RedisClient, other_redis: RedisClient, keys: Keys
) -> None:
    journal = RedisJournal(redis, keys)
    one, two, three = message(1), message(2), message(3)
    with trio.fail_after(5):
        await journal.accept([one, two, three])
        turns = journal.fenced(await hold(Leases(redis, keys, ttl=30), TAG))
        await turns.attempt(two.message_id)
        assert await RedisJournal(other_redis, keys).forget([one.message_id]) == 0
        assert await journal.forget([one.message_id, two.message_id]) == 1
        assert [r.inbound for r in await journal.open_turns(TAG)] == [two, three]
        assert await journal.accept([one]) == [one]  # Meta's retry is processed


async def test_attempts_count_runs_and_release_takes_one_back(
    redis: RedisClient, keys: Keys
) -> None:
    journal = RedisJournal(redis, keys)
    first = message(1)
    with trio.fail_after(5):
        await journal.accept([first])
        turns = journal.fenced(await hold(Leases(redis, keys, ttl=30), TAG))
        assert await turns.attempt(first.message_id) == 1
        assert await turns.attempt(first.message_id) == 2
        await turns.release(first.message_id)
        await turns.release(first.message_id)
        await turns.release(first.message_id)
        record = await turns.get(first.message_id)
        assert record is not None and record.attempts == 0
        with pytest.raises(KeyError):
            await turns.attempt("wamid.unknown")
        assert await turns.progress("wamid.unknown", Stage.DONE) is None


async def test_every_key_of_a_turn_has_a_ttl(redis: RedisClient, keys: Keys) -> None:
    journal = RedisJournal(redis, keys)
    with trio.fail_after(5):
        await journal.accept([message(1), message(2, "+15550002")])
        found = {k async for k in redis.scan_iter(match=f"{keys.prefix}*")}
        found.remove(keys.work().encode())  # the work index: bounded, see takeover.py
        assert len(found) == 6  # per message: open, seen, turn
        for key in found:
            assert await redis.pttl(key) > 0, key


async def test_unfinished_and_counts_walk_the_work_index(redis: RedisClient, keys: Keys) -> None:
    journal = RedisJournal(redis, keys)
    other = "+15550002"
    with trio.fail_after(5):
        for batch in ([message(1)], [message(2, other)], [message(3)]):
            await journal.accept(batch)  # touches each user in the work index first
        assert await redis.zcard(keys.work()) == 2
        turns = journal.fenced(await hold(Leases(redis, keys, ttl=30), TAG))
        await turns.progress(message(1).message_id, Stage.DONE)
        await turns.progress(message(3).message_id, Stage.ANSWERED, answer="a")
        unfinished = await journal.unfinished()
        assert [r.inbound.message_id for r in unfinished] == [
            message(2, other).message_id,
            message(3).message_id,
        ]
        counts = await journal.counts()
        assert counts["received"] == 1 and counts["answered"] == 1
        assert sum(counts.values()) == 2 and set(counts) == {s.value for s in Stage}
        assert await journal.prune() == 0  # TTLs do the store's pruning here


async def test_the_intakes_notes_touch_only_turns_nobody_started(
    redis: RedisClient, keys: Keys
) -> None:
    # daemon/intake.py notes a limit on a message it just accepted, or finishes it unanswered;
    # a turn another host already started is the holder's and stays as it is.
    journal = RedisJournal(redis, keys)
    one, two, three = message(1), message(2), message(3)
    with trio.fail_after(5):
        await journal.accept([one, two, three])
        noted = await journal.progress(one.message_id, Stage.RECEIVED, outcome="limited_rate")
        assert noted is Stage.RECEIVED
        turns = journal.fenced(await hold(Leases(redis, keys, ttl=30), TAG))
        await turns.attempt(two.message_id)  # another host started it
        done = [one.message_id, two.message_id, three.message_id, "wamid.unknown"]
        assert await journal.finish_unanswered(done, outcome="limited_daily_turns") == 2
        assert await journal.finish_unanswered(done, outcome="again") == 0
        records = {r.inbound.message_id: r for r in await journal.open_turns(TAG)}
        assert list(records) == [two.message_id]
        first = await journal.get(one.message_id, user=USER)
        assert first is not None and (first.stage, first.outcome) == (
            Stage.DONE,
            "limited_daily_turns",
        )
        assert await journal.accept([one, three]) == []  # still duplicates
