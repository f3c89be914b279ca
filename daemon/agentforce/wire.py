"""The Agentforce Agent API on the wire: payloads to build, bodies to parse. Pure, no I/O.

Section numbers (§) refer to reference/agentforce.md. The client (``client.py``) does the
HTTP; everything here is tested on the documented sample bodies without a socket.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from daemon import upstream
from daemon.errors import UpstreamError, UpstreamRejected
from daemon.model import AgentMessage, AgentReply

log = logging.getLogger(__name__)

UPSTREAM = "agentforce"

# Refresh this long before the JWT says the token expires, so a request signed just before
# expiry does not arrive just after it (and clocks between hosts disagree a little).
TOKEN_SAFETY_MARGIN = 60.0

# Scopes the connected app needs (§1.1); POZIL checks the same three (§1.3).
REQUIRED_SCOPES = ("api", "chatbot_api", "sfap_api")

# x-session-end-reason values (§5).
END_REASONS = ("UserRequest", "Transfer", "Expiration", "Error", "Other")

# Agent messages whose `message` field is what the agent says to the user (§6).
_SPOKEN_TYPES = frozenset({"Inform", "Inquire", "Confirm", "Failure", "Escalate"})
# Stream-only progress types: never an answer, even if one turns up in a sync reply (§4.1).
_PROGRESS_TYPES = frozenset(
    {"ProgressIndicator", "TextChunk", "ValidationFailureChunk", "EndOfTurn"}
)
# Known types that carry no user-facing text (§6): the turn looks at their presence only.
_SILENT_TYPES = frozenset({"SessionEnded", "Error"})

_MAX_ERROR_TEXT = 300


# -- OAuth (§1) ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    """An access token and when to stop using it.

    ``expires_at`` is on the caller's clock (the ``now`` passed to ``parse_token``, e.g.
    ``trio.current_time()``), not wall time.
    """

    access_token: str = field(repr=False)  # never in a log line or a traceback
    expires_at: float
    api_instance_url: str | None = None
    scope: str = ""

    @property
    def missing_scopes(self) -> tuple[str, ...]:
        """Required scopes (§1.1) the token lacks; empty when the response named no scope."""
        if not self.scope:
            return ()
        have = set(self.scope.split())
        return tuple(s for s in REQUIRED_SCOPES if s not in have)


def token_form(client_id: str, client_secret: str) -> dict[str, str]:
    """The form body of the client-credentials token request (§1.2)."""
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": client_secret,
    }


def parse_token(
    body: bytes,
    now: float,
    *,
    fallback_ttl: float = 1500.0,
    wall_now: float | None = None,
) -> Token:
    """Parse a token response (§1.3).

    The response has no ``expires_in`` (§1.4), so the lifetime comes from the JWT's ``exp``
    claim, measured from the response's own ``issued_at`` (both stamped by Salesforce, so our
    clock's skew does not matter) or else from ``wall_now`` (our ``time.time()``), minus
    ``TOKEN_SAFETY_MARGIN``. Without a readable ``exp`` the token is kept ``fallback_ttl``
    seconds; a 401 makes the client fetch a new one anyway.
    """
    data = _json_object(body)
    if data is None:
        raise UpstreamRejected(UPSTREAM, "token response is not a JSON object")
    if "error" in data:
        raise _oauth_error(None, data)
    access_token = data.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise UpstreamRejected(UPSTREAM, "token response has no access_token")
    api_instance_url = data.get("api_instance_url")
    scope = data.get("scope")
    return Token(
        access_token=access_token,
        expires_at=now + _token_ttl(access_token, data.get("issued_at"), wall_now, fallback_ttl),
        api_instance_url=api_instance_url if isinstance(api_instance_url, str) else None,
        scope=scope if isinstance(scope, str) else "",
    )


def _token_ttl(
    access_token: str, issued_at: object, wall_now: float | None, fallback_ttl: float
) -> float:
    exp = jwt_exp(access_token)
    if exp is None:
        return fallback_ttl
    start = _issued_at_seconds(issued_at)
    if start is None:
        start = wall_now
    if start is None:
        return fallback_ttl
    lifetime = exp - start
    if lifetime <= 0:
        # The claims contradict each other or our wall clock is far off: trust neither and
        # let the fallback (and the 401 refresh) handle it.
        return fallback_ttl
    # A short-lived token still gets used for half its life rather than not at all.
    return max(lifetime - TOKEN_SAFETY_MARGIN, lifetime / 2)


def jwt_exp(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT, without checking its signature; else None."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(claims, dict):
        return None
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


def _issued_at_seconds(value: object) -> float | None:
    # issued_at is epoch *milliseconds* as a string (§1.3).
    if isinstance(value, bool):
        return None
    if isinstance(value, str | int | float):
        try:
            return float(value) / 1000.0
        except ValueError:
            return None
    return None


def _oauth_error(
    status: int | None, data: dict[str, Any], retry_after: float | None = None
) -> UpstreamError:
    code = _str_or_none(data.get("error"))
    description = _str_or_none(data.get("error_description")) or ""
    text = _clip(": ".join(part for part in ("token", code or "error", description) if part))
    if status is None:  # an error in a 200 answer: a refusal
        return UpstreamRejected(UPSTREAM, text, code=code)
    kind, reason = upstream.AGENTFORCE.meaning(status)
    return kind(UPSTREAM, text, status=status, code=code, reason=reason, retry_after=retry_after)


# -- request bodies (§2.1, §3.1) ------------------------------------------------------------


def start_session_body(
    external_session_key: str,
    instance_endpoint: str,
    variables: list[dict[str, Any]] | None = None,
    *,
    bypass_user: bool = True,
) -> dict[str, Any]:
    """The documented minimum start-session body (§2.1), plus ``variables`` when given.

    ``bypass_user``: true (the documented default) runs the agent as its agent user; false
    runs it as the token's user, which employee agents require (``[agentforce] bypass_user``;
    @salesforce/agents sends false for AgentforceEmployeeAgent, true otherwise).
    """
    body: dict[str, Any] = {
        "externalSessionKey": external_session_key,
        "instanceConfig": {"endpoint": instance_endpoint},
        "streamingCapabilities": {"chunkTypes": ["Text"]},
        "bypassUser": bypass_user,
    }
    if variables is not None:
        body["variables"] = variables
    return body


def message_body(sequence_id: int, text: str) -> dict[str, Any]:
    """A synchronous (or streaming: same body, §4) send-message body (§3.1)."""
    return {
        "message": {"sequenceId": sequence_id, "type": "Text", "text": text},
        "variables": [],
    }


# -- responses (§2.2, §3.2, §6) ------------------------------------------------------------


def parse_messages(body: bytes) -> AgentReply:
    """A send-message (or end-session) response: 0..n messages of any type (§3.2, §6)."""
    data = _json_object(body)
    if data is None:
        raise UpstreamRejected(UPSTREAM, "reply is not a JSON object")
    return AgentReply(_messages(data.get("messages")))


def parse_session_start(body: bytes) -> tuple[str, AgentReply]:
    """A start-session response (§2.2): the session id and the greeting."""
    data = _json_object(body)
    if data is None:
        raise UpstreamRejected(UPSTREAM, "session start reply is not a JSON object")
    session_id = data.get("sessionId")
    if not isinstance(session_id, str) or not session_id:
        raise UpstreamRejected(UPSTREAM, "session start reply has no sessionId")
    return session_id, AgentReply(_messages(data.get("messages")))


def _messages(raw: object) -> tuple[AgentMessage, ...]:
    # An empty or missing array happens (agent not activated, §3.2 [C]); the turn decides
    # what to tell the user. Anything but a list is a broken reply.
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise UpstreamRejected(UPSTREAM, "reply 'messages' is not an array")
    out: list[AgentMessage] = []
    for item in raw:
        message = agent_message(item)
        if message is not None:
            out.append(message)
    return tuple(out)


def agent_message(item: object) -> AgentMessage | None:
    """One entry of a reply's ``messages`` (or one streamed ``data.message``, §4.1) as the
    turn sees it; None for what is not an answer (stream progress types, broken entries)."""
    if not isinstance(item, dict):
        log.warning("agentforce reply: skipping a message that is not an object")
        return None
    kind = item.get("type")
    if not isinstance(kind, str) or not kind:
        log.warning("agentforce reply: skipping a message without a type")
        return None
    text = _str_or_none(item.get("message")) or ""
    if kind in _SPOKEN_TYPES:
        return AgentMessage(kind, text)
    if kind in _PROGRESS_TYPES:
        return None
    if kind == "Error":
        # Its `message` is a server diagnostic (the §7.2 fields), not words for the user.
        log.warning(
            "agentforce reply carries an Error message: %s %s",
            _str_or_none(item.get("error")) or "",
            _clip(text),
        )
        return AgentMessage(kind)
    if kind in _SILENT_TYPES:
        return AgentMessage(kind)
    # A type this code does not know yet: keep whatever it says, the user may need it.
    log.info("agentforce reply: unknown message type %r", kind)
    return AgentMessage(kind, text)


# -- errors (§7) -----------------------------------------------------------------------------


def parse_error(status: int, body: bytes, *, retry_after: float | None = None) -> UpstreamError:
    """The error for a non-2xx answer, from the §7.2 envelope (``error``, ``message``).

    Token-endpoint answers use OAuth's ``error`` / ``error_description`` (§1.4) and are
    read the same way. 408, 423, 429 and 5xx may pass ("not now", §7.1, §10); other codes
    will not: the status decides (``daemon.upstream.AGENTFORCE``), the body's ``error`` only
    names it. ``retry_after``: the answer's Retry-After, carried by the error.
    """
    data = _json_object(body)
    if data is not None and "error_description" in data and "message" not in data:
        return _oauth_error(status, data, retry_after)
    code: str | None = None
    detail = ""
    if data is not None:
        code = _str_or_none(data.get("error"))
        detail = _str_or_none(data.get("message")) or ""
    else:
        detail = body[:200].decode("utf-8", errors="replace").strip()
    text = _clip(" ".join(part for part in (f"HTTP {status}", code, detail) if part))
    kind, reason = upstream.AGENTFORCE.meaning(status)
    return kind(UPSTREAM, text, status=status, code=code, reason=reason, retry_after=retry_after)


# -- helpers ---------------------------------------------------------------------------------


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; deep nesting
        return None
    return data if isinstance(data, dict) else None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 1] + "…"
