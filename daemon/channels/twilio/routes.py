"""The route Twilio's provider adds to the public listener: the voice notes Twilio fetches.

Twilio takes outbound media only by URL (reference/whatsapp.md §6), so the daemon serves the
voice notes it generated at ``GET /media/<token>`` (public_media.py) for the few minutes
Twilio needs them.
"""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from daemon.channels.provider import Routes
from daemon.channels.twilio.channel import PUBLIC_MEDIA_PATH
from daemon.channels.twilio.public_media import PublicMedia


def media_routes(media: PublicMedia) -> Routes:
    def add(app: QuartTrio) -> None:
        @app.get(f"{PUBLIC_MEDIA_PATH}<token>")
        async def public_media(token: str) -> Response:
            # Only audio the daemon generated, behind an unguessable token that expires in
            # minutes; anything else is a plain 404 that says nothing about what exists.
            found = media.get(token)
            if found is None:
                return Response("not found", status=404, content_type="text/plain")
            data, content_type = found
            return Response(
                data,
                status=200,
                content_type=content_type,
                headers={"Cache-Control": "no-store"},
            )

    return add
