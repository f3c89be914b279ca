"""Integration fixtures: the real daemon and the three simulators on loopback ports.

``stack`` is the daemon on Meta's Cloud API. ``either`` is the same stack once per WhatsApp
provider, and ``provider`` just the name, for tests that open their own stack with options:
the turn, the lanes and the web layer never branch on the provider, so every behaviour that
is not about one provider's wire runs on both (issue 6).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from daemon.sim.stack import Stack, open_stack

PROVIDERS = ["meta", "twilio"]


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with open_stack() as s:
        yield s


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def either(provider: str) -> AsyncIterator[Stack]:
    async with open_stack(provider=provider) as s:
        yield s
