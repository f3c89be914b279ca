"""The state a daemon keeps, as protocols every backend implements (the interface module).

    protocol           one host                        several hosts (issue 13)
    -----------------  ------------------------------  ---------------------------------
    Inbox, Backlog     sqlite.SqliteStore              redis.RedisJournal
    Journal            sqlite.SqliteStore              redis.FencedJournal (per lease)
    Fence              turn.flow.UNFENCED (always may) partial(Leases.may_send, lease)
    SessionLog         sqlite.SqliteStore              redis.RedisSessions
    Store (all four)   sqlite.SqliteStore, memory.MemoryStore
    Languages          language_memory.LanguageMemory  redis.RedisLanguages
    DeferredMessages   memory.MemoryDeferred           redis.RedisDeferred
    UserLimits         limits.MemoryUserLimits         redis.RedisUserLimits
    Responses          memory.MemoryResponses          redis.RedisResponses
    PendingContexts    memory.MemoryPending            redis.RedisPendingContext
    VoiceNotes         cache.AudioCache                redis.RedisAudio
    MediaIdStore       (cache.MediaIds, sync)          redis.RedisMediaIds
    PublicMediaStore   (state.PublicMedia, sync)       redis.RedisPublicMedia

``[state] backend`` picks the store (daemon/state/__init__.py ``open_store``): ``sqlite``,
durable, on one host; ``memory``, for tests and throw-away runs (a restart forgets);
``redis`` for several hosts comes with issue 13. The two sync classes in brackets are read
by the channels without ``await`` today; they move behind their protocols when the
channels take them (their Redis forms already fit).

The shape follows slack-sdk's ``oauth/installation_store/``: this module says what a backend
does, one module (or package) per backend says how; mypy holds each backend to these
protocols (the ``_fits`` checks at the end of sqlite/store.py, memory.py and redis/__init__.py).

Every method is async, even where one host answers from memory: a backend shared by several
hosts answers over the network. What stays per host on purpose is listed in
daemon/state/redis/__init__.py (circuit breakers, the hosts' own cache tiers).

A message's turn moves through ``Stage``s; its ``TurnRecord`` is the message with how far its
turn got and what it got there (transcript, answer, ids of the messages sent).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol

from daemon.cache.response import CachedAnswer
from daemon.limits.base import UserLimits as UserLimits
from daemon.model import AgentReply, Inbound, Transcript


class StoreError(Exception):
    """The store cannot be used (closed, or made by a newer daemon)."""


class StoreClosed(StoreError):
    pass


class Stage(enum.StrEnum):
    """How far a turn got. The first six are in order; the last three are final."""

    RECEIVED = "received"
    TRANSCRIBED = "transcribed"
    ANSWERED = "answered"
    TEXT_SENT = "text_sent"
    VOICE_SENT = "voice_sent"
    DONE = "done"
    FAILED = "failed"  # given up (e.g. it crashed the daemon too often)
    APOLOGIZED = "apologized"  # the user got the apology in place of the answer


FINISHED = frozenset({Stage.DONE, Stage.FAILED, Stage.APOLOGIZED})
# The final stages share one rank: once a turn is finished, nothing moves it any more.
RANK = {stage: min(i, 5) for i, stage in enumerate(Stage)}


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One message's row: the message itself and how far its turn got."""

    inbound: Inbound
    stage: Stage
    transcript: str | None = None
    transcript_language: str | None = None
    answer: str | None = None  # the final user-facing text
    outcome: str | None = None
    text_ids: tuple[str, ...] = ()  # outbound ids of the answer's text parts sent so far
    voice_id: str | None = None
    attempts: int = 0  # runs counted by ``attempt``
    received_at: float = 0.0  # wall clock

    @property
    def finished(self) -> bool:
        return self.stage in FINISHED

    def reached(self, stage: Stage) -> bool:
        """Whether the turn got at least as far as ``stage`` (by rank, not by name)."""
        return RANK[self.stage] >= RANK[stage]


# -- the turns ----------------------------------------------------------------------------------


class Inbox(Protocol):
    """The durable inbox as the webhook sees it (daemon/intake.py): a message is written down
    before its webhook is answered 200, in one step with its dedupe check."""

    async def accept(self, messages: Sequence[Inbound]) -> list[Inbound]:
        """Record every message not seen before; return those, in order. Once this returns,
        the new messages survive a crash, so the webhook may answer 200."""
        ...

    async def forget(self, message_ids: Sequence[str]) -> int:
        """Delete accepted messages that could not be queued (so the provider's redelivery is
        turned); only turns nobody has started go. Returns how many went."""
        ...

    async def progress(
        self, message_id: str, stage: Stage, *, outcome: str | None = None
    ) -> Stage | None:
        """The intake's note on a message it accepted a moment ago (a per-user limit)."""
        ...

    async def finish_unanswered(self, message_ids: Sequence[str], *, outcome: str) -> int:
        """Mark messages done without a turn; they stay duplicates for the dedupe window."""
        ...


