"""What Meta POSTs to the daemon: webhook bodies built like the real ones, signed, and sent.

The builders are pure. A message builder returns a ``UserMessage`` (the ``contacts[]`` entry
plus the ``messages[]`` entry), ``status`` returns a ``StatusUpdate``; ``envelope`` puts any mix
of them into one POST body, ``batch`` joins several envelopes into one delivery with several
``entry[]`` items. Shapes follow reference/whatsapp.md §2.2-2.7: timestamps are strings of
Unix seconds, ``from`` / ``wa_id`` / ``recipient_id`` carry no ``+``.

``WebhookSender`` is the only I/O here: it signs the exact bytes it posts (§2.1), and lets a
test forge or drop the signature.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

WABA_ID = "102290129340398"  # Meta's example WABA id (§2.3)
DISPLAY_PHONE_NUMBER = "15550783881"  # Meta's example business number (§2.3)
OBJECT = "whatsapp_business_account"  # §2.2: always this
SIGNATURE_HEADER = "X-Hub-Signature-256"
USER_AGENT = "facebookexternalua"  # what Meta's webhook deliveries identify as

Json = dict[str, Any]


# --------------------------------------------------------------------------- primitives


def sign(body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` value for ``body``: lowercase hex HMAC-SHA256 (§2.1)."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def encode(payload: Mapping[str, Any]) -> bytes:
    """The body bytes Meta would send: ASCII-escaped JSON, ``ä`` as ``\\u00e4`` (§2.1).

    Daemons that re-serialize the parsed body before checking the signature break on
    non-ASCII text; sending escaped bytes keeps that pitfall visible in tests.
    """
    return json.dumps(payload, ensure_ascii=True).encode("ascii")


def new_wamid() -> str:
    """A fresh, unique WhatsApp message id shaped like Meta's (``wamid.`` + base64)."""
    return "wamid." + base64.b64encode(b"\x1c\x18\x0b" + os.urandom(27)).decode("ascii")


