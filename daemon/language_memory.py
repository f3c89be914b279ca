"""The language each user last spoke, for the canned texts of their next turn (one host).

A voice note's holding message goes out before speech-to-text says which language it is
in, so the turn starts from the language of the user's last turn ([lanes] remembered_users
users for [lanes] remembered_ttl seconds, then the default of daemon/language.py applies).
With several hosts the same map lives in Redis (daemon/state/redis/language.py); both are
``Languages`` of daemon/state/base.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import TTLCache


class LanguageMemory:
    """Bounded (LRU beyond ``max_users``) and forgetful (``ttl`` seconds after the last turn).
    Neither method waits for anything: neither is a checkpoint."""

    def __init__(
        self,
        *,
        max_users: int = 10_000,
        ttl: float = 86400.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._languages: TTLCache[str, str] = TTLCache(maxsize=max_users, ttl=ttl, timer=clock)

    async def get(self, user: str) -> str | None:
        return self._languages.get(user)

    async def remember(self, user: str, language: str) -> None:
        self._languages[user] = language
