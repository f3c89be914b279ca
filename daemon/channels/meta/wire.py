"""Meta WhatsApp Cloud API wire format: pure functions, no I/O.

Inbound: the subscription handshake (reference/whatsapp.md §1), the ``X-Hub-Signature-256``
check (§2.1) and the webhook body (§2.2-§2.7, §3) turned into a provider-neutral ``Batch``.
Outbound: the ``/messages`` payloads (§5) and Graph error bodies mapped onto the daemon's
error tree (§5.1).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from daemon import upstream
from daemon.channels.base import BadWebhook, error_code, scrub_numbers
from daemon.errors import Reason, UpstreamError
from daemon.model import Batch, Inbound, Kind, Media, User

UPSTREAM = "whatsapp"
SIGNATURE_HEADER = "x-hub-signature-256"
TEXT_LIMIT = 4096  # characters in a text body (§5)
# The MIME type of our voice notes, in the upload's ``type`` field and on its file part. Graph
# lists Ogg as "OPUS codecs only; base audio/ogg not supported" (§4.1), and its own error text
# names the accepted form literally: "Please use one of audio/ogg; codecs=opus, ...".
VOICE_MIME = "audio/ogg; codecs=opus"

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
# A timestamp is a string of Unix seconds (§2.2). ASCII digits only: str.isdigit() also
# accepts "²" and other digits int() refuses; twelve of them reach the year 33658.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# Integers in the JSON longer than this are not read as numbers: CPython refuses to convert
# more than 4300 digits (a ValueError that would fail the whole delivery), and no field of a
# webhook needs more than a timestamp's or an error code's few digits.
_MAX_INT_DIGITS = 30

# Message types that owe no answer, and the reason counted in Batch.ignored. A reaction is not
# a question; system messages (number or identity changed, §2.5) and request_welcome come
# from WhatsApp itself; edits and deletions refer to a message already answered.
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
_NO_ANSWER_TYPES = frozenset({"reaction", "system", "request_welcome", "edit", "revoke"})
# Interactive messages that answer something the business itself asked for, not a question
# for the agent: a call permission granted or declined (pywa: CallPermissionUpdate), a Flow
# form submitted (nfm_reply; pywa: FlowCompletion). The daemon sends neither prompt; replying
# "unsupported" to a user who tapped "Allow calls" would be wrong. Counted by their type.
_NO_ANSWER_INTERACTIVE = frozenset({"call_permission_reply", "nfm_reply"})
# Older deliveries report edits as ``unsupported`` with the real type inside (§2.5 example).
_NO_ANSWER_UNSUPPORTED = frozenset({"edit", "revoke"})

# Graph error codes worth retrying later (§5.1): server errors, throttling, maintenance.
_RETRYABLE_CODES = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131056, 131057})
# Codes that will not get better by retrying (§5.1): auth, permissions, bad parameters,
# the 24 h window, undeliverable, spam limits, media, restricted accounts.
_FATAL_CODES = frozenset(
    {0, 3, 10, 100, 190, 368}
    | set(range(200, 300))
    | {130472, 131008, 131009, 131021, 131026, 131031, 131047, 131048, 131049, 131050}
    | {131051, 131052, 131053}
)

# What a code means in the daemon's words (UpstreamError.reason, daemon/errors.py), §5.1-§5.2.
_REASONS: dict[int, Reason] = {
    # Not processed; slow down. 4: the app's call rate; 80007: the WABA's; 130429: the
    # number's message throughput. 131057 is what Graph answers while it raises a number's
    # throughput (maintenance mode, up to a minute, §5.2): refused for capacity, not done.
    4: Reason.SLOW_DOWN,
    80007: Reason.SLOW_DOWN,
    130429: Reason.SLOW_DOWN,
    131057: Reason.SLOW_DOWN,
    # Too many messages to this one user; others are not affected (§5.2).
    131056: Reason.USER_BUSY,
    # The user cannot be messaged now; an apology would fail the same way.
    131047: Reason.RECIPIENT,  # more than 24 h since the user last wrote
    131026: Reason.RECIPIENT,  # undeliverable: not on WhatsApp, old client, terms
    131050: Reason.RECIPIENT,  # the user stopped marketing messages
    131049: Reason.RECIPIENT,  # held back "to maintain healthy ecosystem engagement"
    130472: Reason.RECIPIENT,  # the user's number is part of an experiment
    131030: Reason.RECIPIENT,  # not in the allowed list (test numbers of a dev app)
}
# Codes whose known meaning is not "slow down": a 429 or 503 carrying one is decided by the
# code (§5.1: a 429 with 131048, the spam limit, means stop, not wait). Unknown errors (1,
# 131000) may have been processed, so they are not "not processed" either.
_DECISIVE_CODES = _FATAL_CODES | {1, 131000}
# The codes' meanings; without a code we know, the status decides (daemon.upstream.GRAPH).
_CODES = upstream.Codes(
    retryable=_RETRYABLE_CODES, fatal=_FATAL_CODES, reasons=_REASONS, final=_DECISIVE_CODES
)
# On a call that names a media id (a send by id, GET /{media-id}), these codes mean Graph no
# longer has that media (uploads live 30 days, user media 7, §4): 100 for an id it does not
# know (what it answers for any unknown object), 131009 a parameter value not valid, 131052 /
# 131053 media errors. Elsewhere they mean what they say, and no new upload would help.
MEDIA_GONE_CODES = frozenset({100, 131009, 131052, 131053})


# --- handshake and signature ------------------------------------------------------------------


def handshake(query: Mapping[str, str], verify_token: str) -> str | None:
    """The ``hub.challenge`` to echo when Meta's subscription GET is genuine (§1), else None."""
    if not verify_token or query.get("hub.mode") != "subscribe":
        return None
    given = query.get("hub.verify_token", "")
    if not hmac.compare_digest(given.encode(), verify_token.encode()):
        return None
    challenge = query.get("hub.challenge", "")
    return challenge or None


