"""Web routes in-process (quart's test client, no sockets), where the clock must be mocked."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing

from daemon.channels.provider import Routes
from daemon.channels.twilio.public_media import PublicMedia
from daemon.channels.twilio.routes import media_routes
from daemon.lanes import Lanes
from daemon.web import create_app
from daemon.web_context import WebContext
from tests.unit.turn.fakes import FakeChannel


class NoInbox:
    """These tests post no webhooks."""

    async def accept(self, messages: object) -> list[object]:
        raise AssertionError("no webhooks here")

    async def forget(self, message_ids: object) -> int:
        raise AssertionError("no webhooks here")


@asynccontextmanager
async def web_app(
    *,
    channel: object | None = None,
    inbox: object | None = None,
    routes: Sequence[Routes] = (),
) -> AsyncIterator[tuple[Any, WebContext]]:
    """The app's test client and its context, with no turns (and, by default, no webhooks)."""

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
            channel=channel or FakeChannel(),  # type: ignore[arg-type]
            inbox=inbox or NoInbox(),  # type: ignore[arg-type]
            lanes=lanes,
            webhook_path="/webhook",
            max_body_bytes=1024,
            ready=lambda: (True, "ready"),
            routes=routes,
        )
        async with create_app(ctx).test_app() as test_app:
            yield test_app.test_client(), ctx


async def test_public_media_route_refuses_unknown_and_expired_tokens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    media = PublicMedia(ttl=600)
    token = media.put(b"OggS-voice", "audio/ogg")
    async with web_app(routes=[media_routes(media)]) as (client, _):
        ok = await client.get(f"/media/{token}")
        assert ok.status_code == 200
        assert await ok.get_data() == b"OggS-voice"
        assert ok.headers["Content-Type"].startswith("audio/ogg")
        assert (await client.get("/media/unknown")).status_code == 404
        await trio.sleep(601)
        assert (await client.get(f"/media/{token}")).status_code == 404


async def test_no_media_route_when_the_provider_takes_uploads() -> None:
    async with web_app() as (client, _):
        assert (await client.get("/media/x")).status_code == 404
