"""The webhook route in-process (quart's test client): what it counts from a parsed batch."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from daemon.channels.base import WebhookRequest
from daemon.lanes import Lanes
from daemon.model import Batch, Inbound
from daemon.web import KNOWN_STATUSES, WebContext, create_app, status_label


class StatusChannel:
    """A channel whose every delivery carries the given statuses and nothing else."""

    name = "fake"
    text_limit = 100

    def __init__(self, statuses: Mapping[str, int]) -> None:
        self.statuses = dict(statuses)

    def handshake(self, query: Mapping[str, str]) -> str | None:
        return None

    def verify(self, request: WebhookRequest) -> bool:
        return True

    def parse(self, request: WebhookRequest) -> Batch:
        return Batch(statuses=dict(self.statuses))

    def accepted(self) -> tuple[bytes, str]:
        return b"", "text/plain"


class EmptyInbox:
    async def accept(self, messages: Sequence[Inbound]) -> list[Inbound]:
        assert not messages
        return []

    async def forget(self, message_ids: Sequence[str]) -> int:
        return 0


@asynccontextmanager
async def app_for(channel: StatusChannel) -> AsyncIterator[tuple[Any, WebContext]]:
    async def handler(message: object) -> None:
        raise AssertionError("no turns here")

    async with Lanes.open(
        handler,  # type: ignore[arg-type]
        max_lanes=1,
        max_pending=1,
        queue_size=1,
        idle_seconds=1,
        max_concurrent_turns=1,
    ) as lanes:
        ctx = WebContext(
            channel=channel,  # type: ignore[arg-type]
            inbox=EmptyInbox(),
            lanes=lanes,
            webhook_path="/webhook",
            max_body_bytes=1024,
            ready=lambda: (True, "ready"),
        )
        async with create_app(ctx).test_app() as test_app:
            yield test_app.test_client(), ctx


async def test_undocumented_statuses_are_counted_as_other() -> None:
    # The status string comes from the payload and becomes a metric label: bounded.
    channel = StatusChannel({"delivered": 2, "exploded": 1, "x" * 200: 3, "": 1, "READ": 1})
    async with app_for(channel) as (client, ctx):
        for _ in range(2):
            response = await client.post("/webhook", data=b"{}")
            assert response.status_code == 200
    assert ctx.stats.statuses == {"delivered": 4, "other": 12}


@pytest.mark.parametrize("status", sorted(KNOWN_STATUSES))
def test_documented_statuses_keep_their_name(status: str) -> None:
    assert status_label(status) == status


def test_the_documented_set() -> None:
    meta = {"sent", "delivered", "read", "played", "failed", "deleted", "warning"}
    twilio = {"accepted", "scheduled", "queued", "sending", "undelivered", "canceled"}
    assert meta | twilio | {"partially_delivered"} == KNOWN_STATUSES
    assert status_label("other") == "other"
