"""The response cache: common questions answered in milliseconds, never with another's answer.

How the turn uses it (``rules`` decides, ``normalize`` builds the key)::

    q = normalize_question(text)
    u = hashed(user.key)                        # never the raw number
    opens = not sessions.has(user) and not pending.has(u)
    decision = rules.decide(q, opens_conversation=opens)
    if decision.cacheable:
        key = question_key(q, agent_id=..., language=...)
        hit = responses.lookup(key)
        if hit is not None:
            pending.remember(u, text, hit.text)  # the user now "owes context", see below
            return hit.reply                     # no Agentforce call
    earlier = pending.take(u)
    to_agent = with_context(text, *earlier) if earlier else text
    reply = await agent.send(user, to_agent)      # in the user's own session
    if decision.cacheable and earlier is None:    # only the question asked verbatim is evidence
        responses.record(key, u, reply, decision.ttl)

Cross-user safety. The agent answers in each user's own session, and an Agentforce session can
know who the user is (context variables, actions), so even a general-looking question can get a
personal answer. An answer is therefore *served to others* only after ``confirmations``
(default 2) **different** users got the **same** answer text from the agent for the same key;
until then it is a candidate and every user still asks the agent. The same user asking twice
confirms nothing. When a user gets a *different* answer for a key (another text, or a reply
that asks back, escalates, confirms an action), the key is *volatile*: its answer depends on
who asks, so it is never cached; the verdict is remembered for the TTL. Replies that are only
technical trouble (Failure, Error, SessionEnded, no text) are never cached and prove nothing
either way. Only replies made of ``Inform`` messages are cached (an Inquire or Confirm starts a
flow in the agent's session that a cached copy would skip).

User keys are stored only as a hash of what the caller passes (pass ``observe.logs.hashed``).
Answers are compared after NFKC and white-space folding, so a trailing newline does not make a
key volatile. An agent that paraphrases itself on every call makes its keys volatile: the cache
then simply does not help, which is the safe way to fail.

Storage: cachetools ``TLRUCache`` (one LRU order, a TTL per entry read from the entry by
``ttu``), with ``timer=clock`` so tests run on trio's MockClock. One TLRU rather than a
``TTLCache`` per TTL bucket: operator rules may use any TTL in 1-24 h, and one LRU order gives
one memory bound. Confirmed answers, candidates and volatile verdicts live in three caches of
``max_entries`` each, so a flood of one-off questions (candidates) never evicts the confirmed
answers that give the hits. Expiry is absolute — the time the answer was last observed from the
agent (its confirmation) plus the TTL — never sliding: a popular answer must still expire
(reference/anchors.md §B.2).

A follow-up after a cached answer still reaches the agent with the context the user expects.
A cache hit never reaches the user's agent session, so the agent does not know what the user
was told. The turn therefore remembers the exchange (``PendingContext.remember``); while it is
remembered, the user's next message is *not* an opener (``PendingContext.has``), and when that
message goes to the agent the turn takes the exchange (``PendingContext.take``) and prepends one
context line (``with_context``): ``Earlier I asked: "<q>" and you answered: "<a>".`` The line
is written in the user's voice because the agent reads it as the user's message. Give
``PendingContext`` a TTL of the agent session idle time ([agentforce] session_idle): after that
the user starts afresh anyway.
"""

from __future__ import annotations

import hashlib
import json
import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
from cachetools import TLRUCache, TTLCache

from daemon.model import AgentMessage, AgentReply

log = logging.getLogger(__name__)

# Only plain answers are shared. Everything else either is trouble or starts a flow.
CACHEABLE_TYPES = frozenset({"Inform"})
# Technical trouble: not an answer to the question, so not evidence that answers differ.
_TROUBLE_TYPES = frozenset({"Failure", "Error", "SessionEnded"})


@dataclass(frozen=True)
class CachedAnswer:
    """A confirmed answer as served: the agent's messages, when confirmed, hits so far."""

    messages: tuple[AgentMessage, ...]
    created_at: float
    hits: int

    @property
    def reply(self) -> AgentReply:
        return AgentReply(self.messages)

    @property
    def text(self) -> str:
        return self.reply.text


@dataclass(frozen=True)
class ResponseCacheStats:
    hits: int
    misses: int
    entries: int  # confirmed answers
    candidates: int  # answers waiting for confirmation
    volatile: int  # keys whose answer differs between users
    bytes: int  # approximate: UTF-8 size of the stored answer texts
    confirmed_total: int  # answers that became servable, since start
    volatile_total: int  # keys found volatile, since start


