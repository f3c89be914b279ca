"""Twilio's WhatsApp wire format: pure functions, no I/O (reference/whatsapp.md §6).

Inbound: the ``X-Twilio-Signature`` check over the URL Twilio called plus the sorted form
parameters, and the form-encoded webhook turned into a provider-neutral ``Batch``.
Outbound: the Messages API form and Twilio's error JSON mapped onto the daemon's error tree.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl

from daemon import upstream
from daemon.channels.base import BadWebhook, error_code, scrub_numbers
from daemon.errors import Reason, UpstreamError
from daemon.model import Batch, DeliveryStatus, Inbound, Kind, Media, User

K = TypeVar("K")

UPSTREAM = "twilio"
SIGNATURE_HEADER = "x-twilio-signature"
TEXT_LIMIT = 1600  # characters in a WhatsApp Body sent through Twilio
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
TWIML_CONTENT_TYPE = "text/xml"
ADDRESS_PREFIX = "whatsapp:"

# A webhook is a few dozen fields; a body with thousands of them is not Twilio.
_MAX_FIELDS = 1000

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

# Twilio error codes (twilio.com/docs/api/errors/<code>) whose outcome does not follow from the
# HTTP status alone. Retrying later may help: 20429 Too Many Requests, 63018 channel rate
# limit, 20500/20503 Twilio's own server errors.
_RETRYABLE_CODES = frozenset({20429, 63017, 63018, 20500, 20503})
# Will not get better by retrying: 63016 outside the 24 h window (needs a template), 21211 /
# 21614 / 63003 / 63024 bad or unreachable To, 21610 unsubscribed recipient, 63014 blocked by
# the user, 63032 WhatsApp will not deliver to this user (Meta's 472), 20003
# authentication, 20404 not found (wrong AccountSid), 21212 / 63007 bad From, 21602 / 21617
# body missing or too long, 21620 bad media URL.
_FATAL_CODES = frozenset(
    {63016, 21211, 21614, 21610, 63003, 63014, 63024, 63032}
    | {20003, 20404, 21212, 63007, 21602, 21617, 21620}
)

# What a code means in the daemon's words (UpstreamError.reason, daemon/errors.py).
# - 20429 Too Many Requests; 63017 / 63018 "Rate limit exceeded (for Channel)": the account
#   or the WhatsApp sender is over its rate (twilio.com/docs/api/errors/63018: "combined
#   rate", "the messaging limit imposed by WhatsApp"; it maps WhatsApp's 429 / 471 / 1015).
#   That is the whole sender slowing down, not one user: SLOW_DOWN, not USER_BUSY. Twilio
#   has no documented code for Meta's per-user pair rate limit (131056).
# - The user cannot be messaged now, and an apology would fail the same way: RECIPIENT.
_REASONS: dict[int, Reason] = {
    20429: Reason.SLOW_DOWN,
    63017: Reason.SLOW_DOWN,
    63018: Reason.SLOW_DOWN,
    63016: Reason.RECIPIENT,  # outside the 24 h window
    21211: Reason.RECIPIENT,  # invalid To
    21614: Reason.RECIPIENT,  # To is not a valid mobile number
    21610: Reason.RECIPIENT,  # unsubscribed recipient
    63003: Reason.RECIPIENT,  # channel could not find the To address
    63014: Reason.RECIPIENT,  # blocked by the user
    63024: Reason.RECIPIENT,  # invalid message recipient
    63032: Reason.RECIPIENT,  # WhatsApp will not deliver to this user (Meta's 472)
}
# The codes' meanings; without a code we know, the status decides (daemon.upstream.TWILIO).
_CODES = upstream.Codes(
    retryable=_RETRYABLE_CODES, fatal=_FATAL_CODES, reasons=_REASONS, final=_FATAL_CODES
)

Params = Mapping[str, Sequence[str]] | Iterable[tuple[str, str]]


# --- signature ----------------------------------------------------------------------------------


def _grouped(params: Params) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    if isinstance(params, Mapping):
        for name, values in params.items():
            grouped.setdefault(name, []).extend([values] if isinstance(values, str) else values)
    else:
        for name, value in params:
            grouped.setdefault(name, []).append(value)
    return grouped


# Twilio's SharedKey signing (Public Beta: twilio.com/docs/usage/webhooks/webhook-shared-keys,
# twilio-python 9.13's RequestValidator, twilio-node's examples/WebhookSignatureValidation.md):
# when a Webhooks Rule matches the URL, Twilio signs with the rule's SharedKey secret and its
# algorithm instead of the Auth Token, and adds this header, "key=<sharedKeyId>,
# algorithm=HMAC_SHA256". Only the hash changes: the signed string is the same. Without the
# header (or without algorithm= in it) the signature is the Auth Token's HMAC-SHA1.
SIGNATURE_SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"
HMAC_SHA1 = "HMAC_SHA1"
HMAC_SHA256 = "HMAC_SHA256"
_HASHES = {HMAC_SHA1: hashlib.sha1, HMAC_SHA256: hashlib.sha256}


class SignatureSettings(NamedTuple):
    key: str  # the SharedKey's id ("" when the header names none)
    algorithm: str  # as the header spells it, upper-cased: HMAC_SHA1, HMAC_SHA256, ...


def signature_settings(header: str | None) -> SignatureSettings | None:
    """The ``X-Twilio-Webhooks-Signature-Settings`` header read as twilio-python reads it
    (comma-separated ``name=value``; no ``algorithm=`` means HMAC_SHA1); None without it,
    which means the Auth Token signed the request."""
    if header is None or not header.strip():
        return None
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, sep, value = part.partition("=")
        if sep and value.strip():
            fields.setdefault(name.strip().lower(), value.strip())
    return SignatureSettings(fields.get("key", ""), fields.get("algorithm", HMAC_SHA1).upper())


def signature(auth_token: str, url: str, params: Params, *, algorithm: str = HMAC_SHA1) -> str:
    """``X-Twilio-Signature`` for a POST to ``url`` with form ``params`` (§6).

    base64(HMAC-SHA1(auth_token, url + name1 + value1 + ...)) over the names sorted, and the
    distinct values of a repeated name sorted, each once: twilio-python's RequestValidator
    (``sorted(set(values))``) and twilio-node (``Array.from(new Set(paramValue)).sort()``)
    both count a value sent twice once, so ``Foo=a&Foo=a`` is signed as ``Fooa``.
    ``algorithm=HMAC_SHA256`` (a SharedKey's secret as ``auth_token``) hashes the same string
    with SHA-256; any other raises ValueError.
    """
    digest = _HASHES.get(algorithm.upper())
    if digest is None:
        raise ValueError(f"unsupported webhook signature algorithm: {algorithm}")
    data = [url]
    grouped = _grouped(params)
    for name in sorted(grouped):
        for value in sorted(set(grouped[name])):
            data.append(name + value)
    mac = hmac.new(auth_token.encode("utf-8"), "".join(data).encode("utf-8"), digest)
    return base64.b64encode(mac.digest()).decode("ascii")


def _split_port(hostport: str) -> tuple[str, str]:
    """``host[:port]`` -> (host, port or ""); IPv6 literals keep their brackets."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end != -1:
            rest = hostport[end + 1 :]
            return hostport[: end + 1], rest[1:] if rest.startswith(":") else ""
    host, sep, port = hostport.rpartition(":")
    if sep and port.isdigit():
        return host, port
    return hostport, ""


def base_variants(base: str) -> list[str]:
    """``base`` (``scheme://host[:port]``, maybe a path prefix after it) as given, without its
    port, and with the scheme's default port.

    Twilio does not sign consistently with or without the port, so its validator tries both:
    twilio-python's ``remove_port`` drops any port, ``add_port`` adds :443 (https) or :80
    when there is none (§6). Only the origin is varied: the request target is appended
    untouched by the caller. The list has no duplicates and starts with ``base`` itself.
    """
    scheme, sep, rest = base.partition("://")
    authority, slash, prefix = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    host, port = _split_port(hostport)
    default = "443" if scheme.lower() == "https" else "80"
    variants = [base]
    for netloc_port in ("", port or default):
        netloc = f"{userinfo}{at}{host}" + (f":{netloc_port}" if netloc_port else "")
        candidate = f"{scheme}{sep}{netloc}{slash}{prefix}"
        if candidate not in variants:
            variants.append(candidate)
    return variants


# base64 of the 20 bytes of an HMAC-SHA1 (§6): 26 characters, a 27th whose last two bits are
# zero (base64 of 160 bits, canonical as Twilio's encoder writes it), and one "=".
_SIGNATURE_SHAPE = re.compile(r"[A-Za-z0-9+/]{26}[AEIMQUYcgkosw048]=")
# base64 of the 32 bytes of an HMAC-SHA256 (a SharedKey's signature): 42 characters, a 43rd
# whose last two bits are zero (256 bits), and one "=".
_SHAPES = {
    HMAC_SHA1: _SIGNATURE_SHAPE,
    HMAC_SHA256: re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]="),
}