def media_sha256(data: bytes) -> str:
    """A webhook media ``sha256``: base64, unlike the hex of GET /<media-id> (§2.4)."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _timestamp(value: float | int | str | None) -> str:
    if value is None:
        value = time.time()
    return value if isinstance(value, str) else str(int(value))


def _plain_id(wa_id: str, what: str) -> str:
    # §2.2: webhook ids never carry '+'; a '+' here is a bug in the test, not a case to model.
    if wa_id.startswith("+"):
        raise ValueError(f"{what} must not start with '+': webhooks carry bare digits")
    return wa_id


# --------------------------------------------------------------------------- items


@dataclass(frozen=True, slots=True)
class UserMessage:
    """One inbound message: its ``contacts[]`` entry and its ``messages[]`` entry."""

    contact: Json
    message: Json

    @property
    def id(self) -> str:
        return str(self.message["id"])


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """One ``statuses[]`` entry about a message the business sent."""

    status: Json

    @property
    def id(self) -> str:
        return str(self.status["id"])


Item = UserMessage | StatusUpdate


def _user_message(
    wa_id: str,
    kind: str,
    body: Json,
    *,
    message_id: str | None,
    name: str | None,
    user_id: str | None,
    timestamp: float | int | str | None,
    context: Json | None,
) -> UserMessage:
    _plain_id(wa_id, "wa_id")
    contact: Json = {"profile": {"name": name} if name is not None else {}, "wa_id": wa_id}
    message: Json = {
        "from": wa_id,
        "id": message_id or new_wamid(),
        "timestamp": _timestamp(timestamp),
        "type": kind,
        kind: body,
    }
    # §2.7: with a business-scoped user id the contact gains user_id and the message
    # from_user_id; wa_id/from may then be "" (the user hid their number behind a username).
    if user_id is not None:
        contact["user_id"] = user_id
        message["from_user_id"] = user_id
    if context is not None:
        message["context"] = context
    return UserMessage(contact=contact, message=message)


def text_message(
    wa_id: str,
    text: str,
    *,
    message_id: str | None = None,
    name: str | None = "Test User",
    user_id: str | None = None,
    timestamp: float | int | str | None = None,
    context: Json | None = None,
) -> UserMessage:
    """A text message (§2.3). ``context`` e.g. ``{"forwarded": True}`` or a quoted reply."""
    return _user_message(
        wa_id,
        "text",
        {"body": text},
        message_id=message_id,
        name=name,
        user_id=user_id,
        timestamp=timestamp,
        context=context,
    )


def voice_message(
    wa_id: str,
    media_id: str,
    *,
    sha256: str,
    mime_type: str = "audio/ogg; codecs=opus",
    voice: bool = True,
    url: str | None = None,
    message_id: str | None = None,
    name: str | None = "Test User",
    user_id: str | None = None,
    timestamp: float | int | str | None = None,
    context: Json | None = None,
) -> UserMessage:
    """An audio message (§2.4); ``voice=True`` is a recorded voice note, False an audio file.

    ``sha256`` is the base64 form (see ``media_sha256``). ``url`` is only present since the
    gradual roll-out of Nov 2025, so it is left out unless given.
    """
    audio: Json = {"mime_type": mime_type, "sha256": sha256, "id": media_id}
    if url is not None:
        audio["url"] = url
    audio["voice"] = voice
    return _user_message(
        wa_id,
        "audio",
        audio,
        message_id=message_id,
        name=name,
        user_id=user_id,
        timestamp=timestamp,
        context=context,
    )


def image_message(
    wa_id: str,
    media_id: str,
    *,
    sha256: str,
    mime_type: str = "image/jpeg",
    caption: str | None = None,
    url: str | None = None,
    message_id: str | None = None,
    name: str | None = "Test User",
    user_id: str | None = None,
    timestamp: float | int | str | None = None,
) -> UserMessage:
    """An image message (§2.5), with an optional caption."""
    image: Json = {}
    if caption is not None:
        image["caption"] = caption
    image.update({"mime_type": mime_type, "sha256": sha256, "id": media_id})
    if url is not None:
        image["url"] = url
    return _user_message(
        wa_id,
        "image",
        image,
        message_id=message_id,
        name=name,
        user_id=user_id,
        timestamp=timestamp,
        context=None,
    )


def reaction_message(
    wa_id: str,
    reacted_message_id: str,
    emoji: str | None,
    *,
    message_id: str | None = None,
    name: str | None = "Test User",
    user_id: str | None = None,
    timestamp: float | int | str | None = None,
) -> UserMessage:
    """A reaction (§2.5); ``emoji=None`` is a removed reaction, where Meta omits the emoji."""
    reaction: Json = {"message_id": reacted_message_id}
    if emoji is not None:
        reaction["emoji"] = emoji
    return _user_message(
        wa_id,
        "reaction",
        reaction,
        message_id=message_id,
        name=name,
        user_id=user_id,
        timestamp=timestamp,
        context=None,
    )


def unsupported_message(
    wa_id: str,
    *,
    unsupported_type: str = "edit",
    message_id: str | None = None,
    name: str | None = "Test User",
    timestamp: float | int | str | None = None,
) -> UserMessage:
    """A message type the Cloud API does not support (§2.5), carrying error 131051."""
    item = _user_message(
        wa_id,
        "unsupported",
        {"type": unsupported_type},
        message_id=message_id,
        name=name,
        user_id=None,
        timestamp=timestamp,
        context=None,
    )
    item.message["errors"] = [
        webhook_error(131051, "Message type unknown", "Message type is currently not supported.")
    ]
    return item


def webhook_error(code: int, title: str, details: str) -> Json:
    """An error object as webhooks carry it: ``{code,title,message,error_data,href}`` (§5.1)."""
    return {
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }


# §2.6 and pywa's fixtures: service replies inside the 24 h window are free under PMP.
_SERVICE_PRICING: Json = {
    "billable": False,
    "pricing_model": "PMP",
    "type": "free_customer_service",
    "category": "service",
}


def status(
    wamid: str,
    status: str,
    recipient_id: str,
    *,
    timestamp: float | int | str | None = None,
    errors: list[Json] | None = None,
    pricing: bool | None = None,
    biz_opaque_callback_data: str | None = None,
) -> StatusUpdate:
    """A status of an outbound message: sent, delivered, read, played or failed (§2.6).

    ``pricing`` defaults to Meta's rule: present with ``sent`` and ``delivered``. No
    ``conversation`` object: it is gone from v24.0 on. ``failed`` needs ``errors``
    (see ``webhook_error``).
    """
    _plain_id(recipient_id, "recipient_id")
    if status == "failed" and not errors:
        raise ValueError("a failed status carries errors[]")
    item: Json = {
        "id": wamid,
        "status": status,
        "timestamp": _timestamp(timestamp),
        "recipient_id": recipient_id,
    }
    if pricing is None:
        pricing = status in ("sent", "delivered")
    if pricing:
        item["pricing"] = dict(_SERVICE_PRICING)
    if biz_opaque_callback_data is not None:
        item["biz_opaque_callback_data"] = biz_opaque_callback_data
    if errors:
        item["errors"] = errors
    return StatusUpdate(item)


# --------------------------------------------------------------------------- bodies


def change(
    *items: Item,
    phone_number_id: str,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
) -> Json:
    """One ``changes[]`` item. §2.2: a value holds messages (with contacts) OR statuses."""
    messages = [i for i in items if isinstance(i, UserMessage)]
    statuses = [i for i in items if isinstance(i, StatusUpdate)]
    if messages and statuses:
        raise ValueError("one change holds either messages or statuses, not both")
    if not items:
        raise ValueError("a change needs at least one message or status")
    value: Json = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": display_phone_number,
            "phone_number_id": phone_number_id,
        },
    }
    if messages:
        contacts: list[Json] = []
        for m in messages:
            if m.contact not in contacts:  # one contact per sender, as Meta batches them
                contacts.append(m.contact)
        value["contacts"] = contacts
        value["messages"] = [m.message for m in messages]
    else:
        value["statuses"] = [s.status for s in statuses]
    return {"value": value, "field": "messages"}


def envelope(
    *items: Item,
    phone_number_id: str,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
    waba_id: str = WABA_ID,
    change_per_item: bool = False,
) -> Json:
    """One POST body with one ``entry``: messages in one change, statuses in another.

    ``change_per_item`` puts every item in a change of its own instead, which Meta also does.
    """
    groups: list[tuple[Item, ...]]
    if change_per_item:
        groups = [(i,) for i in items]
    else:
        messages = tuple(i for i in items if isinstance(i, UserMessage))
        statuses = tuple(i for i in items if isinstance(i, StatusUpdate))
        groups = [g for g in (messages, statuses) if g]
    changes = [
        change(*g, phone_number_id=phone_number_id, display_phone_number=display_phone_number)
        for g in groups
    ]
    return {"object": OBJECT, "entry": [{"id": waba_id, "changes": changes}]}


def batch(*envelopes: Json) -> Json:
    """Several envelopes delivered as one POST: their entries side by side (§3 batching)."""
    entries: list[Json] = []
    for body in envelopes:
        if body.get("object") != OBJECT:
            raise ValueError("batch() joins bodies made by envelope()")
        entries.extend(body["entry"])
    return {"object": OBJECT, "entry": entries}


# --------------------------------------------------------------------------- sending


class _Auto(enum.Enum):
    SIGN = enum.auto()


SIGN = _Auto.SIGN  # default for WebhookSender.post: sign the body with the app secret


class WebhookSender:
    """Posts webhook bodies to the daemon the way Meta does (§1, §2.1)."""

    def __init__(self, client: httpx.AsyncClient, url: str, app_secret: str) -> None:
        self._client = client
        self._url = url
        self._app_secret = app_secret

    async def post(
        self,
        payload: Mapping[str, Any] | bytes,
        *,
        signature: str | _Auto | None = SIGN,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST ``payload`` (a dict is ``encode``d; bytes go as they are).

        ``signature``: ``SIGN`` (default) signs correctly, a string is sent as the header
        value (to forge one), ``None`` leaves the header out.
        """
        body = payload if isinstance(payload, bytes) else encode(payload)
        sent: dict[str, str] = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if signature is SIGN:
            sent[SIGNATURE_HEADER] = sign(body, self._app_secret)
        elif isinstance(signature, str):
            sent[SIGNATURE_HEADER] = signature
        if headers:
            sent.update(headers)
        return await self._client.post(self._url, content=body, headers=sent)

    async def handshake(
        self,
        verify_token: str | None,
        challenge: str,
        mode: str | None = "subscribe",
    ) -> httpx.Response:
        """The subscription GET (§1); ``None`` leaves ``hub.mode`` / ``hub.verify_token`` out."""
        params: dict[str, str] = {}
        if mode is not None:
            params["hub.mode"] = mode
        params["hub.challenge"] = challenge
        if verify_token is not None:
            params["hub.verify_token"] = verify_token
        return await self._client.get(self._url, params=params, headers={"User-Agent": USER_AGENT})
