"""The ``/messages`` payloads (reference/whatsapp.md §5): pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TEXT_LIMIT = 4096  # characters in a text body (§5)
# The MIME type of our voice notes, in the upload's ``type`` field and on its file part. Graph
# lists Ogg as "OPUS codecs only; base audio/ogg not supported" (§4.1), and its own error text
# names the accepted form literally: "Please use one of audio/ogg; codecs=opus, ...".
VOICE_MIME = "audio/ogg; codecs=opus"


def addressed(address: str) -> dict[str, str]:
    """The field that names whom a send goes to (§2.7, §5).

    ``address`` is a ``User.address``: ``+E164`` when the user's phone number is known, else
    their business-scoped user id (a username user, whose ``wa_id`` and ``from`` are "").
    A phone number goes in ``to``; a BSUID goes in ``recipient`` with ``to`` left out, as
    pywa 4.x does (the Dec 2025 doc put BSUIDs in ``to``; the newer clients do not).
    """
    if address.startswith("+"):
        return {"to": address}
    return {"recipient": address}


def text_payload(to: str, body: str, *, preview_url: bool = False) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        **addressed(to),
        "type": "text",
        "text": {"preview_url": preview_url, "body": body},
    }


def voice_payload(to: str, media_id: str) -> dict[str, Any]:
    """An uploaded Ogg/Opus clip sent as a voice note: ``voice: true`` makes it one (§4.2)."""
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        **addressed(to),
        "type": "audio",
        "audio": {"id": media_id, "voice": True},
    }


def read_payload(message_id: str, *, typing: bool) -> dict[str, Any]:
    """Mark a message read; with ``typing`` also show "typing…" for up to 25 s (§5)."""
    payload: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": message_id,
    }
    if typing:
        payload["typing_indicator"] = {"type": "text"}
    return payload


def names_media(payload: Mapping[str, Any]) -> bool:
    """True when a /messages payload sends media by an uploaded id (§5), not by link."""
    kind = payload.get("type")
    media = payload.get(kind) if isinstance(kind, str) else None
    return isinstance(media, dict) and "id" in media