def signature_well_formed(header: str | None, *, algorithm: str = HMAC_SHA1) -> bool:
    """True when ``header`` has the shape of a signature ``verify`` could accept: checked
    before the body is read, so a request nobody signed costs no body buffering. An
    algorithm this module does not know has no well-formed signature."""
    shape = _SHAPES.get(algorithm.upper())
    return header is not None and shape is not None and shape.fullmatch(header.strip()) is not None


def verify(
    auth_token: str,
    base: str,
    target: str,
    params: Params,
    header: str | None,
    *,
    algorithm: str = HMAC_SHA1,
) -> bool:
    """True when ``header`` signs ``base`` + ``target`` + ``params`` with ``auth_token`` (§6).

    ``base`` is the origin Twilio called (``[twilio] public_url``, or what the daemon saw),
    ``target`` the raw path and query of the request, appended as they came. Every port
    variant of ``base`` is computed and compared in constant time, whatever matched first.
    ``algorithm`` is what ``signature_settings`` read (HMAC_SHA256: ``auth_token`` is then
    the SharedKey's secret); one this module does not know verifies nothing.
    """
    if not auth_token or not header or algorithm.upper() not in _HASHES:
        return False
    given = header.strip().encode("utf-8")
    grouped = _grouped(params)
    ok = False
    for candidate in base_variants(base):
        expected = signature(auth_token, candidate + target, grouped, algorithm=algorithm)
        ok |= hmac.compare_digest(expected.encode("ascii"), given)
    return ok


