"""Taking over a dead host's users: a work index, scanned for users nobody holds.

## The decision: a lease per user plus a scan, not Redis Streams per partition

Both designs keep one user's turns in order across hosts and both need fencing; they differ
in what owns what.

*Partitioned streams* put every message on one of N streams by hash of the user; a host
owns a partition through a lease and reads it with a consumer group; a dead consumer's
pending entries are claimed with ``XAUTOCLAIM``. Order holds because one host reads a
partition in order. But then:

- the unit of ownership is the partition, not the user: a 60 s agent call stalls every user
  of its partition behind it, unless the owner runs its own per-user lanes inside the
  partition — two layers of ordering;
- a host that receives a webhook usually does not own the partition, so every message
  crosses hosts; N hosts need a partition assignment and a rebalance when one joins or
  dies (hand-written, or a library we do not have on trio);
- a paused owner still needs a fencing token per partition, checked on every write and
  send, exactly as with per-user leases — ``XAUTOCLAIM`` moves the entries, it does not
  stop the old owner from sending;
- the journal (where a turn stands) is still needed beside the stream, and Redis 7.0 has
  neither ``XADD … IDMP`` nor ``XREADGROUP … CLAIM`` (8.6, 8.4; reference/redis.md §2), so
  dedupe stays a separate ``SET NX`` anyway.

*A lease per user* (leases.py) owns exactly what Agentforce serialises — one session, one
request at a time — so nothing else waits behind a slow turn. The host that accepts a
message takes the user's lease and runs the turn itself when nobody else holds it (no hop);
otherwise the holder finds the message in the user's ``open`` queue (journal.py) when its
current turn ends, because it may let go of the lease only when that queue is empty (one
atomic step), so no message is ever stranded between two hosts. Per-user order across
hosts is the order of ``open``: the order Redis accepted the messages in.

A host that dies stops renewing; its leases run out after ``lease_seconds``. What finds
its users then is this module's **work index**, ``P{work}:users``: a sorted set of user
tags with the Redis time (µs) they were last *touched*. A message's user is touched
*before* its accept — ``RedisJournal.accept`` does both, in that order — (a touch without
an accept is harmless; an accept without a touch would be a message nobody looks for), so
every open turn is behind an index entry. Every host
runs ``scan`` every few seconds: entries untouched for longer than the lease are probed —
one script on the user's slot that answers ``held`` (somebody is on it: touch again and
look later), ``idle`` (no open turn: drop the entry, if nobody touched it meanwhile) or
takes the lease and answers ``claimed`` with a new fencing token: this host now resumes
the user's open turns from their journal stage. A host paused past its lease (SIGSTOP)
wakes up with a stale token: its next write or ``may_send`` is refused (``LeaseLost``), so
it neither records nor sends anything; the user's answer comes once, from the new holder —
up to the at-least-once window (leases.py).

## Round trips per turn

Counted by ``python -m bench.redis_memory`` (client side, one command = one round trip):

    text turn                                                         16
      webhook: touch, accept, acquire                                  3
      turn start: limits, attempt                                      2
      agent: cache lookup, pending context, session start (a new
        session only), sequenceId, cache record, progress answered     6
      text: may-send, progress text sent                               2
      end: progress done, language, release-if-idle                    3
    voice turn: the above + STT limit, progress transcribed,
      TTS limit, may-send, progress voice sent                        21

Each is well under a millisecond on a LAN, against seconds of agent time. The webhook's
three can become one (a pipeline in standalone mode, or folding the touch and the acquire
into the accept script where Cluster allows). Off the turn's path: one probe per active
user every ``lease_seconds`` (plus one to drop its index entry once it is idle), one
``ZRANGEBYSCORE`` per scan, and a renewal every ``lease_seconds / 3`` of a long turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from daemon.state.redis.client import RedisClient
from daemon.state.redis.errors import mapped
from daemon.state.redis.keys import Keys
from daemon.state.redis.leases import ACQUIRE_FN, Lease, Leases, parse_acquired
from daemon.state.redis.scripts import call, ms, text

# KEYS: work. ARGV: tag. Touch with Redis' clock, so hosts' clocks never matter.
TOUCH = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000000 + tonumber(t[2]), ARGV[1])
"""

# KEYS: work. ARGV: age ms, limit. Entries untouched for longer than age, oldest first,
# with their scores (as strings, exact).
DUE = """
local t = redis.call('TIME')
local before = tonumber(t[1]) * 1000000 + tonumber(t[2]) - tonumber(ARGV[1]) * 1000
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', before, 'WITHSCORES', 'LIMIT', 0, ARGV[2])
"""

# KEYS: lease, fence, open. ARGV: holder, ttl ms, fence ttl ms.
PROBE = (
    ACQUIRE_FN
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'held'} end
if redis.call('ZCARD', KEYS[3]) == 0 then return {'idle'} end
local got = acquire(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
if got[1] == 1 then return {'claimed', got[2]} end
return {'held'}
"""
)

# KEYS: work. ARGV: tag, the score the scan saw. Drops the entry only if untouched since.
SETTLE_IDLE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""


class Probe(StrEnum):
    HELD = "held"
    IDLE = "idle"
    CLAIMED = "claimed"


@dataclass(frozen=True, slots=True)
class Claim:
    """A user this host took over: resume ``journal.fenced(lease)``'s open turns."""

    lease: Lease


class WorkIndex:
    def __init__(self, client: RedisClient, keys: Keys, leases: Leases) -> None:
        self._client = client
        self._keys = keys
        self._leases = leases
        self._touch = client.register_script(TOUCH)
        self._due = client.register_script(DUE)
        self._probe = client.register_script(PROBE)
        self._settle = client.register_script(SETTLE_IDLE)

    async def touch(self, tag: str) -> None:
        """Look at the user again a lease from now (``RedisJournal.accept`` touches before
        it accepts; see the header for why before)."""
        await call(self._touch, [self._keys.work()], [tag])

    async def probe(self, tag: str) -> tuple[Probe, Lease | None]:
        keys = [self._keys.lease(tag), self._keys.fence(tag), self._keys.open(tag)]
        args = [self._leases.holder, ms(self._leases.ttl), ms(86400.0)]
        reply = await call(self._probe, keys, args)
        verdict = Probe(text(reply[0]))
        if verdict is Probe.CLAIMED:
            lease = parse_acquired([1, reply[1]], tag, self._leases.holder)
            assert isinstance(lease, Lease)
            return verdict, lease
        return verdict, None

    async def scan(self, *, limit: int = 100) -> list[Claim]:
        """One round: probe the users untouched for longer than a lease, settle their
        entries, and return those this host took over (oldest first)."""
        due = await call(self._due, [self._keys.work()], [ms(self._leases.ttl), limit])
        claims: list[Claim] = []
        for i in range(0, len(due), 2):
            tag, score = text(due[i]), text(due[i + 1])
            verdict, lease = await self.probe(tag)
            if verdict is Probe.CLAIMED:
                assert lease is not None
                claims.append(Claim(lease))
                await self.touch(tag)  # looked at again a lease from now, should we die too
            elif verdict is Probe.HELD:
                await self.touch(tag)
            else:
                await call(self._settle, [self._keys.work()], [tag, score])
        return claims

    async def size(self) -> int:
        with mapped():
            return int(await self._client.zcard(self._keys.work()))


__all__ = ["Claim", "Probe", "WorkIndex"]