def _signature_digest(header: str | None) -> str | None:
    """The lower-case hex digest of ``sha256=<64 hex>`` (§2.1), or None for any other shape."""
    if not header:
        return None
    scheme, sep, given = header.strip().partition("=")
    given = given.strip().lower()
    if sep != "=" or scheme.strip().lower() != "sha256" or not _HEX_DIGEST.fullmatch(given):
        return None
    return given


def signature_well_formed(header: str | None) -> bool:
    """True when ``header`` has the shape ``verify_signature`` could accept: checked before
    the body is read, so a request nobody signed costs no body buffering."""
    return _signature_digest(header) is not None


def verify_signature(app_secret: str, body: bytes, header: str | None) -> bool:
    """Check ``X-Hub-Signature-256: sha256=<hex>`` against the RAW body bytes (§2.1).

    Never over re-serialised JSON: Meta signs its ASCII-escaped encoding (``\\u00e4``), which a
    round trip through a JSON parser does not reproduce.
    """
    given = _signature_digest(header)
    if not app_secret or given is None:
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


# --- webhook body -----------------------------------------------------------------------------


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


class OversizedNumber:
    """An integer literal too long to be any webhook field (``_MAX_INT_DIGITS``); it is no
    ``int`` and no ``str``, so every field check treats it as a wrong type."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"OversizedNumber({self.digits} digits)"


def _parse_int(literal: str) -> int | OversizedNumber:
    return int(literal) if len(literal) <= _MAX_INT_DIGITS else OversizedNumber(len(literal))


def loads(body: bytes | str) -> Any:
    """``json.loads`` that never fails on a long integer literal (see OversizedNumber)."""
    return json.loads(body, parse_int=_parse_int)


def _count(counter: dict[str, int], key: str, n: int = 1) -> None:
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


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


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
        _count(batch.statuses, state)
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


# --- outbound payloads (§5) -------------------------------------------------------------------


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


# --- errors (§5.1) ----------------------------------------------------------------------------


def names_media(payload: Mapping[str, Any]) -> bool:
    """True when a /messages payload sends media by an uploaded id (§5), not by link."""
    kind = payload.get("type")
    media = payload.get(kind) if isinstance(kind, str) else None
    return isinstance(media, dict) and "id" in media


def parse_graph_error(
    status: int, body: bytes, *, media_call: bool = False, retry_after: float | None = None
) -> UpstreamError:
    """A Graph error answer as an UpstreamError, decided on ``error.code`` (§5.1).

    Meta says to handle errors on the code, not on the HTTP status; the status decides only
    when the body has no code we know (5xx, 423 and 429 may pass, the rest will not). The
    ``reason`` likewise: the code first (§5.1), then 429 / 503. ``media_call``: the request
    named a media id, so the MEDIA_GONE_CODES mean that media is gone. ``retry_after``: the
    answer's Retry-After. Phone numbers in the texts are scrubbed: the message reaches the logs.
    """
    error: Mapping[str, Any] = {}
    try:
        doc = loads(body)
    except (ValueError, RecursionError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        error = doc["error"]
    code = error_code(error.get("code"))
    text = _text(error.get("message")) or f"HTTP {status}"
    error_data = error.get("error_data")
    details = _text(error_data.get("details")) if isinstance(error_data, dict) else ""
    message = scrub_numbers(f"{text} ({details})" if details else text)
    return _CODES.error(
        UPSTREAM,
        message,
        status=status,
        code=code,
        statuses=upstream.GRAPH,
        reason=Reason.MEDIA_GONE if media_call and code in MEDIA_GONE_CODES else None,
        retry_after=retry_after,
    )
