"""Graph error bodies mapped onto the daemon's error tree (reference/whatsapp.md §5.1-§5.2):
pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from daemon import upstream
from daemon.channels.base import error_code, scrub_numbers
from daemon.channels.meta.wire.decode import as_text as _text
from daemon.channels.meta.wire.decode import loads
from daemon.errors import Reason, UpstreamError

UPSTREAM = "whatsapp"

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
