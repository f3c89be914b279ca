"""The one seam between the daemon and a WhatsApp provider.

Meta's Cloud API and Twilio differ in everything on the wire (JSON vs form posts, signatures,
4096 vs 1600 characters, upload-then-id vs public media URL). The web layer and the turn talk
to this protocol only and never ask which provider is behind it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from daemon.model import Batch, Inbound, Media, User


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """What the web layer hands a channel: the raw request, nothing parsed yet.

    The URL comes in two parts that are never glued and split again: a Host header is the
    client's to write, and re-parsing ``scheme://<Host><path>`` would let a "/" or "?" in it
    move the path or the query a signature covers (Twilio signs the URL byte for byte).
    """

    origin: str  # scheme://host[:port] as the daemon saw it (Host validated by Werkzeug)
    target: str  # the request target as sent: the raw path, and "?" + the raw query if any
    headers: Mapping[str, str]  # lower-case names
    query: Mapping[str, str]
    body: bytes

    @property
    def url(self) -> str:
        """The whole URL as the daemon saw it (for logs and providers that sign no URL)."""
        return self.origin + self.target


@dataclass(frozen=True, slots=True)
class VoiceNote:
    """A voice note the provider can fetch (``Channel.prepare_voice``), ready to send."""

    ref: str  # the provider's handle on it: Meta's media id, the token of our public URL
    audio: bytes  # the Ogg/Opus itself, for a channel that must upload it again
    audio_key: str = ""  # what the audio is (daemon/cache/audio.py), for upload reuse


class BadWebhook(ValueError):
    """The body is not a webhook this channel understands (answered 400)."""


# A phone number as providers quote them in error texts: "+1 (555) 123-4567", "15551234567",
# the digits of a BSUID. Seven digits or more, so error codes ("(#131047)") survive.
_NUMBER = re.compile(r"\+?\d[\d ()-]{5,}\d")


def scrub_numbers(text: str) -> str:
    """``text`` with every phone-number-like run replaced by ``<number>``.

    Provider error texts quote the numbers they refuse, and error texts reach the logs, where
    phone numbers appear only hashed (DESIGN.md).
    """
    return _NUMBER.sub("<number>", text)


def error_code(value: object) -> int | None:
    """A provider's error code as a number: an int, or a string of at most 12 ASCII digits;
    None for anything else. ``str.isdigit()`` alone would let "²" through to ``int()``, which
    refuses it, and an error body is whatever the other side sent."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and len(text) <= 12:
            return int(text)
    return None


class Channel(Protocol):
    name: str  # "meta" | "twilio": for logs and metrics, never for branching
    text_limit: int  # the longest text one message may carry

    def handshake(self, query: Mapping[str, str]) -> str | None:
        """Answer a GET subscription handshake: the body to return, or None to refuse."""
        ...

    def verify(self, request: WebhookRequest) -> bool:
        """True when the request carries a valid signature of its raw body."""
        ...

    def parse(self, request: WebhookRequest) -> Batch:
        """Every message and status of one delivery. Raises BadWebhook on a wrong shape."""
        ...

    def accepted(self) -> tuple[bytes, str]:
        """Body and content type of the immediate success answer."""
        ...

    async def acknowledge(self, message: Inbound) -> None:
        """Tell the user we got it: read receipt and typing indicator, where supported."""
        ...

    async def send_text(self, user: User, text: str) -> list[str]:
        """Send an answer, split into messages of at most ``text_limit``. Returns their ids."""
        ...

    async def prepare_voice(self, ogg_opus: bytes, *, audio_key: str = "") -> VoiceNote:
        """Make Ogg/Opus bytes fetchable by the provider (an upload, a public URL), so that
        sending them is one quick call. Nobody sees anything yet: safe to repeat, and done
        while the text answer is still on its way.

        ``audio_key`` names the audio (daemon/cache/audio.py): a channel that uploads media may
        reuse an earlier upload of the same audio instead of uploading it again."""
        ...

    async def send_voice(self, user: User, note: VoiceNote) -> str:
        """Send a prepared voice note. Returns the message id."""
        ...

    async def fetch_media(self, media: Media) -> bytes:
        """Download inbound media, bounded in size."""
        ...

    async def aclose(self) -> None: ...