@dataclass
class _Entry:
    messages: tuple[AgentMessage, ...]
    digest: bytes  # what "the same answer" compares
    ttl: float
    created_at: float
    size: int
    users: set[bytes] = field(default_factory=set)
    hits: int = 0


def _ttu(_key: str, entry: _Entry, now: float) -> float:
    return now + entry.ttl


def _volatile_ttu(_key: str, ttl: float, now: float) -> float:
    return now + ttl


def _answer_digest(reply: AgentReply) -> bytes:
    parts = [
        [m.type, " ".join(unicodedata.normalize("NFKC", m.text).split())] for m in reply.messages
    ]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).digest()


def _user_digest(user_hash: str) -> bytes:
    # Hashed again, so a caller that passes a raw number still stores none.
    return hashlib.blake2s(user_hash.encode(), digest_size=16, person=b"wa-resp").digest()


class ResponseCache:
    """Confirmed answers by question key. Touch only from one trio run (not thread-safe)."""

    def __init__(
        self,
        *,
        max_entries: int,
        default_ttl: float,
        clock: Callable[[], float] = trio.current_time,
        confirmations: int = 2,
        cacheable_types: frozenset[str] = CACHEABLE_TYPES,
    ) -> None:
        if confirmations < 1:
            raise ValueError(f"confirmations must be >= 1, got {confirmations}")
        if default_ttl <= 0:
            raise ValueError(f"default_ttl must be > 0, got {default_ttl}")
        self._clock = clock
        self._default_ttl = float(default_ttl)
        self._confirmations = confirmations
        self._cacheable_types = cacheable_types
        self._answers: TLRUCache[str, _Entry] = TLRUCache(max_entries, _ttu, clock)
        self._candidates: TLRUCache[str, _Entry] = TLRUCache(max_entries, _ttu, clock)
        self._volatile: TLRUCache[str, float] = TLRUCache(max_entries, _volatile_ttu, clock)
        self._hits = 0
        self._misses = 0
        self._confirmed_total = 0
        self._volatile_total = 0

    # -- serving --------------------------------------------------------------------------

    def lookup(self, key: str, *, count_miss: bool = True) -> CachedAnswer | None:
        """The confirmed, unexpired answer for ``key``; None otherwise (a miss).
        ``count_miss=False``: a look ahead whose miss the caller will look up again."""
        entry = self._answers.get(key)
        if entry is None:
            self._misses += count_miss
            return None
        entry.hits += 1
        self._hits += 1
        return CachedAnswer(entry.messages, entry.created_at, entry.hits)

    def holds(self, key: str, reply: AgentReply) -> bool:
        """Whether ``reply`` is, right now, the confirmed answer for ``key`` — what a lookup
        would serve. Not counted as a lookup. Single flight asks this before it hands one
        user's agent reply to the others: only what the cache itself would serve is shared
        (never a Failure, an Escalate, an Inquire, nor an answer that made the key volatile).
        """
        entry = self._answers.get(key)
        return entry is not None and entry.digest == _answer_digest(reply)

    # -- learning -------------------------------------------------------------------------

    def record(
        self,
        key: str,
        user_hash: str,
        reply: AgentReply,
        ttl: float | None = None,
        *,
        trusted: bool = False,
    ) -> None:
        """What the agent answered ``user_hash`` (hashed user key) for ``key``.

        Call it only with a reply the agent gave to this question, sent as the user asked it
        (no context line in front), in this user's own session — never with a served cached
        answer. ``trusted``: an operator FAQ rule vouches that the question has one answer for
        everybody, so one answer confirms it (and concurrent askers can share one agent call).
        """
        ttl = self._default_ttl if ttl is None else float(ttl)
        if ttl <= 0 or not reply.text.strip() or reply.has(*_TROUBLE_TYPES):
            return  # trouble, not an answer: no evidence either way
        if key in self._volatile:
            return
        if any(m.type not in self._cacheable_types for m in reply.messages):
            # The agent asked back, escalated or wants a confirmation for this user: the
            # question starts a flow, so its answer depends on who asks.
            self._mark_volatile(key, ttl, "reply is not a plain answer")
            return
        digest = _answer_digest(reply)
        user = _user_digest(user_hash)

        answer = self._answers.get(key)
        if answer is not None:
            if answer.digest != digest:
                self._mark_volatile(key, ttl, "answer differs from the cached one")
            return

        candidate = self._candidates.get(key)
        if candidate is None:
            now = self._clock()
            size = sum(len(m.text.encode()) for m in reply.messages)
            candidate = _Entry(reply.messages, digest, ttl, now, size, {user})
            self._candidates[key] = candidate
        elif candidate.digest != digest:
            self._mark_volatile(key, ttl, "users got different answers")
            return
        else:
            candidate.users.add(user)
            candidate.ttl = min(candidate.ttl, ttl)
        if trusted or len(candidate.users) >= self._confirmations:
            self._confirm(key, candidate)

    def _confirm(self, key: str, candidate: _Entry) -> None:
        self._candidates.pop(key, None)
        # Expiry counts from now: this is the latest time the agent gave this answer.
        candidate.created_at = self._clock()
        candidate.users = set()  # no longer needed
        self._answers[key] = candidate
        self._confirmed_total += 1
        log.info("response cache: answer confirmed (ttl %.0f s)", candidate.ttl)

    def _mark_volatile(self, key: str, ttl: float, why: str) -> None:
        self._answers.pop(key, None)
        self._candidates.pop(key, None)
        self._volatile[key] = ttl
        self._volatile_total += 1
        log.info("response cache: key marked volatile for %.0f s: %s", ttl, why)

    # -- admin and metrics ----------------------------------------------------------------

    def forget(self, key: str) -> bool:
        """Drop one key's answer and evidence; True if there was an answer to drop."""
        self._candidates.pop(key, None)
        self._volatile.pop(key, None)
        return self._answers.pop(key, None) is not None

    def flush(self) -> int:
        """Drop everything; the number of entries (answers, candidates, verdicts) dropped."""
        n = 0
        for cache in (self._answers, self._candidates, self._volatile):
            cache.expire()
            n += len(cache)
            cache.clear()
        return n

    def stats(self) -> ResponseCacheStats:
        for cache in (self._answers, self._candidates, self._volatile):
            cache.expire()  # len() counts expired items until they are purged
        size = sum(e.size for e in self._answers.values())
        size += sum(e.size for e in self._candidates.values())
        return ResponseCacheStats(
            hits=self._hits,
            misses=self._misses,
            entries=len(self._answers),
            candidates=len(self._candidates),
            volatile=len(self._volatile),
            bytes=size,
            confirmed_total=self._confirmed_total,
            volatile_total=self._volatile_total,
        )

    def __len__(self) -> int:
        self._answers.expire()
        return len(self._answers)


