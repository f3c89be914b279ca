"""Redis memory per user, and round trips per turn, of the several-hosts state (issue 13).

    .venv/bin/python -m bench.redis_memory [--users 5000] [--messages 20] [--out bench/out]

Starts Debian's ``redis-server`` on a loopback port (as the tests do), then writes the keys
of N synthetic users with the daemon's own classes, and reads ``INFO memory``'s
``used_memory`` before and after (so Redis' per-key overhead, its hash tables and the
allocator's rounding are all included), plus ``MEMORY USAGE`` of one key of each kind.

A user's keys, as a day of real use leaves them:

- ``messages`` accepted over the last 7 days (the dedupe window): their ``seen`` markers;
- the last one answered and finished within the hour: its record (a 100-character
  question, a 300-character answer, two sent ids);
- one more message open, its turn at *answered* (in flight), with the user's lease;
- an Agentforce session, the remembered language, the limits' bucket and day counters,
  and the user's entry in the work index.

Entry sizes are assumptions, printed with the numbers so they can be scaled.

Round trips: one text turn and one voice turn walked through the primitives the way the
wiring will call them (intake, limits, lease, journal, session, cache, send checks),
counted on the client: every command the coredis client executes is one round trip here (a
script is one EVALSHA; no pipelines yet). Redis' own counters would not do: they count the
commands a script runs inside Redis too.

Not a test: nothing asserts. Output: a table on stdout and ``<out>/redis_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import trio

from daemon.config import LimitsConfig, RedisConfig
from daemon.limits import Limit
from daemon.model import Inbound, Kind, Transcript, User
from daemon.state.base import Stage
from daemon.state.redis import (
    Keys,
    Lease,
    Leases,
    RedisClient,
    RedisJournal,
    RedisLanguages,
    RedisSessions,
    RedisUserLimits,
    open_client,
    user_tag,
)
from daemon.state.redis.keys import message_tag
from tests.redis.server import RedisServer

QUESTION = "How do I change the delivery address of my order before it ships? " * 2
ANSWER = ("You can change it in My Orders > Edit address until the parcel is handed over. " * 4)[
    :300
]


def _user(n: int) -> User:
    number = f"+9715{n:08d}"
    return User(number, number)


def _message(user: User, i: int) -> Inbound:
    # A Meta wamid is ~60 characters of base64.
    return Inbound(
        f"wamid.HBgMOTcxNTAwMDAwMDAwFQIAEhggQTNFQjc2{user.key[-8:]}{i:04d}AA==",
        user,
        Kind.TEXT,
        text=QUESTION[:100],
        timestamp=1_760_000_000 + i,
        channel_ref="123456789012345",
    )


async def _one_user(client: RedisClient, keys: Keys, n: int, messages: int, host: Leases) -> None:
    user = _user(n)
    tag = user_tag(user.key)
    journal = RedisJournal(client, keys)
    inbox = [_message(user, i) for i in range(messages + 1)]
    await journal.accept(inbox)
    lease = await host.acquire(tag)
    assert isinstance(lease, Lease)
    turns = journal.fenced(lease)
    sessions = RedisSessions(client, keys)
    await sessions.start(lease, user.key, f"0Mw{n:015d}AAA-{n:08d}-session")
    for message in inbox[:-1]:  # finished: only their markers stay after the hour ...
        await sessions.next_sequence(lease, f"0Mw{n:015d}AAA-{n:08d}-session")
        await turns.progress(message.message_id, Stage.DONE, outcome="answered")
    for message in inbox[:-2]:  # ... so drop the records the hour would have expired
        await client.delete([keys.turn(tag, message_tag(message.message_id))])
    last = inbox[-2]
    await turns.progress(
        last.message_id,
        Stage.DONE,
        transcript=Transcript(QUESTION[:100], "en"),
        answer=ANSWER,
        text_ids=["wamid.HBgMOTcxNTAwMDAwMDAwFQIAERgSQUJDREVGMDEyMzQ1Njc4OUFCAA=="] * 2,
        outcome="answered",
    )
    await turns.progress(inbox[-1].message_id, Stage.ANSWERED, answer=ANSWER)
    await RedisLanguages(client, keys).remember(user.key, "en")
    await RedisUserLimits(client, keys, LimitsConfig()).admit(user.key)


class _Counting:
    """Counts the commands a coredis client sends (bench only: wraps its execute_command)."""

    def __init__(self, client: RedisClient) -> None:
        self.sent = 0
        inner = client.execute_command

        async def counted(command: Any) -> Any:
            self.sent += 1
            return await inner(command)

        client.execute_command = counted  # type: ignore[method-assign]


async def _turn(client: RedisClient, keys: Keys, n: int, *, voice: bool) -> dict[str, int]:
    """The Redis commands of one turn, by step."""
    from daemon.state.redis import RedisPendingContext, RedisResponses

    user = _user(1_000_000 + n)
    tag = user_tag(user.key)
    message = _message(user, 0)
    leases = Leases(client, keys, ttl=15)
    journal = RedisJournal(client, keys)
    sessions = RedisSessions(client, keys)
    limits = RedisUserLimits(client, keys, LimitsConfig())
    responses = RedisResponses(client, keys, default_ttl=3600)
    pending = RedisPendingContext(client, keys, ttl=1200)
    steps: dict[str, int] = {}
    counter = _Counting(client)

    async def step(name: str) -> None:
        steps[name] = counter.sent
        counter.sent = 0

    await journal.accept([message])
    lease = await leases.acquire(tag)
    assert isinstance(lease, Lease)
    await step("webhook: touch, accept, acquire")
    await limits.admit(user.key)
    turns = journal.fenced(lease)
    await turns.attempt(message.message_id)
    await step("turn start: limits, attempt")
    if voice:
        await limits.spend(user.key, Limit.DAILY_STT_SECONDS, 8.0)
        await turns.progress(message.message_id, Stage.TRANSCRIBED, transcript=Transcript("hi"))
        await step("voice: STT limit, transcribed")
    await responses.lookup("q")
    await pending.take(user.key)
    await sessions.start(lease, user.key, "s-1")  # the first turn of a session only
    await sessions.next_sequence(lease, "s-1")
    await responses.record("q", user.key, _reply())
    await turns.progress(message.message_id, Stage.ANSWERED, answer=ANSWER)
    await step("agent: cache lookup, pending, session start, sequenceId, record, answered")
    await leases.may_send(lease)
    await turns.progress(message.message_id, Stage.TEXT_SENT, text_ids=["x"])
    await step("text: may-send, text sent")
    if voice:
        await limits.spend(user.key, Limit.DAILY_TTS_CHARACTERS, 300)
        await leases.may_send(lease)
        await turns.progress(message.message_id, Stage.VOICE_SENT, voice_id="y")
        await step("voice note: TTS limit, may-send, voice sent")
    await turns.progress(message.message_id, Stage.DONE, outcome="answered")
    await RedisLanguages(client, keys).remember(user.key, "en")
    await leases.release(lease)
    await step("end: done, language, release")
    return steps


def _reply() -> Any:
    from daemon.model import AgentMessage, AgentReply

    return AgentReply((AgentMessage("Inform", ANSWER),))


async def _used_memory(client: RedisClient) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])


async def measure(users: int, messages: int) -> dict[str, Any]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: apt-get install redis-server")
    server = RedisServer(binary)
    server.start()
    try:
        async with open_client(RedisConfig(url=server.url, max_connections=8)) as client:
            keys = Keys("wa-agentd:")
            host = Leases(client, keys, ttl=600)
            before = await _used_memory(client)
            limiter = trio.CapacityLimiter(64)

            async def one(n: int) -> None:
                async with limiter:
                    await _one_user(client, keys, n, messages, host)

            async with trio.open_nursery() as nursery:
                for n in range(users):
                    nursery.start_soon(one, n)
            after = await _used_memory(client)
            tag = user_tag(_user(0).key)
            samples = {
                "seen marker": keys.seen(tag, message_tag(_message(_user(0), 0).message_id)),
                "finished record": keys.turn(
                    tag, message_tag(_message(_user(0), messages - 1).message_id)
                ),
                "open record": keys.turn(tag, message_tag(_message(_user(0), messages).message_id)),
                "open queue": keys.open(tag),
                "lease": keys.lease(tag),
                "fence": keys.fence(tag),
                "session": keys.session(tag),
                "language": keys.user(tag, "lang"),
                "limits bucket": keys.user(tag, "bucket"),
                "limits day": keys.user(tag, "day"),
            }
            per_key = {name: await client.memory_usage(key) for name, key in samples.items()}
            key_count = await client.dbsize()
            index_bytes = await client.memory_usage(keys.work())
        # A client of its own, its scripts loaded by a first turn: each call one round trip.
        async with open_client(RedisConfig(url=server.url)) as client:
            await _turn(client, keys, 0, voice=True)
            text_turn = await _turn(client, keys, 1, voice=False)
            voice_turn = await _turn(client, keys, 2, voice=True)
    finally:
        server.close()
    return {
        "users": users,
        "messages_per_user_7d": messages,
        "keys": key_count,
        "used_memory_delta": after - before,
        "bytes_per_user": round((after - before) / users),
        "memory_usage_per_key": per_key,
        "work_index_bytes": index_bytes,
        "assumed": {"question_chars": 100, "answer_chars": 300, "wamid_chars": 60},
        "round_trips_text_turn": text_turn,
        "round_trips_voice_turn": voice_turn,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    result = trio.run(measure, args.users, args.messages)
    print(f"{result['users']} users, {result['messages_per_user_7d']} messages each in 7 days")
    print(f"  keys: {result['keys']}, used_memory grew {result['used_memory_delta']} bytes")
    print(f"  per user: {result['bytes_per_user']} bytes")
    for name, size in result["memory_usage_per_key"].items():
        print(f"  {name:16} {size:6} bytes (MEMORY USAGE)")
    print(f"  work index: {result['work_index_bytes']} bytes for all users")
    for kind in ("text", "voice"):
        steps = result[f"round_trips_{kind}_turn"]
        print(f"Redis round trips of one {kind} turn: {sum(steps.values())}")
        for name, count in steps.items():
            print(f"  {count:2}  {name}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "redis_memory.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
