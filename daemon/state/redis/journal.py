"""The durable inbox and the turn journal in Redis: the SQLite store's records, shared.

The same promise as daemon/state/sqlite/, kept by several hosts at once: a message is
written here before its webhook is answered 200, in the same atomic step as its dedupe
check; each turn records how far it got (``Stage``) with what it got (transcript, answer,
ids of the messages sent), so that any host can resume it where it stopped.

Per user (keys.py for the layout), all under the user's hash tag:

- ``seen:m`` — the dedupe marker, ``SET NX`` with ``dedupe_ttl`` (7 days: Meta redelivers
  that long). Its value is the accepting call's token, so a call that coredis retries after
  a lost reply still counts its messages as new rather than as their own duplicates.
- ``turn:m`` — the record, a hash with the store's columns. Open, it lives ``open_ttl``
  (the retry window plus an hour: past the window the turn is given up anyway); finished,
  ``finished_ttl`` (an hour), because from then on only the marker is needed — in Redis
  memory is the price, and a finished record is ten times the size of its marker.
  ``get`` of a record gone that way is ``None``, as in SQLite after ``prune``.
- ``open`` — the user's open turns, scored by arrival (Redis' clock, µs): the per-user
  order across hosts is the order in which Redis accepted the messages.

Writes after ``accept`` are fenced (leases.py): ``fenced(lease)`` gives the turn a journal
with the store's own method signatures, bound to one user and one fencing token, whose
every write is refused (``LeaseLost``) once another host holds a newer token.

The inbox side keeps the store's signatures too (daemon/intake.py's ``Inbox``: ``accept``,
``forget``, ``progress``, ``finish_unanswered``). All but ``accept`` are only ever about
messages this host accepted a moment ago, in the same webhook request, so they find the
users in a small memo of recent accepts instead of an index; and since another host may
already be running that user's turns, they touch only a turn nobody has started.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cachetools import LRUCache

from daemon.model import Inbound, Transcript
from daemon.state.base import FINISHED, RANK, Stage, TurnRecord
from daemon.state.codec import inbound_from_json, inbound_to_json
from daemon.state.redis.client import RedisClient
from daemon.state.redis.errors import LEASE_LOST, mapped
from daemon.state.redis.keys import Keys, message_tag, user_tag
from daemon.state.redis.leases import FENCE_CHECK, Lease
from daemon.state.redis.scripts import Arg, call, ms, text
from daemon.state.redis.takeover import TOUCH

HOUR = 3600.0
_LUA_RANKS = "{" + ", ".join(f"{s.value}={r}" for s, r in RANK.items()) + "}"  # state/base.py
_LUA_FINAL = "{" + ", ".join(f"{s.value}=true" for s in FINISHED) + "}"

_FIELDS = (
    "inbound", "stage", "transcript", "transcript_language", "answer", "outcome",
    "text_ids", "voice_id", "attempts", "received_at",
)  # fmt: skip

# KEYS: open, then (seen, turn) per message. ARGV: token, dedupe ms, open ms, now (wall),
# then (member, inbound json) per message. Returns the 1-based indexes of the new ones.
ACCEPT = """
local t = redis.call('TIME')
local base = tonumber(t[1]) * 1000000 + tonumber(t[2])
local new = {}
for i = 1, (#KEYS - 1) / 2 do
  local seen, turn = KEYS[2 * i], KEYS[2 * i + 1]
  if redis.call('SET', seen, ARGV[1], 'NX', 'PX', ARGV[2]) then
    redis.call('HSET', turn, 'inbound', ARGV[4 + 2 * i], 'stage', 'received', 'open', '1',
      'attempts', '0', 'text_ids', '[]', 'received_at', ARGV[4], 'updated_at', ARGV[4])
    redis.call('PEXPIRE', turn, ARGV[3])
    redis.call('ZADD', KEYS[1], base + i, ARGV[3 + 2 * i])
    new[#new + 1] = i
  elseif redis.call('GET', seen) == ARGV[1] then
    new[#new + 1] = i  -- this very call, run again by a client retry
  end
end
if #new > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return new
"""

# KEYS: open, seen, turn. ARGV: member. Only an untouched turn goes (store.forget).
FORGET = """
if redis.call('HGET', KEYS[3], 'stage') == 'received'
   and redis.call('HGET', KEYS[3], 'attempts') == '0' then
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

# KEYS: open, turn. ARGV: member, stage, outcome, now, finished ms. The intake's own notes
# (daemon/intake.py), before any lease: only a turn nobody has started yet is touched.
# Returns {the stage recorded, 1 if this call wrote}, or false when the record is gone.
NOTE = f"""
local RANK = {_LUA_RANKS}
local FINAL = {_LUA_FINAL}
local stage = redis.call('HGET', KEYS[2], 'stage')
if not stage then return false end
if stage ~= 'received' or redis.call('HGET', KEYS[2], 'attempts') ~= '0' then
  return {{stage, 0}}
end
if RANK[ARGV[2]] > RANK[stage] then stage = ARGV[2] end
redis.call('HSET', KEYS[2], 'stage', stage, 'open', FINAL[stage] and '0' or '1',
  'updated_at', ARGV[4])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'outcome', ARGV[3]) end
if FINAL[stage] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return {{stage, 1}}
"""

# KEYS: fence, turn, open. ARGV: fence, stage, now, finished ms, member, field/value pairs.
# Returns the stage now recorded, or false when the record is gone.
PROGRESS = f"""
{FENCE_CHECK}
local RANK = {_LUA_RANKS}
local FINAL = {_LUA_FINAL}
local stage = redis.call('HGET', KEYS[2], 'stage')
if not stage then return false end
if RANK[ARGV[2]] > RANK[stage] then stage = ARGV[2] end
local open = FINAL[stage] and '0' or '1'
local fields = {{'stage', stage, 'open', open, 'updated_at', ARGV[3]}}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
if FINAL[stage] then
  redis.call('ZREM', KEYS[3], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return stage
"""

# KEYS: fence, turn. ARGV: fence, delta (1 or -1). Returns the count, or false if gone.
ATTEMPT = f"""
{FENCE_CHECK}
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
local n = redis.call('HINCRBY', KEYS[2], 'attempts', ARGV[2])
if n < 0 then redis.call('HSET', KEYS[2], 'attempts', 0); n = 0 end
return n
"""

# KEYS: open. ARGV: turn key prefix. The user's open records, oldest first, as flat field
# lists; members whose record has expired are dropped on the way.
OPEN_TURNS = f"""
local out = {{}}
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local record = redis.call('HMGET', ARGV[1] .. member, {", ".join(repr(f) for f in _FIELDS)})
  if record[1] then out[#out + 1] = record else redis.call('ZREM', KEYS[1], member) end
end
return out
"""


@dataclass(frozen=True, slots=True)
class JournalTimes:
    dedupe_ttl: float = 7 * 24 * HOUR  # [inbox] dedupe_ttl
    open_ttl: float = 25 * HOUR  # [inbox] retry_window + an hour
    finished_ttl: float = HOUR

    def __post_init__(self) -> None:
        if min(self.dedupe_ttl, self.open_ttl, self.finished_ttl) <= 0:
            raise ValueError("journal TTLs must be > 0")


def _optional(value: object) -> str | None:
    return None if value is None else text(value)


def record_from_fields(values: Sequence[object]) -> TurnRecord:
    """A ``TurnRecord`` from the values of ``_FIELDS``, in that order."""
    inbound, stage, transcript, language, answer, outcome, text_ids, voice, attempts, at = (
        _optional(v) for v in values
    )
    assert inbound is not None and stage is not None
    return TurnRecord(
        inbound=inbound_from_json(inbound),
        stage=Stage(stage),
        transcript=transcript,
        transcript_language=language or None,
        answer=answer,
        outcome=outcome,
        text_ids=tuple(str(i) for i in json.loads(text_ids or "[]")),
        voice_id=voice,
        attempts=int(attempts or 0),
        received_at=float(at or 0.0),
    )


class RedisJournal:
    """The inbox side (unfenced) and the way to a fenced journal per lease."""

    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        *,
        times: JournalTimes = JournalTimes(),
        wall_clock: Callable[[], float] = time.time,
        memo_size: int = 10_000,
    ) -> None:
        self._client = client
        self._keys = keys
        self.times = times
        self._wall_clock = wall_clock
        self._accept = client.register_script(ACCEPT)
        self._forget = client.register_script(FORGET)
        self._note = client.register_script(NOTE)
        self._progress = client.register_script(PROGRESS)
        self._attempt = client.register_script(ATTEMPT)
        self._open_turns = client.register_script(OPEN_TURNS)
        self._touch = client.register_script(TOUCH)
        # message id -> user tag of what this host accepted lately (for forget).
        self._accepted: LRUCache[str, str] = LRUCache(maxsize=memo_size)

    @property
    def keys(self) -> Keys:
        return self._keys

    # -- inbox -----------------------------------------------------------------------------

    async def accept(self, messages: Sequence[Inbound]) -> list[Inbound]:
        """Record every message not seen before; return those, in order (store.accept).

        One script per user in the batch (a user's keys share a slot; two users' need not),
        each after touching the user in the work index (takeover.py: the touch comes first,
        so no open turn is ever outside the index). Once this returns, the new messages
        survive a Redis restart (AOF), and any host may run them."""
        by_user: dict[str, list[Inbound]] = {}
        unique: dict[str, Inbound] = {}
        for message in messages:
            if message.message_id in unique:
                continue  # a repeat inside the batch is a duplicate, as in the store
            unique[message.message_id] = message
            by_user.setdefault(user_tag(message.user.key), []).append(message)
        new: set[str] = set()
        now = repr(self._wall_clock())
        for tag, group in by_user.items():
            token = secrets.token_hex(8)
            keys = [self._keys.open(tag)]
            args: list[Arg] = [
                token,
                ms(self.times.dedupe_ttl),
                ms(self.times.open_ttl),
                now,
            ]
            for message in group:
                member = message_tag(message.message_id)
                keys += [self._keys.seen(tag, member), self._keys.turn(tag, member)]
                args += [member, inbound_to_json(message)]
            await call(self._touch, [self._keys.work()], [tag])
            for index in await call(self._accept, keys, args):
                message = group[int(index) - 1]
                new.add(message.message_id)
                self._accepted[message.message_id] = tag
        return [m for m in unique.values() if m.message_id in new]

    async def forget(self, message_ids: Sequence[str]) -> int:
        """Delete accepted messages that could not be queued (store.forget): only turns
        still at ``received`` and never attempted go."""
        removed = 0
        for message_id in message_ids:
            tag = self._accepted.pop(message_id, None)
            if tag is None:
                continue  # not accepted here lately: nothing this host may take back
            member = message_tag(message_id)
            keys = [
                self._keys.open(tag),
                self._keys.seen(tag, member),
                self._keys.turn(tag, member),
            ]
            removed += int(await call(self._forget, keys, [member]))
        return removed

    async def progress(
        self, message_id: str, stage: Stage, *, outcome: str | None = None
    ) -> Stage | None:
        """The intake's note on a message it accepted a moment ago (intake.Inbox): written
        only while no host has started its turn (``received``, never attempted) — past
        that, the turn is the holder's, whose writes are fenced. Returns the stage now
        recorded; ``None`` for a message not accepted here lately, or gone."""
        noted = await self._note_turn(message_id, stage, outcome)
        return None if noted is None else noted[0]

    async def _note_turn(
        self, message_id: str, stage: Stage, outcome: str | None
    ) -> tuple[Stage, bool] | None:
        tag = self._accepted.get(message_id)
        if tag is None:
            return None
        member = message_tag(message_id)
        keys = [self._keys.open(tag), self._keys.turn(tag, member)]
        args = [
            member,
            Stage(stage).value,
            outcome or "",
            repr(self._wall_clock()),
            ms(self.times.finished_ttl),
        ]
        result = await call(self._note, keys, args)
        return None if result is None else (Stage(text(result[0])), bool(result[1]))

    async def finish_unanswered(self, message_ids: Sequence[str], *, outcome: str) -> int:
        """Mark messages accepted here lately done without a turn (store.finish_unanswered:
        over a limit, the notice given already). Only turns still untouched move; they stay
        duplicates for the dedupe window (their markers). Returns how many moved."""
        finished = 0
        for message_id in message_ids:
            noted = await self._note_turn(message_id, Stage.DONE, outcome)
            finished += noted is not None and noted[1]
        return finished

    async def get(self, message_id: str, *, user: str) -> TurnRecord | None:
        return await self._read(user_tag(user), message_id)

    async def _read(self, tag: str, message_id: str) -> TurnRecord | None:
        with mapped():
            values = await self._client.hmget(
                self._keys.turn(tag, message_tag(message_id)), list(_FIELDS)
            )
        return None if values[0] is None else record_from_fields(values)

    async def open_turns(self, tag: str) -> list[TurnRecord]:
        """One user's turns not yet finished, oldest first."""
        rows = await call(self._open_turns, [self._keys.open(tag)], [self._keys.turn_prefix(tag)])
        return [record_from_fields(row) for row in rows]

    async def unfinished(self) -> list[TurnRecord]:
        """Every user's open turns (store.unfinished), oldest first across users. Walks the
        work index (takeover.py): one round trip per user with open work."""
        with mapped():
            tags = await self._client.zrange(self._keys.work(), 0, -1)
        records: list[TurnRecord] = []
        for tag in tags:
            records += await self.open_turns(text(tag))
        return sorted(records, key=lambda r: r.received_at)

    async def counts(self) -> dict[str, int]:
        """Open turns by stage (finished ones leave after ``finished_ttl``: not counted)."""
        counts = {stage.value: 0 for stage in Stage}
        for record in await self.unfinished():
            counts[record.stage.value] += 1
        return counts

    async def prune(self, now: float | None = None) -> int:
        """Nothing to do: every key has its TTL (store.prune's work is Redis' here)."""
        return 0

    def fenced(self, lease: Lease) -> FencedJournal:
        return FencedJournal(self, lease)

    # -- for FencedJournal ------------------------------------------------------------------

    async def _write_progress(
        self, lease: Lease, message_id: str, stage: Stage, fields: list[str]
    ) -> Stage | None:
        member = message_tag(message_id)
        keys = [
            self._keys.fence(lease.tag),
            self._keys.turn(lease.tag, member),
            self._keys.open(lease.tag),
        ]
        args: list[Arg] = [
            lease.fence,
            stage.value,
            repr(self._wall_clock()),
            ms(self.times.finished_ttl),
            member,
            *fields,
        ]
        result = await call(self._progress, keys, args)
        return None if result is None else Stage(text(result))

    async def _count_attempt(self, lease: Lease, message_id: str, delta: int) -> int | None:
        keys = [self._keys.fence(lease.tag), self._keys.turn(lease.tag, message_tag(message_id))]
        result = await call(self._attempt, keys, [lease.fence, delta])
        return None if result is None else int(result)


class FencedJournal:
    """The journal as one turn sees it (the store's signatures), valid while ``lease`` is
    the user's newest: every write checks the fencing token first, atomically."""

    def __init__(self, journal: RedisJournal, lease: Lease) -> None:
        self._journal = journal
        self.lease = lease

    async def get(self, message_id: str) -> TurnRecord | None:
        return await self._journal._read(self.lease.tag, message_id)

    async def attempt(self, message_id: str) -> int:
        count = await self._journal._count_attempt(self.lease, message_id, 1)
        if count is None:
            raise KeyError(message_id)
        return count

    async def release(self, message_id: str) -> None:
        await self._journal._count_attempt(self.lease, message_id, -1)

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
        """store.progress, refused with ``LeaseLost`` when the lease is no longer ours."""
        target = Stage(stage)
        fields: list[str] = []
        if transcript is not None:
            # "" stands for no language (store: NULL); a language code is never empty.
            fields += ["transcript", transcript.text]
            fields += ["transcript_language", transcript.language or ""]
        for name, value in (("answer", answer), ("outcome", outcome), ("voice_id", voice_id)):
            if value is not None:
                fields += [name, value]
        if text_ids is not None:
            fields += ["text_ids", json.dumps(list(text_ids))]
        return await self._journal._write_progress(self.lease, message_id, target, fields)


__all__ = ["LEASE_LOST", "FencedJournal", "JournalTimes", "RedisJournal"]
