"""Dedupe of inbound message ids: Meta redelivers, and a redelivery must not be answered twice.

In memory, bounded by count and by age (LRU + TTL). Ids are kept as long as Meta may
redeliver (7 days by default, [inbox] dedupe_ttl). The check and the mark are separate so the
web layer can mark an id only once its message was really queued: an id whose message was
refused (queue full, answered 503) must be processed when Meta retries it.
"""

from __future__ import annotations

from collections.abc import Callable

import trio
from cachetools import TTLCache


class Inbox:
    def __init__(
        self,
        *,
        max_ids: int,
        ttl: float,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._seen: TTLCache[str, bool] = TTLCache(maxsize=max_ids, ttl=ttl, timer=clock)

    def seen(self, message_id: str) -> bool:
        return message_id in self._seen

    def mark(self, message_id: str) -> None:
        self._seen[message_id] = True

    def forget(self, message_id: str) -> None:
        self._seen.pop(message_id, None)

    def __len__(self) -> int:
        return len(self._seen)
