"""The webhook route in-process (quart's test client): what it counts from a parsed batch."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pytest

from daemon.channels.base import WebhookRequest
from daemon.channels.meta.wire import parse_webhook
from daemon.channels.twilio import wire as twilio_wire
from daemon.model import Batch, DeliveryStatus, Inbound
from tests.unit.test_web import web_app


class StatusChannel:
    """A channel whose every delivery carries the given statuses and nothing else."""

    name = "fake"
    text_limit = 100

    def __init__(self, statuses: Mapping[DeliveryStatus, int]) -> None:
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


async def test_statuses_are_counted_in_the_daemons_words() -> None:
    # The provider's parser has mapped its words (below); the route counts what it got.
    statuses = {DeliveryStatus.DELIVERED: 2, DeliveryStatus.OTHER: 6}
    async with web_app(channel=StatusChannel(statuses), inbox=EmptyInbox()) as (client, ctx):
        for _ in range(2):
            response = await client.post("/webhook", data=b"{}")
            assert response.status_code == 200
    assert ctx.stats.statuses == {"delivered": 4, "other": 12}


def _meta_statuses(*words: str) -> dict[DeliveryStatus, int]:
    value = {"statuses": [{"id": f"wamid.{i}", "status": w} for i, w in enumerate(words)]}
    body = {"object": "whatsapp_business_account", "entry": [{"changes": [
        {"field": "messages", "value": value}
    ]}]}  # fmt: skip
    return parse_webhook(json.dumps(body).encode(), phone_number_id=None).statuses


def test_undocumented_meta_statuses_are_counted_as_other() -> None:
    # The status string comes from the payload and becomes a metric label: bounded.
    assert _meta_statuses("delivered", "exploded", "x" * 200, "", "READ") == {
        DeliveryStatus.DELIVERED: 1,
        DeliveryStatus.OTHER: 4,
    }


META = ("sent", "delivered", "read", "played", "failed", "deleted", "warning")
TWILIO = ("accepted", "scheduled", "queued", "sending", "sent", "delivered", "undelivered")
TWILIO += ("failed", "read", "canceled", "partially_delivered")


@pytest.mark.parametrize("status", META)
def test_documented_meta_statuses_keep_their_name(status: str) -> None:
    assert _meta_statuses(status) == {DeliveryStatus(status): 1}


@pytest.mark.parametrize("status", TWILIO)
def test_documented_twilio_statuses_keep_their_name(status: str) -> None:
    form = {"MessageSid": "SM1", "MessageStatus": status, "To": "whatsapp:+1555"}
    assert twilio_wire.parse_webhook(form).statuses == {DeliveryStatus(status): 1}


def test_the_documented_set() -> None:
    assert set(META) | set(TWILIO) | {"other"} == {s.value for s in DeliveryStatus}
