"""``[twilio]``: the Twilio WhatsApp provider's section of config.toml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from daemon.fields import HTTP_URL, HTTP_URL_OR_EMPTY, SOME_HOSTS, Bytes, Needed, Seconds


@dataclass(frozen=True)
class TwilioConfig:
    api_url: Annotated[str, HTTP_URL] = "https://api.twilio.com"
    account_sid: Annotated[str, Needed("your AC... account SID")] = ""
    from_: str = "whatsapp:+14155238886"
    public_url: Annotated[str, HTTP_URL_OR_EMPTY, Needed("the https URL Twilio calls")] = ""
    # Media is downloaded only from these hosts, and from api_url's own host; the credentials
    # go to api_url's host alone. Twilio answers every media URL with a redirect to its CDN
    # (mms.twiliocdn.com, media.twiliocdn.com, ...), whose pre-signed URLs need none.
    media_hosts: Annotated[tuple[str, ...], SOME_HOSTS] = ("api.twilio.com", "*.twiliocdn.com")
    # WhatsApp's media limit through Twilio is 16 MB (reference/whatsapp.md §6).
    max_media_bytes: Bytes = 16 * 1024 * 1024
    # Twilio's webhooks are small form posts: a WhatsApp text is at most 4096 characters,
    # 48 KiB percent-encoded even if every one is a 4-byte emoji, plus ~2 KiB of other fields.
    max_body_bytes: Bytes = 64 * 1024
    # Seconds the voice notes we generate stay fetchable at {public_url}/media/<token>.
    media_ttl: Seconds = 600.0
    # Bytes of those voice notes held in memory at most (the oldest go first). Twilio fetches
    # a note within seconds of the send; 32 MiB is ~800 spoken answers, and keeps the daemon's
    # total under the unit's MemoryHigh (README "Memory").
    media_memory_bytes: Bytes = 32 * 1024 * 1024
