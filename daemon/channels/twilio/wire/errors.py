"""Twilio's error JSON mapped onto the daemon's error tree: pure functions, no I/O."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from daemon import upstream
from daemon.channels.base import error_code, scrub_numbers
from daemon.errors import Reason, UpstreamError

UPSTREAM = "twilio"

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
