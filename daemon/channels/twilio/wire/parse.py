"""The form-encoded webhook turned into a provider-neutral ``Batch`` (reference/whatsapp.md
§6): pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from daemon.channels.base import BadWebhook
from daemon.channels.twilio.wire.form import Params, first
from daemon.model import Batch, DeliveryStatus, Inbound, Kind, Media, User

K = TypeVar("K")

ADDRESS_PREFIX = "whatsapp:"

# Lifecycle states of a message WE sent, as status callbacks report them (Twilio's
# MessageStatus values). An inbound message says SmsStatus=received (§6 captured body), so it
# never lands here.
_OUTBOUND_STATES = {
    "accepted": DeliveryStatus.ACCEPTED,
    "scheduled": DeliveryStatus.SCHEDULED,
    "queued": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.SENDING,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
    "read": DeliveryStatus.READ,
    "canceled": DeliveryStatus.CANCELED,
    "partially_delivered": DeliveryStatus.PARTIALLY_DELIVERED,
}


def _count(counter: dict[K, int], key: K, n: int = 1) -> None:
    counter[key] = counter.get(key, 0) + n


def _status_of(fields: Mapping[str, str]) -> str:
    """The outbound lifecycle state a status callback reports, or "" for a user message."""
    state = (fields.get("MessageStatus") or fields.get("SmsStatus") or "").strip().lower()
    return state if state in _OUTBOUND_STATES else ""


def parse_webhook(params: Params) -> Batch:
    """One Twilio delivery: a user message, or a status callback about one of ours (§6).

    Unknown parameters are ignored (Twilio adds new ones without notice). A body that is
    neither an inbound message (MessageSid/SmsMessageSid and From) nor a status callback
    raises BadWebhook.
    """
    fields = first(params)
    batch = Batch()
    sid = fields.get("MessageSid") or fields.get("SmsMessageSid") or fields.get("SmsSid") or ""
    state = _status_of(fields)
    if state:
        # A status callback: a subset of the message fields plus MessageStatus and ErrorCode.
        # The status value decides, not the absence of Body: answering a callback about our
        # own message as if the user had written it would loop.
        if not sid:
            raise BadWebhook("status callback without MessageSid")
        _count(batch.statuses, _OUTBOUND_STATES[state])
        if state in ("failed", "undelivered"):
            batch.errors.append(f"status {state} {fields.get('ErrorCode') or 'unknown'}")
        return batch
    sender = fields.get("From", "")
    if not sid or not sender:
        raise BadWebhook("neither an inbound message (MessageSid, From) nor a status callback")
    if not sender.startswith(ADDRESS_PREFIX):
        # An SMS to the same Twilio number: answering it from a whatsapp: sender cannot work.
        _count(batch.ignored, "not_whatsapp")
        return batch
    digits = sender[len(ADDRESS_PREFIX) :].lstrip("+")
    key = fields.get("WaId", "").lstrip("+") or digits
    if not key:
        raise BadWebhook("From carries no number")
    kind, text, media, original_type = _content(fields, batch)
    message = Inbound(
        message_id=sid,
        user=User(key=key, address=sender),
        kind=kind,
        text=text,
        media=media,
        original_type=original_type,
        timestamp=0,  # Twilio's inbound webhook carries no timestamp
        channel_ref=fields.get("To", ""),
    )
    # parse_form decodes strictly, so no lone surrogate gets this far; params handed in
    # by other callers are checked all the same.
    if problem := message.unstorable():
        raise BadWebhook(problem)
    batch.messages.append(message)
    return batch


def _num_media(fields: Mapping[str, str]) -> int:
    raw = fields.get("NumMedia", "0").strip() or "0"
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses. WhatsApp carries
    # one attachment per message; Twilio's MMS at most ten.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3):
        raise BadWebhook("NumMedia is not a small number")
    return int(raw)


def _content(fields: Mapping[str, str], batch: Batch) -> tuple[Kind, str, Media | None, str]:
    """(kind, text, media, original type) of an inbound message."""
    if _num_media(fields) > 0:
        # WhatsApp carries one attachment per message; a voice note is NumMedia=1,
        # MediaContentType0=audio/ogg, MediaUrl0=https://api.twilio.com/... (§6).
        mime = fields.get("MediaContentType0", "").strip()
        top = mime.split("/", 1)[0].lower() or "media"
        url = fields.get("MediaUrl0", "").strip()
        if top == "audio" and url:
            return Kind.VOICE, "", Media(id=url, mime_type=mime, voice=True), "audio"
        if top == "audio":
            batch.errors.append("audio message without MediaUrl0")
        return Kind.UNSUPPORTED, "", None, top
    if fields.get("Latitude") or fields.get("Longitude"):
        return Kind.UNSUPPORTED, "", None, "location"
    # A quick-reply button: its title in ButtonText (Body repeats it), its id in ButtonPayload.
    button = fields.get("ButtonText", "").strip() or fields.get("ButtonPayload", "").strip()
    if button:
        return Kind.TEXT, button, None, "button"
    body = fields.get("Body", "")
    if body.strip():
        return Kind.TEXT, body, None, "text"
    return Kind.UNSUPPORTED, "", None, fields.get("MessageType", "").strip().lower() or "unknown"
