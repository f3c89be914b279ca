"""A scrape of the real daemon on the simulators, after a text turn, a voice turn and a cache
hit: the metric names the alert rules and the dashboard may use."""

from __future__ import annotations

import pytest
import trio

from daemon.sim.stack import Stack, open_stack

FAQ = {"faq": [{"name": "opening hours", "pattern": "opening hours", "ttl": 86400}]}


async def exercise(stack: Stack) -> None:
    """A text turn, the same question again (a response-cache hit), and a voice note."""
    await stack.send_text("15550000001", "What are your opening hours?")
    await stack.wait_reports(1)
    await stack.send_text("15550000002", "What are your opening hours?")
    await stack.wait_reports(2)
    await stack.send_voice("15550000003", "Do you ship to Canada?")
    await stack.wait_reports(3)


@pytest.fixture
async def scrape() -> str:
    async with open_stack(cache=FAQ) as stack:
        with trio.fail_after(30):
            await exercise(stack)
            response = await stack.client.get(stack.daemon.admin_url + "/metrics")
    response.raise_for_status()
    return response.text
