"""The webhook route in-process (quart's test client): what it counts from a parsed batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from daemon.channels.base import WebhookRequest
from daemon.model import Batch, Inbound
from daemon.web import KNOWN_STATUSES, status_label
from tests.unit.test_web import web_app


class StatusChannel:
    """A channel whose every delivery carries the given statuses and nothing else."""

    name = "fake"
    text_limit = 100

    def __init__(self, statuses: Mapping[str, int]) -> None:
        self.statuses = dict(statuses)

    def handshake(self, query: Mapping[str, str]) -> str | None:
        return None

    def has_signature(self, headers: Mapping[str, str]) -> bool:
        return True

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


async def test_undocumented_statuses_are_counted_as_other() -> None:
    # The status string comes from the payload and becomes a metric label: bounded.
    channel = StatusChannel({"delivered": 2, "exploded": 1, "x" * 200: 3, "": 1, "READ": 1})
    async with web_app(channel=channel, inbox=EmptyInbox()) as (client, ctx):
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
