"""What the daemon sends Twilio: the synchronous answer to a webhook (TwiML) and the
Messages API form (reference/whatsapp.md §6): pure functions, no I/O."""

from __future__ import annotations

TEXT_LIMIT = 1600  # characters in a WhatsApp Body sent through Twilio
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
TWIML_CONTENT_TYPE = "text/xml"


def message_form(
    from_: str, to: str, *, body: str | None = None, media_url: str | None = None
) -> list[tuple[str, str]]:
    """The form of ``POST /2010-04-01/Accounts/{sid}/Messages.json``: From, To, Body and/or
    MediaUrl. Both addresses carry the ``whatsapp:`` prefix (§6)."""
    if body is None and media_url is None:
        raise ValueError("a message needs a body or a media URL")
    form = [("From", from_), ("To", to)]
    if body is not None:
        form.append(("Body", body))
    if media_url is not None:
        form.append(("MediaUrl", media_url))
    return form
