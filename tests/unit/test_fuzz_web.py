"""Property-based test of the webhook route end to end in-process: the real channel (Meta, then
Twilio) verifying and parsing, the real SQLite inbox, the real lanes and limits. Whatever a
signed delivery carries, the answer is 200 or 400, never a 5xx: a 503 would be redelivered
for days and take the good messages of the batch with it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import hypothesis.strategies as st
from hypothesis import HealthCheck, example, given, settings

from daemon.channels.meta.channel import MetaChannel
from daemon.channels.twilio.channel import TwilioChannel
from daemon.channels.twilio.public_media import PublicMedia
from daemon.config import LimitsConfig
from daemon.lanes import Lanes
from daemon.limits import MemoryUserLimits
from daemon.model import Inbound
from daemon.sim import twilio as twilio_sim
from daemon.sim import webhooks
from daemon.state.sqlite import SqliteStore
from daemon.web import create_app
from daemon.web_context import WebContext
from tests.unit.test_fuzz_clients import graph_client, twilio_client
from tests.unit.test_fuzz_parsers import TEXT, meta_body

SECRET = "fuzz-secret"
PUBLIC = "https://bot.example"
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@asynccontextmanager
async def app_for(provider: str) -> AsyncIterator[Any]:
    # A fresh store per example (hypothesis runs many in one test: no tmp_path fixture).
    with tempfile.TemporaryDirectory(prefix="wa-fuzz-") as scratch:
        async with _app_for(provider, Path(scratch)) as client:
            yield client


@asynccontextmanager
async def _app_for(provider: str, tmp: Path) -> AsyncIterator[Any]:
    async def turn(message: Inbound) -> None:
        return None  # the turns are not under test here

    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    channel: Any
    if provider == "meta":
        graph = graph_client(http, "106540352242922")
        channel = MetaChannel(
            graph, app_secret=SECRET, verify_token="v", phone_number_id="106540352242922"
        )
    else:
        client = twilio_client(http, SECRET)
        channel = TwilioChannel(
            client, PublicMedia(ttl=60), auth_token=SECRET, public_url=PUBLIC, from_="whatsapp:+1"
        )
    store = await SqliteStore.open(tmp / "state.sqlite3")
    try:
        async with Lanes.open(
            turn,
            max_lanes=50,
            max_pending=5,
            queue_size=100,
            idle_seconds=1,
            max_concurrent_turns=5,
        ) as lanes:
            ctx = WebContext(
                channel=channel,
                inbox=store,
                lanes=lanes,
                webhook_path="/webhook",
                max_body_bytes=3 * 1024 * 1024,
                ready=lambda: (True, "ready"),
                limits=MemoryUserLimits(LimitsConfig(burst=3, per_minute=1)),
                max_waiting=5,
            )
            async with create_app(ctx).test_app() as test_app:
                yield test_app.test_client()
    finally:
        await http.aclose()
        await store.close()


@SETTINGS
@given(meta_body() | st.binary(max_size=200).map(lambda b: (b, 0)))
@example(
    (
        json.dumps(
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "changes": [
                            {
                                "field": "messages",
                                "value": {
                                    "metadata": {"phone_number_id": "106540352242922"},
                                    "messages": [
                                        {
                                            "from": "1",
                                            "id": "w.1",
                                            "timestamp": "²",
                                            "type": "text",
                                            "text": {"body": "x"},
                                        },
                                        {
                                            "from": "1",
                                            "id": "w.2",
                                            "type": "text",
                                            "text": {"body": "\ud83d"},
                                        },
                                        {
                                            "from": "1",
                                            "id": "w.3",
                                            "type": "unsupported",
                                            "unsupported": {"type": []},
                                        },
                                    ],
                                },
                            }
                        ]
                    }
                ],
            }
        ).encode(),
        3,
    )
)
async def test_a_signed_meta_delivery_is_200_or_400(case: tuple[bytes, int]) -> None:
    body, _ = case
    async with app_for("meta") as client:
        response = await client.post(
            "/webhook",
            data=body,
            headers={
                "X-Hub-Signature-256": webhooks.sign(body, SECRET),
                "Content-Type": "application/json",
            },
        )
        assert response.status_code in (200, 400)
        again = await client.post(  # Meta's redelivery: the same answer
            "/webhook",
            data=body,
            headers={
                "X-Hub-Signature-256": webhooks.sign(body, SECRET),
                "Content-Type": "application/json",
            },
        )
        assert again.status_code == response.status_code


FIELDS = st.lists(
    st.tuples(
        st.sampled_from(["MessageSid", "From", "WaId", "Body", "NumMedia", "MediaUrl0"])
        | st.sampled_from(["MediaContentType0", "MessageStatus", "ButtonText"])
        | TEXT,
        st.sampled_from(["SM1", "whatsapp:+15551234567", "1", "audio/ogg", "delivered"]) | TEXT,
    ),
    max_size=8,
).map(lambda pairs: [("MessageSid", "SM1"), ("From", "whatsapp:+15551234567"), *pairs])


@SETTINGS
@given(FIELDS)
@example([("MessageSid", "SM1"), ("From", "whatsapp:+15551234567"), ("NumMedia", "²")])
async def test_a_signed_twilio_delivery_is_200_or_400(params: list[tuple[str, str]]) -> None:
    # Lone surrogates cannot travel in a form (UTF-8 on the wire): they are replaced, as any
    # sender's encoder would have to.
    clean = [
        (k.encode("utf-8", "replace").decode(), v.encode("utf-8", "replace").decode())
        for k, v in params
    ]
    body = urlencode(clean).encode("ascii")
    signature = twilio_sim.sign(SECRET, f"{PUBLIC}/webhook", clean)
    async with app_for("twilio") as client:
        response = await client.post(
            "/webhook",
            data=body,
            headers={
                "X-Twilio-Signature": signature,
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        assert response.status_code in (200, 400), await response.get_data()
