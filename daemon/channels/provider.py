"""What a WhatsApp provider brings to the daemon, as one value (``Provider``).

A provider is a folder under daemon/channels/ plus one line in registry.py. Its ``Provider``
names everything the rest of the daemon needs to know of it, and nothing else does:

    name        the value of ``[channel] provider``
    section     its table in config.toml, and ``settings``: that table's frozen dataclass,
                constraints on its fields (daemon/fields.py), ``Needed`` ids for serving
    secrets     what it reads from the environment / $CREDENTIALS_DIRECTORY; ``needs``:
                those it cannot serve without (``wa-agentd check-config`` refuses the rest)
    build       its ``Channel`` (channels/base.py), from its section, its secrets and the
                pooled client the runtime made for it; plus the routes it adds to the
                public listener (Twilio's voice notes at /media/<token>)
    body_limit  the largest webhook body it posts, when smaller than [server]'s
    notes       warnings for ``check-config`` (a key that is optional but usually wanted)

This module imports nothing of config or the runtime: config reads the specs from the
registry, and the runtime calls ``build``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
from quart_trio import QuartTrio

from daemon.cache.media_ids import MediaIds
from daemon.channels.base import Channel

S = TypeVar("S")

Routes = Callable[[QuartTrio], None]  # adds a provider's routes to the public app


@dataclass(frozen=True)
class Wiring(Generic[S]):
    """What a provider's ``build`` is handed."""

    settings: S  # its own section
    secret: Callable[[str], str]  # a secret by name ("" when unset)
    http: httpx.AsyncClient  # the channel's pool; the runtime owns and closes it
    media_ids: MediaIds  # uploads the daemon remembers, for a provider that can reuse them


@dataclass(frozen=True)
class Built:
    channel: Channel
    routes: Sequence[Routes] = ()


def _no_limit(settings: Any) -> int | None:
    return None


def _no_notes(settings: Any, secret: Callable[[str], str]) -> list[str]:
    return []


@dataclass(frozen=True)
class Provider(Generic[S]):
    name: str
    section: str
    settings: type[S]
    secrets: tuple[str, ...]
    needs: tuple[str, ...]
    build: Callable[[Wiring[S]], Built]
    body_limit: Callable[[S], int | None] = _no_limit
    notes: Callable[[S, Callable[[str], str]], list[str]] = field(default=_no_notes)
