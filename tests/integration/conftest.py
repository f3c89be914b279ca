"""Integration fixtures: the real daemon and the three simulators on loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from daemon.sim.stack import Stack, open_stack


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with open_stack() as s:
        yield s
