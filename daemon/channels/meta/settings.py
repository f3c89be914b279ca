"""``[whatsapp]``: the Meta WhatsApp Cloud API provider's section of config.toml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from daemon.fields import HTTP_URL, SOME_HOSTS, Bytes, Needed


@dataclass(frozen=True)
class WhatsAppConfig:
    graph_url: Annotated[str, HTTP_URL] = "https://graph.facebook.com/v23.0"
    phone_number_id: Annotated[str, Needed("your business number id")] = ""
    # Media is downloaded (with the bearer token) only from these hosts, and from graph_url's
    # own host. "*.example.com" matches subdomains. Not one pinned host: Meta's media URLs
    # are documented on lookaside.fbsbx.com, but not promised to stay there (whatsapp.md §4).
    media_hosts: Annotated[tuple[str, ...], SOME_HOSTS] = (
        "lookaside.fbsbx.com",
        "*.fbsbx.com",
        "*.fbcdn.net",
    )
    # WhatsApp's own audio limit is 16 MB (reference/whatsapp.md §4.1).
    max_media_bytes: Bytes = 16 * 1024 * 1024
    # Only answer messages that came in on phone_number_id (a WABA can have several numbers).
    only_own_number: bool = True
