"""The inbox and turn journal on real Redis: the SQLite store's behaviour, shared."""

from __future__ import annotations

import trio

from daemon.model import Inbound, Kind, User
from daemon.state.redis.client import RedisClient
from daemon.state.redis.journal import RedisJournal
from daemon.state.redis.keys import Keys, user_tag
from daemon.state.store import Stage


def message(n: int, user: str = "+15550001") -> Inbound:
    return Inbound(f"wamid.{user}.{n}", User(user, user), Kind.TEXT, text=f"question {n}")


async def test_accept_dedupes_and_keeps_order(redis: RedisClient, keys: Keys) -> None:
    journal = RedisJournal(redis, keys)
    with trio.fail_after(5):
        batch = [message(1), message(2, "+15550002"), message(1), message(3)]
        new = await journal.accept(batch)
        assert [m.message_id for m in new] == [
            batch[0].message_id,
            batch[1].message_id,
            batch[3].message_id,
        ]
        assert await journal.accept(batch) == []
        open_turns = await journal.open_turns(user_tag("+15550001"))
        assert [r.inbound for r in open_turns] == [batch[0], batch[3]]
        assert all(r.stage is Stage.RECEIVED and r.attempts == 0 for r in open_turns)
