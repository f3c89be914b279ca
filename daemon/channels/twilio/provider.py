"""Twilio's WhatsApp API as a provider of the daemon (daemon/channels/provider.py)."""

from __future__ import annotations

from daemon.channels.provider import Built, Provider, Wiring
from daemon.channels.twilio.channel import TwilioChannel
from daemon.channels.twilio.client import TwilioClient
from daemon.channels.twilio.public_media import PublicMedia
from daemon.channels.twilio.routes import media_routes
from daemon.channels.twilio.settings import TwilioConfig


def build(wiring: Wiring[TwilioConfig]) -> Built:
    tw, token = wiring.settings, wiring.secret("TWILIO_AUTH_TOKEN")
    media = PublicMedia(ttl=tw.media_ttl, max_bytes=tw.media_memory_bytes)
    client = TwilioClient(
        wiring.http,
        api_url=tw.api_url,
        account_sid=tw.account_sid,
        auth_token=token,
        media_hosts=tw.media_hosts,
        max_media_bytes=tw.max_media_bytes,
    )
    channel = TwilioChannel(
        client, media, auth_token=token, public_url=tw.public_url, from_=tw.from_
    )
    return Built(channel, routes=(media_routes(media),))


def body_limit(tw: TwilioConfig) -> int:
    """Twilio's form posts are small ([twilio] max_body_bytes), far under Meta's batches."""
    return tw.max_body_bytes


PROVIDER = Provider(
    name="twilio",
    section="twilio",
    settings=TwilioConfig,
    secrets=("TWILIO_AUTH_TOKEN",),
    needs=("TWILIO_AUTH_TOKEN",),
    build=build,
    body_limit=body_limit,
)
