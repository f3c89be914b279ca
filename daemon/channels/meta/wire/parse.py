"""The webhook body (reference/whatsapp.md §2.2-§2.7, §3) turned into a provider-neutral
``Batch``: pure functions, no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from daemon.channels.base import BadWebhook, error_code
from daemon.channels.meta.wire.decode import as_text as _text
from daemon.channels.meta.wire.decode import loads
from daemon.model import Batch, DeliveryStatus, Inbound, Kind, Media, User

K = TypeVar("K")

# A timestamp is a string of Unix seconds (§2.2). ASCII digits only: str.isdigit() also
# accepts "²" and other digits int() refuses; twelve of them reach the year 33658.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")

# The webhook fields a WhatsApp Business Account can subscribe to besides "messages".
_OTHER_FIELDS = frozenset(
    {
        "account_alerts",
        "account_review_update",
        "account_update",
        "business_capability_update",
        "business_status_update",
        "calls",
        "flows",
        "history",
        "message_echoes",
        "message_template_components_update",
        "message_template_quality_update",
        "message_template_status_update",
        "partner_solutions",
        "payment_configuration_update",
        "phone_number_name_update",
        "phone_number_quality_update",
        "security",
        "smb_app_state_sync",
        "smb_message_echoes",
        "template_category_update",
        "user_preferences",
    }
)
# Message types that owe no answer, and the reason counted in Batch.ignored. A reaction is not
# a question; system messages (number or identity changed, §2.5) and request_welcome come
# from WhatsApp itself; edits and deletions refer to a message already answered.
_NO_ANSWER_TYPES = frozenset({"reaction", "system", "request_welcome", "edit", "revoke"})
# Interactive messages that answer something the business itself asked for, not a question
# for the agent: a call permission granted or declined (pywa: CallPermissionUpdate), a Flow
# form submitted (nfm_reply; pywa: FlowCompletion). The daemon sends neither prompt; replying
# "unsupported" to a user who tapped "Allow calls" would be wrong. Counted by their type.
_NO_ANSWER_INTERACTIVE = frozenset({"call_permission_reply", "nfm_reply"})
# Older deliveries report edits as ``unsupported`` with the real type inside (§2.5 example).
_NO_ANSWER_UNSUPPORTED = frozenset({"edit", "revoke"})
# The statuses of our own messages as Meta documents them (§2.6): sent, delivered, read,
# played (a voice note), failed; and deleted and warning, which WhatsApp's older status
# webhooks also carried. The word comes from the payload; any other is OTHER.
_STATUSES = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "played": DeliveryStatus.PLAYED,
    "failed": DeliveryStatus.FAILED,
    "deleted": DeliveryStatus.DELETED,
    "warning": DeliveryStatus.WARNING,
}


def parse_webhook(body: bytes, *, phone_number_id: str | None) -> Batch:
    """Every message and status of one delivery (§2.2, §3: loop over every level).

    A delivery whose envelope is wrong (not JSON, not an object, ``object`` / ``entry`` /
    ``changes`` / ``value`` not as §2.2 draws them) raises ``BadWebhook``, answered 400,
    before any of it is handed on. One bad item inside a good envelope does not: Meta would
    redeliver the whole batch for 7 days and the good messages in it would never be answered
    (§3). A message that cannot be answered (not an object, no id, no sender) is skipped,
    counted in ``ignored["malformed"]`` and noted in ``errors`` (the web layer logs those at
    warning); one with a sender and an id but a missing or unknown type is an unsupported
    message, so the user gets the polite reply. With ``phone_number_id`` set, messages and
    statuses addressed to another number of the same WABA are only counted, in
    ``ignored["other_number"]``.
    """
    try:
        doc = loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadWebhook(f"body is not JSON: {type(exc).__name__}") from None
    if not isinstance(doc, dict):
        raise BadWebhook("body is not a JSON object")
    if doc.get("object") != "whatsapp_business_account":
        raise BadWebhook("object is not whatsapp_business_account")
    batch = Batch()
    for entry in _objects(doc, "entry", "body"):
        for change in _objects(entry, "changes", "entry"):
            _parse_change(change, batch, phone_number_id)
    return batch


def _count(counter: dict[K, int], key: K, n: int = 1) -> None:
    counter[key] = counter.get(key, 0) + n


def _objects(parent: Mapping[str, Any], key: str, where: str) -> list[Any]:
    """``parent[key]`` as a list of JSON objects (the envelope's entry and changes levels);
    BadWebhook when missing or not."""
    if key not in parent:
        raise BadWebhook(f"{where}: {key} missing")
    items = parent[key]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise BadWebhook(f"{where}: {key} is not a list of objects")
    return items


def _parse_change(change: Mapping[str, Any], batch: Batch, own_number: str | None) -> None:
    field = change.get("field")
    if not isinstance(field, str):
        raise BadWebhook("change: field missing")
    if field != "messages":
        # account_update, message_template_status_update, calls, ...: not ours to answer.
        # Counted by name when Meta documents it, else as "other": the names become metric
        # labels, and a signed payload may carry any string there.
        _count(batch.ignored, f"field:{field if field in _OTHER_FIELDS else 'other'}")
        return
    value = change.get("value")
    if not isinstance(value, dict):
        raise BadWebhook("change: value missing")
    metadata = value.get("metadata", {})
    if not isinstance(metadata, dict):
        raise BadWebhook("value: metadata is not an object")
    number = _text(metadata.get("phone_number_id"))
    # The lists are the envelope; their items are checked one by one below.
    contacts = [c for c in _list(value, "contacts", "value") if isinstance(c, dict)]
    messages = _list(value, "messages", "value")
    statuses = _list(value, "statuses", "value")
    errors = [e for e in _list(value, "errors", "value") if isinstance(e, dict)]

    if own_number is not None and number != own_number:
        if messages or statuses:
            _count(batch.ignored, "other_number", len(messages) + len(statuses))
        return
    for error in errors:
        batch.errors.append(f"value error {_code(error)}")
    for status in statuses:
        if not isinstance(status, dict):
            _skip(batch, "status is not an object")
            continue
        state = _text(status.get("status")) or "unknown"
        _count(batch.statuses, _STATUSES.get(state, DeliveryStatus.OTHER))
        if state == "failed":
            failures = status.get("errors")
            codes = (
                [_code(e) for e in failures if isinstance(e, dict)]
                if isinstance(failures, list)
                else []
            )
            batch.errors.extend(f"status failed {c}" for c in codes or ["unknown"])
    for message in messages:
        problem = _unanswerable(message)
        if problem:
            _skip(batch, problem)
            continue
        inbound = _inbound(message, contacts, number, batch)
        if isinstance(inbound, Inbound):
            if problem := inbound.unstorable():
                # A lone surrogate ("\ud83d" is valid JSON, not valid UTF-8) would fail the
                # inbox write, and with it the whole batch, on every redelivery.
                _skip(batch, problem)
                continue
            batch.messages.append(inbound)
        elif inbound == "malformed":
            _skip(batch, "message with a timestamp that is not Unix seconds")
        else:
            _count(batch.ignored, inbound)


def _list(parent: Mapping[str, Any], key: str, where: str) -> list[Any]:
    """``parent[key]`` as a list (empty when absent); BadWebhook when it is not a list."""
    items = parent.get(key, [])
    if not isinstance(items, list):
        raise BadWebhook(f"{where}: {key} is not a list")
    return items


def _skip(batch: Batch, problem: str) -> None:
    """Count and note an item that cannot be handled; the rest of the delivery goes on."""
    _count(batch.ignored, "malformed")
    batch.errors.append(f"malformed item skipped: {problem}")


def _code(error: Mapping[str, Any]) -> str:
    """An error's code for a log line: a number, or "unknown" (never an arbitrary string)."""
    code = error_code(error.get("code"))
    return "unknown" if code is None else str(code)


def _unanswerable(message: object) -> str:
    """Why ``message`` cannot be answered at all, or "" when it can.

    It needs an id (the dedupe key and the read receipt's target: answering an id-less message
    would answer every redelivery of it again) and a sender. ``from`` may be "" for a username
    user (§2.7) but must be there as a string, unless ``from_user_id`` names the BSUID. The
    type is not needed: a message without one is answered as unsupported.
    """
    if not isinstance(message, dict):
        return "message is not an object"
    if not _text(message.get("id")):
        return "message without id"
    if not isinstance(message.get("from"), str) and not _text(message.get("from_user_id")):
        # No id in the note: it goes to the log, and a wamid is base64 of the sender's number.
        return "message without a sender"
    return ""


def _user(message: Mapping[str, Any], contacts: list[dict[str, Any]]) -> User | None:
    """Who sent it (§2.7): key on the BSUID when there is one, answer to the phone if known."""
    sender = _text(message.get("from"))
    sender_uid = _text(message.get("from_user_id"))
    contact: Mapping[str, Any] = {}
    for candidate in contacts:
        if (sender and _text(candidate.get("wa_id")) == sender) or (
            sender_uid and _text(candidate.get("user_id")) == sender_uid
        ):
            contact = candidate
            break
    else:
        # A username user may come with "" everywhere but the contact's user_id: the one
        # contact of the change is then the sender.
        if not sender and not sender_uid and len(contacts) == 1:
            contact = contacts[0]
    user_id = _text(contact.get("user_id")) or sender_uid
    phone = (_text(contact.get("wa_id")) or sender).lstrip("+")
    key = user_id or phone
    if not key:
        return None
    return User(key=key, address=f"+{phone}" if phone else user_id)


def _timestamp(value: object) -> int | None:
    """Unix seconds (a string of digits, §2.2; a number is taken too); 0 when absent; None
    when present and not a timestamp ("²", 5000 digits, a negative number, a list)."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value < 10**12 else None
    if isinstance(value, str) and _TIMESTAMP.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _inbound(
    message: Mapping[str, Any], contacts: list[dict[str, Any]], number: str, batch: Batch
) -> Inbound | str:
    """The message as an Inbound, or the reason it owes no answer."""
    kind_name = _text(message.get("type"))
    if not kind_name:
        # Every message has a type; one without is answered as unsupported, never dropped.
        batch.errors.append("message without a type: answered as unsupported")
        kind_name = "unknown"
    errors = message.get("errors")
    if kind_name in _NO_ANSWER_TYPES:
        return kind_name
    interactive = message.get("interactive")
    if kind_name == "interactive" and isinstance(interactive, dict):
        reply_type = interactive.get("type")
        if isinstance(reply_type, str) and reply_type in _NO_ANSWER_INTERACTIVE:
            return reply_type
    unsupported = message.get("unsupported")
    if (
        kind_name == "unsupported"
        and isinstance(unsupported, dict)
        # A string first: a list there is unhashable, and the set lookup would raise.
        and _text(unsupported.get("type")) in _NO_ANSWER_UNSUPPORTED
    ):
        return str(unsupported["type"])
    user = _user(message, contacts)
    if user is None:
        return "no_user"
    timestamp = _timestamp(message.get("timestamp"))
    if timestamp is None:
        return "malformed"

    kind, text, media = Kind.UNSUPPORTED, "", None
    if isinstance(errors, list) and errors:
        # 131051 unknown type, 131052 media too big, ...: the user still gets the polite reply.
        batch.errors.extend(f"message error {_code(e)}" for e in errors if isinstance(e, dict))
    else:
        kind, text, media = _content(kind_name, message)
    return Inbound(
        message_id=message["id"],
        user=user,
        kind=kind,
        text=text,
        media=media,
        original_type=kind_name,
        timestamp=timestamp,
        channel_ref=number,
    )


def _content(kind_name: str, message: Mapping[str, Any]) -> tuple[Kind, str, Media | None]:
    payload = message.get(kind_name)
    if not isinstance(payload, dict):
        return Kind.UNSUPPORTED, "", None
    if kind_name == "text":
        body = payload.get("body")
        if isinstance(body, str):
            return Kind.TEXT, body, None
    elif kind_name == "interactive":
        reply = payload.get(_text(payload.get("type")))
        if payload.get("type") in ("button_reply", "list_reply") and isinstance(reply, dict):
            title = _text(reply.get("title"))
            description = _text(reply.get("description"))
            if title:
                return Kind.TEXT, f"{title}\n{description}" if description else title, None
    elif kind_name == "button":  # a template's quick-reply button (§2.5)
        label = _text(payload.get("text")) or _text(payload.get("payload"))
        if label:
            return Kind.TEXT, label, None
    elif kind_name == "audio":
        media_id = _text(payload.get("id"))
        if media_id:
            media = Media(
                id=media_id,
                mime_type=_text(payload.get("mime_type")) or "audio/ogg",
                sha256=_text(payload.get("sha256")) or None,
                voice=payload.get("voice") is True,
            )
            return Kind.VOICE, "", media
    return Kind.UNSUPPORTED, "", None