# --------------------------------------------------------------------------- follow-ups


class PendingContext:
    """Per user, the last exchange served from the cache, until their next agent turn."""

    def __init__(
        self,
        *,
        max_users: int,
        ttl: float,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._pending: TTLCache[bytes, tuple[str, str]] = TTLCache(max_users, ttl, clock)

    def remember(self, user_hash: str, question: str, answer: str) -> None:
        """The user was just served ``answer`` from the cache for ``question``."""
        self._pending[_user_digest(user_hash)] = (question, answer)

    def has(self, user_hash: str) -> bool:
        """Whether the user was served from the cache recently: their next message is then
        part of a conversation, not an opener."""
        return _user_digest(user_hash) in self._pending

    def take(self, user_hash: str) -> tuple[str, str] | None:
        """The (question, answer) to prepend to the user's next agent message, once."""
        return self._pending.pop(_user_digest(user_hash), None)

    def __len__(self) -> int:
        self._pending.expire()
        return len(self._pending)


_HEAD = 'Earlier I asked: "'
_MID = '" and you answered: "'
_TAIL = '".'


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + "…"


def with_context(
    question: str, previous_question: str, previous_answer: str, *, max_chars: int = 600
) -> str:
    """``question`` with one line in front that tells the agent what the user was told.

    The context line (at most ``max_chars``) quotes the previous question and answer on one
    line each, clipped with "…" (the answer gives way first, the question keeps at least a
    third of the room). When ``max_chars`` leaves no useful room, ``question`` is returned as
    is: better no context than a misleading fragment.
    """
    q = " ".join(previous_question.split())
    a = " ".join(previous_answer.split())
    room = max_chars - len(_HEAD) - len(_MID) - len(_TAIL)
    if room < 20 or not (q or a):
        return question
    if len(q) + len(a) > room:
        q = _clip(q, max(room // 3, room - len(a)))
        a = _clip(a, room - len(q))
    return f"{_HEAD}{q}{_MID}{a}{_TAIL}\n\n{question}"