def public_base(public_url: str) -> str:
    """``[twilio] public_url`` as the base of the URL Twilio called.

    Behind a TLS-terminating proxy the daemon sees ``http://127.0.0.1:8080/webhook`` while
    Twilio signed ``https://bot.example.com/webhook`` (§6 pitfalls); hence ``public_url``.
    A proxy that serves us under a prefix must strip it: ``public_url`` carries it.
    """
    return public_url.rstrip("/")


# --- webhook body -------------------------------------------------------------------------------


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """An ``application/x-www-form-urlencoded`` body as (name, value) pairs, in order.

    Blank values are kept (Twilio sends ``Body=`` for media) because the signature covers
    them. Strict: bytes that are not UTF-8, or a field without ``=``, raise BadWebhook.
    """
    try:
        text = body.decode("utf-8")
        return parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=_MAX_FIELDS,
        )
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise BadWebhook(f"body is not a form: {type(exc).__name__}") from None


def _first(params: Params) -> dict[str, str]:
    """The first value of every name: Twilio sends each field once."""
    return {name: values[0] for name, values in _grouped(params).items() if values}


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
    fields = _first(params)
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


# --- Messages API -------------------------------------------------------------------------------


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


def parse_error(status: int, body: bytes, *, retry_after: float | None = None) -> UpstreamError:
    """A Twilio error answer as an UpstreamError.

    Twilio's error JSON is ``{"code": 21211, "message": "...", "more_info":
    "https://www.twilio.com/docs/errors/21211", "status": 400}``. Known codes decide; others
    go by HTTP status (429 and 5xx may pass, the rest will not). Non-JSON never crashes.
    ``reason`` comes from the code when Twilio gave one we know, else 429 / 503 mean
    SLOW_DOWN (a known code that means something else, such as 21211 on a 429, wins).
    ``retry_after``: the answer's Retry-After, carried by the error.
    """
    doc: Any = None
    with contextlib.suppress(ValueError, RecursionError):
        doc = json.loads(body)
    error: Mapping[str, Any] = doc if isinstance(doc, dict) else {}
    code = error_code(error.get("code"))
    message = error.get("message")
    # Twilio error messages quote the numbers they refuse; phone numbers never go to our logs.
    text = scrub_numbers(message) if isinstance(message, str) and message else f"HTTP {status}"
    return _CODES.error(
        UPSTREAM, text, status=status, code=code, statuses=upstream.TWILIO, retry_after=retry_after
    )
