"""The WhatsApp providers the daemon can use: this list, and nowhere else.

Adding one is a folder daemon/channels/<name>/ whose ``provider.py`` defines a ``Provider``
(daemon/channels/provider.py: its config section, secrets, builder, routes) and one line
below. Config reads the sections and secrets from here, the runtime builds the configured
one; nothing else names a provider. The first is the default of ``[channel] provider``.
"""

from __future__ import annotations

from typing import Any

from daemon.channels.meta.provider import PROVIDER as META
from daemon.channels.provider import Provider
from daemon.channels.twilio.provider import PROVIDER as TWILIO

PROVIDERS: tuple[Provider[Any], ...] = (
    META,
    TWILIO,
)


def names() -> tuple[str, ...]:
    return tuple(p.name for p in PROVIDERS)


def get(name: str) -> Provider[Any]:
    """The provider ``[channel] provider`` names (config has checked the name)."""
    for provider in PROVIDERS:
        if provider.name == name:
            return provider
    raise KeyError(name)
