"""Where everything lives in Redis: one prefix, one hash tag per user (pure, no I/O).

Redis Cluster runs a multi-key command or script only when all its keys hash to one slot,
and only the part of a key between the first ``{`` and ``}`` is hashed. So every key of
one user carries the same tag — the lease, the fencing token, the turn queue and records,
the session — and every script about a user runs on one slot, atomically
(reference/redis.md §3 "Cluster").

The tag is a hash of the user key, and message ids are hashed too, so that no phone number
(nor a Meta wamid, which is base64 of one) appears in a key name: key names show up in
``SLOWLOG``, ``MONITOR``, ``--bigkeys`` and operators' terminals. It is no protection
against someone who can read the values — the turn records hold the user's address, as the
SQLite store does — nor against a brute force of the phone number space; it keeps the
numbers out of the places where nobody expects them.

Layout (P = [redis] prefix, u = user tag, m = message tag). The TTLs are set by the module
named; every key has one, or a bound stated here:

    P{u}:lease          lease "<fence> <holder>"           leases.py      lease_seconds
    P{u}:fence          latest fencing token               leases.py      1 day, refreshed
    P{u}:open           ZSET m -> arrival (µs)             journal.py     open-turn TTL
    P{u}:seen:m         dedupe marker                      journal.py     dedupe_ttl (7 d)
    P{u}:turn:m         HASH: the turn record              journal.py     open: retry window
                                                                          + 1 h; finished: 1 h
    P{u}:session        HASH: Agentforce session           sessions.py    2 x session idle
    P{u}:lang           remembered language                language.py    remembered_ttl
    P{u}:deferred       LIST of deferred message ids       deferred.py    retry window
    P{u}:pending        cached exchange owed as context    responses.py   session idle
    P{u}:bucket         HASH: token bucket                 limits.py      refill/notice
    P{u}:day:YYYYMMDD   HASH: daily counters               limits.py      2 days
    P{work}:users       ZSET u -> last touch (µs)          takeover.py    bounded: one
                                                                          member per user
                                                                          with open work
    P{rc:q}:answer|cand|users|volatile  response cache    responses.py   the rule's TTL
    P{tts:a}            Ogg/Opus bytes                     audio.py       audio TTL
    P{mid:a:n}          uploaded media id                  audio.py       media id TTL
    P{media:t}          public voice note bytes            media.py       media TTL
    P{dedupe:k}         a generic first-wins claim         dedupe.py      caller's TTL
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

_TAG_BYTES = 10  # 80 bits: no collision among any plausible number of users
_MESSAGE_BYTES = 12


def user_tag(user_key: str) -> str:
    """The hash tag of one user: the same on every host, for every daemon version."""
    digest = hashlib.blake2b(user_key.encode(), digest_size=_TAG_BYTES, person=b"wa-agentd/u")
    return digest.hexdigest()


def message_tag(message_id: str) -> str:
    digest = hashlib.blake2b(message_id.encode(), digest_size=_MESSAGE_BYTES, person=b"wa-agentd/m")
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "wa-agentd:"

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in "{} "):
            raise ValueError(f"prefix must be non-empty, without braces or spaces: {self.prefix!r}")

    # -- one user (tag u) ----------------------------------------------------------------

    def user(self, tag: str, name: str) -> str:
        return f"{self.prefix}{{{tag}}}:{name}"

    def lease(self, tag: str) -> str:
        return self.user(tag, "lease")

    def fence(self, tag: str) -> str:
        return self.user(tag, "fence")

    def open(self, tag: str) -> str:
        return self.user(tag, "open")

    def seen(self, tag: str, message: str) -> str:
        return self.user(tag, f"seen:{message}")

    def turn(self, tag: str, message: str) -> str:
        return self.user(tag, f"turn:{message}")

    def session(self, tag: str) -> str:
        return self.user(tag, "session")

    def turn_prefix(self, tag: str) -> str:
        """What ``turn(tag, m)`` is before ``m``: the scripts build record keys from it."""
        return self.user(tag, "turn:")

    # -- shared by all users -------------------------------------------------------------

    def work(self) -> str:
        return f"{self.prefix}{{work}}:users"

    def shared(self, kind: str, key: str, name: str = "") -> str:
        """A key of a shared map (``kind`` names it); ``name`` parts share its slot."""
        base = f"{self.prefix}{{{kind}:{key}}}"
        return f"{base}:{name}" if name else base

    def pattern(self, name: str) -> str:
        """SCAN pattern matching ``user(<any tag>, name)``."""
        return f"{self.prefix}{{*}}:{name}"
