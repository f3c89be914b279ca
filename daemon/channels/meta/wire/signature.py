"""The subscription handshake (reference/whatsapp.md §1) and the ``X-Hub-Signature-256``
check over the raw body (§2.1): pure functions, no I/O."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

SIGNATURE_HEADER = "x-hub-signature-256"

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


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
