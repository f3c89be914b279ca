"""Meta's WhatsApp Cloud API as a provider of the daemon (daemon/channels/provider.py)."""

from __future__ import annotations

from collections.abc import Callable

from daemon.channels.meta.channel import MetaChannel
from daemon.channels.meta.client import GraphClient
from daemon.channels.meta.settings import WhatsAppConfig
from daemon.channels.provider import Built, Provider, Wiring


def build(wiring: Wiring[WhatsAppConfig]) -> Built:
    wa = wiring.settings
    graph = GraphClient(
        wiring.http,
        graph_url=wa.graph_url,
        phone_number_id=wa.phone_number_id,
        access_token=wiring.secret("WHATSAPP_ACCESS_TOKEN"),
        media_hosts=wa.media_hosts,
        max_media_bytes=wa.max_media_bytes,
    )
    channel = MetaChannel(
        graph,
        app_secret=wiring.secret("WHATSAPP_APP_SECRET"),
        verify_token=wiring.secret("WHATSAPP_VERIFY_TOKEN"),
        phone_number_id=wa.phone_number_id,
        only_own_number=wa.only_own_number,
        media_ids=wiring.media_ids,
    )
    return Built(channel)


def notes(wa: WhatsAppConfig, secret: Callable[[str], str]) -> list[str]:
    if secret("WHATSAPP_VERIFY_TOKEN"):
        return []
    return [
        "WHATSAPP_VERIFY_TOKEN is not set: Meta's webhook verification (the GET when you save "
        "the Callback URL) will be refused"
    ]


PROVIDER = Provider(
    name="meta",
    section="whatsapp",
    settings=WhatsAppConfig,
    secrets=("WHATSAPP_ACCESS_TOKEN", "WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN"),
    needs=("WHATSAPP_ACCESS_TOKEN", "WHATSAPP_APP_SECRET"),
    build=build,
    notes=notes,
)
