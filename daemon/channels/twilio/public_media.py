"""Audio the daemon generated, kept briefly so Twilio can fetch it from a public URL.

Twilio takes outbound media only as a ``MediaUrl`` it downloads itself; there is no upload
(reference/whatsapp.md §6). So a voice note is put here under an unguessable token, served at
``GET /media/<token>``, and forgotten after a few minutes: Twilio fetches it right after the
send, and may retry for a little while.

Only bytes the daemon produced ever go in, never anything a user sent. Bounded by total
bytes (the oldest entries go first) and by age. In memory: a restart loses at most the few
voice notes in flight.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import trio

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Entry:
    data: bytes
    mime_type: str
    expires_at: float


class PublicMedia:
    def __init__(
        self,
        *,
        ttl: float = 600.0,
        max_bytes: int = 64 * MiB,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        if ttl <= 0 or max_bytes <= 0:
            raise ValueError("ttl and max_bytes must be > 0")
        self._ttl = ttl
        self._max_bytes = max_bytes
        self._clock = clock
        # Insertion order is expiry order (one TTL for all), so the front is always the
        # oldest: eviction by size and by age both pop from the front.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0

    def put(self, data: bytes, mime_type: str) -> str:
        """Keep ``data`` for ``ttl`` seconds; returns the token that names it in the URL."""
        if len(data) > self._max_bytes:
            raise ValueError(f"{len(data)} bytes exceed the public media bound {self._max_bytes}")
        self._expire()
        while self._entries and self._bytes + len(data) > self._max_bytes:
            self._pop_oldest()
        # 256 bits from the OS CSPRNG: the URL is public, the token is the only secret in it.
        token = secrets.token_urlsafe(32)
        self._entries[token] = _Entry(data, mime_type, self._clock() + self._ttl)
        self._bytes += len(data)
        return token

    def get(self, token: str) -> tuple[bytes, str] | None:
        """The bytes and MIME type behind ``token``, or None when unknown or expired.

        A dict lookup leaks nothing useful about other tokens: they are compared by a hash
        of 256 random bits, and an equal hash is then compared in full.
        """
        entry = self._entries.get(token)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._expire()
            return None
        return entry.data, entry.mime_type

    def discard(self, token: str) -> None:
        """Forget ``token`` now (the send that would have fetched it failed)."""
        entry = self._entries.pop(token, None)
        if entry is not None:
            self._bytes -= len(entry.data)

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def _expire(self) -> None:
        now = self._clock()
        while self._entries:
            entry = next(iter(self._entries.values()))
            if entry.expires_at > now:
                break
            self._pop_oldest()

    def _pop_oldest(self) -> None:
        _, entry = self._entries.popitem(last=False)
        self._bytes -= len(entry.data)