class Journal(Protocol):
    """Where a turn writes down how far it got, so that after a crash or a restart it resumes
    there: a text already sent is not sent again, an answer already received is not asked
    again. With several hosts this is the journal of one user's lease: every write is fenced,
    refused once another host holds the user (redis/journal.py ``fenced``)."""

    async def get(self, message_id: str) -> TurnRecord | None: ...

    async def attempt(self, message_id: str) -> int:
        """Count one more run of the turn and return the count (``KeyError``: the journal
        does not hold the message), so a turn that keeps crashing the daemon is given up."""
        ...

    async def release(self, message_id: str) -> None:
        """The run counted by ``attempt`` ended without taking the daemon down (finished,
        deferred or cancelled by a drain): it does not count towards giving up."""
        ...

    async def progress(
        self,
        message_id: str,
        stage: Stage,
        *,
        transcript: Transcript | None = None,
        answer: str | None = None,
        outcome: str | None = None,
        text_ids: Sequence[str] | None = None,
        voice_id: str | None = None,
    ) -> Stage | None:
        """Record that the turn reached ``stage`` (stages only move forward), with what it
        got there; ``None`` when the message is unknown (forgotten, pruned)."""
        ...


class Fence(Protocol):
    """Awaited right before every message a turn sends: may this host still send for the user?

    One host always may (turn/flow.py ``UNFENCED``). With several hosts, a host whose lease
    on the user was taken over by another must not send: the fence is the lease's own check,
    ``functools.partial(leases.may_send, lease)`` (redis/leases.py), which raises
    ``LeaseLost``; the turn lets whatever it raises through, like a bug, and sends nothing."""

    def __call__(self) -> Awaitable[None]: ...


class Backlog(Protocol):
    """The open turns, as the resume loop (daemon/resume.py) and the maintenance jobs see them."""

    async def unfinished(self) -> list[TurnRecord]:
        """Turns not yet finished, oldest first: what to resume."""
        ...

    async def progress(
        self, message_id: str, stage: Stage, *, outcome: str | None = None
    ) -> Stage | None: ...

    async def counts(self) -> dict[str, int]:
        """Turns by stage, every stage present (a gauge per stage)."""
        ...

    async def prune(self, now: float | None = None) -> int:
        """Drop what the dedupe window no longer needs; returns how many went."""
        ...


class SessionLog(Protocol):
    """Agentforce sessions written through (user -> session id, next sequence id, last use on
    the wall clock), so a restart continues the users' conversations."""

    async def load_sessions(self) -> dict[str, tuple[str, int, float]]:
        """Least recently used first (the order an LRU is filled in)."""
        ...

    async def save_session(
        self, user: str, session_id: str, next_sequence: int, last_used: float
    ) -> None: ...

    async def drop_session(self, user: str, session_id: str | None = None) -> bool:
        """Forget the user's session (with ``session_id``: only if it is still that one)."""
        ...

    async def drop_idle_sessions(self, idle_since: float) -> int: ...


class Store(Journal, Inbox, Backlog, SessionLog, Protocol):
    """A whole backend of one host: the inbox, the journal, the backlog and the sessions in
    one place, with its readiness probe. (Its ``progress`` is the journal's, which takes
    every call the inbox's and the backlog's make.)"""

    async def probe(self) -> None:
        """Raise when the backend can't take writes now (for /readyz)."""
        ...

    async def close(self) -> None: ...


# -- per-user maps a second host must share -----------------------------------------------------


class Languages(Protocol):
    """The language each user last spoke, for the canned texts of their next turn."""

    async def get(self, user: str) -> str | None: ...

    async def remember(self, user: str, language: str) -> None: ...


class DeferredMessages(Protocol):
    """Per user, the ids of messages whose turn was deferred, oldest first (daemon/lanes.py:
    a later message of the same user waits behind them)."""

    async def ids(self, user: str) -> list[str]: ...

    async def add(self, user: str, message_id: str) -> None:
        """Append ``message_id`` unless it is there already."""
        ...

    async def discard(self, user: str, message_id: str) -> None: ...


class Responses(Protocol):
    """The response cache's confirmed answers and evidence (daemon/cache/response.py says the
    rules): ``user`` is the hashed user key, the same on every host."""

    async def lookup(self, key: str, *, count_miss: bool = True) -> CachedAnswer | None: ...

    async def holds(self, key: str, reply: AgentReply) -> bool: ...

    async def record(
        self,
        key: str,
        user: str,
        reply: AgentReply,
        ttl: float | None = None,
        *,
        trusted: bool = False,
    ) -> object: ...

    async def forget(self, key: str) -> bool: ...

    async def flush(self) -> int: ...


class PendingContexts(Protocol):
    """Per user, the exchange served from the cache that their next agent message carries."""

    async def remember(self, user: str, question: str, answer: str) -> None: ...

    async def has(self, user: str) -> bool: ...

    async def take(self, user: str) -> tuple[str, str] | None:
        """The exchange, once: whichever turn (on whichever host) takes it first."""
        ...


class VoiceNotes(Protocol):
    """Rendered voice notes (Ogg/Opus) by content address (``Speech.audio_key``)."""

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, data: bytes) -> None: ...


class MediaIdStore(Protocol):
    """The WhatsApp media id of a voice note uploaded to one business number."""

    async def get(self, audio_key: str, phone_number_id: str) -> str | None: ...

    async def put(self, audio_key: str, phone_number_id: str, media_id: str) -> None: ...

    async def forget(self, audio_key: str, phone_number_id: str) -> None: ...


class PublicMediaStore(Protocol):
    """Voice notes a provider fetches from a public URL (Twilio's ``/media/<token>``)."""

    async def put(self, data: bytes, mime_type: str) -> str:
        """Keep ``data`` for a while; returns the token that names it in the URL."""
        ...

    async def get(self, token: str) -> tuple[bytes, str] | None: ...

    async def discard(self, token: str) -> None: ...
