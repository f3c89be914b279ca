"""What an upstream's answer means, decided in one place for every client.

Every client (Agentforce, Graph, Twilio, media downloads, ElevenLabs) used to turn httpx
errors and HTTP statuses into ``daemon.errors`` by itself; the copies had drifted apart.
Here, once:

``map_transport_errors(upstream, doing)`` wraps the httpx call (httpx's own
``_transports/default.py`` ``map_httpcore_exceptions`` is the model)::

    httpx.TransportError        -> UpstreamUnavailable   connect, read, write, pool, timeouts,
                                                         protocol errors: later may work
    any other httpx.HTTPError   -> UpstreamRejected      a body its Content-Encoding cannot
                                                         undo: asking again gets the same

The message is "<doing> failed: <class>: <text>", the httpx error is its ``__cause__``
(``resilience.retry.was_sent`` reads connect and pool errors there: not sent). The text is
left out for ``LocalProtocolError``: h11 quotes the header value it refused, and our headers
carry bearer tokens and API keys.

``Statuses``: what the HTTP status of an error answer means for one upstream, where the
body's own code does not decide (``Codes``: Graph and Twilio codes decide first). The table::

    status      agentforce     whatsapp       twilio         elevenlabs
    408         U              R              R              U
    409         R              R              R              U
    423         U user_busy    U              R              R
    429         U slow_down    U slow_down    U slow_down    U slow_down
    503         U slow_down    U slow_down    U slow_down    U slow_down
    other 5xx   U              U              U              U
    other       R              R              R              R

U is ``UpstreamUnavailable`` (retrying later may help), R ``UpstreamRejected``; the word
after it is the ``Reason``. Where the columns differ, each upstream documents it so:

- 429 and 503 are "not processed, slow down" everywhere; another 5xx may have been processed
  (a 500 is also Agentforce's 120 s timeout, reference/agentforce.md §7.1; Graph's 131000
  "unknown error" on a 503 is decided by its code, and has no reason), so it carries none and
  a send that got one is an unknown outcome, not repeated.
- Agentforce 423: the session is busy with an earlier request, one at a time per session
  (agentforce.md §10): this user's conversation waits, nobody else's (USER_BUSY). 408: not
  received whole, may pass.
- ElevenLabs 408 and 409: retried like the official SDK's ``_should_retry`` does
  (reference/speech.md §1.7); its busy codes (``system_busy``, ``too_many_concurrent_requests``)
  are SLOW_DOWN by code.
- Graph decides on ``error.code`` (reference/whatsapp.md §5.1); its status column speaks only
  for a body without a known code. Twilio likewise on its ``code``; neither documents 408,
  and only Graph's parser ever counted a 423 as "not now".

``STATUS_TABLE`` holds the columns by upstream; tests/unit/test_upstream.py checks the table
above against it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

import httpx

from daemon.errors import Reason, UpstreamError, UpstreamRejected, UpstreamUnavailable
from daemon.resilience.retry import retry_after_seconds

C = TypeVar("C", int, str)

# What reading a streamed body can raise: the connection (TransportError) or the decoding.
READ_ERRORS = (httpx.TransportError, httpx.DecodingError)

_MAX_DETAIL = 200


class Meaning(NamedTuple):
    """What an error answer means: the error class to raise, and its reason."""

    kind: type[UpstreamError]
    reason: Reason | None


@dataclass(frozen=True, slots=True)
class Statuses:
    """One upstream's column of the table: what an error status means without a code."""

    # Besides every 5xx: retrying later may help (UpstreamUnavailable).
    transient: frozenset[int]
    reasons: Mapping[int, Reason]

    def meaning(self, status: int) -> Meaning:
        kind = (
            UpstreamUnavailable if status >= 500 or status in self.transient else UpstreamRejected
        )
        return Meaning(kind, self.reasons.get(status))


_NOT_NOW = {429: Reason.SLOW_DOWN, 503: Reason.SLOW_DOWN}

AGENTFORCE = Statuses(
    transient=frozenset({408, 423, 429}), reasons={423: Reason.USER_BUSY, **_NOT_NOW}
)
GRAPH = Statuses(transient=frozenset({423, 429}), reasons=_NOT_NOW)
TWILIO = Statuses(transient=frozenset({429}), reasons=_NOT_NOW)
ELEVENLABS = Statuses(transient=frozenset({408, 409, 429}), reasons=_NOT_NOW)

STATUS_TABLE: Mapping[str, Statuses] = {
    "agentforce": AGENTFORCE,
    "whatsapp": GRAPH,
    "twilio": TWILIO,
    "elevenlabs": ELEVENLABS,
}


@dataclass(frozen=True, slots=True)
class Codes(Generic[C]):
    """What an upstream's own error codes mean. A code listed here decides over the status:
    ``retryable`` and ``fatal`` the class, ``reasons`` the reason, and ``final`` codes keep
    "no reason" even on a 429 or 503 (their known meaning is not "slow down")."""

    retryable: frozenset[C] = frozenset()
    fatal: frozenset[C] = frozenset()
    reasons: Mapping[C, Reason] = field(default_factory=dict)
    final: frozenset[C] = frozenset()

    def meaning(self, code: C | None, status: int, statuses: Statuses) -> Meaning:
        by_status = statuses.meaning(status)
        if code is None:
            return by_status
        if code in self.retryable:
            kind: type[UpstreamError] = UpstreamUnavailable
        elif code in self.fatal:
            kind = UpstreamRejected
        else:
            kind = by_status.kind
        reason = self.reasons.get(code)
        if reason is None and code not in self.final:
            reason = by_status.reason
        return Meaning(kind, reason)

    def error(
        self,
        upstream: str,
        message: str,
        *,
        status: int,
        code: C | None,
        statuses: Statuses,
        reason: Reason | None = None,
        retry_after: float | None = None,
    ) -> UpstreamError:
        """The error an answer with ``status`` and ``code`` means; ``reason``, when given,
        says more than the tables can (Graph's MEDIA_GONE on a call that named a media id)."""
        kind, meant = self.meaning(code, status, statuses)
        return kind(
            upstream,
            message,
            status=status,
            code=None if code is None else str(code),
            reason=meant if reason is None else reason,
            retry_after=retry_after,
        )


def retry_after(response: httpx.Response) -> float | None:
    """The answer's own Retry-After, in seconds (capped), or None without a usable one."""
    return retry_after_seconds(response.headers, time.time())


def describe(exc: httpx.HTTPError) -> str:
    """An httpx error in words fit for a log line: its class, and its text unless that may
    quote what we sent (see the module doc)."""
    name = type(exc).__name__
    text = " ".join(str(exc).split())
    if not text or isinstance(exc, httpx.LocalProtocolError):
        return name
    if len(text) > _MAX_DETAIL:
        text = text[: _MAX_DETAIL - 1] + "…"
    return f"{name}: {text}"


@contextlib.contextmanager
def map_transport_errors(upstream: str, doing: str = "request") -> Iterator[None]:
    """Raise the ``daemon.errors`` meaning of an httpx error raised inside (module doc)."""
    try:
        yield
    except httpx.TransportError as exc:
        raise UpstreamUnavailable(upstream, f"{doing} failed: {describe(exc)}") from exc
    except httpx.HTTPError as exc:
        raise UpstreamRejected(upstream, f"{doing} failed: {describe(exc)}") from exc
