"""Errors raised by upstream clients.

The tree, so callers can catch at the depth they care about::

    UpstreamError                 an upstream call did not give us what we asked for
     ├── UpstreamTimeout          our own cancel scope fired (config [timeouts])
     ├── UpstreamUnavailable      never reached it, or it said "not now": connect error,
     │                            5xx, 429, 423; retrying later may help
     └── UpstreamRejected         it answered and refused the request: 4xx, an error code
                                  in the body, a malformed reply; retrying will not help

Every error names its ``upstream`` ("whatsapp", "agentforce", "elevenlabs-stt",
"elevenlabs-tts", "twilio") so the turn can log and count it without knowing the client.
``status`` is the HTTP status when there was one; ``code`` is the upstream's own error code
(Graph ``error.code``, ElevenLabs ``detail.status``, Agentforce ``error``) as a string.
``retry_after`` is the upstream's own Retry-After in seconds, when it sent one; ``sent`` says
whether the request may have reached the upstream (None: unknown; the retry policy then
looks at the httpx error it was raised from). Both are given when the error is made, by the
code that read the answer (daemon/upstream.py maps transport errors and statuses).

``reason`` is what the error means, in words every provider shares, so that the retry policy
and the turn decide on it without knowing which upstream or which error code it was. Only the
client that parsed the error sets it (a ``Reason``, or None: nothing special, decide on the
class and the status).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """The provider-neutral meanings an upstream error can carry (``UpstreamError.reason``).

    A ``StrEnum``: a reason is its value wherever it is logged, counted or compared."""

    # Not processed; the upstream asks us to slow down. Safe to repeat even for a send:
    # HTTP 429 / 503, Graph 4, 80007, 130429, Twilio 20429 / 63018, ElevenLabs busy.
    SLOW_DOWN = "slow_down"
    # Not processed: this one user's conversation must wait — too many messages to them
    # (Graph 131056, the pair rate limit) or their agent session is busy with an earlier
    # request (Agentforce 423). Waited out longer than SLOW_DOWN, and no sign of the
    # upstream's health: other users are not affected, so it opens no circuit.
    USER_BUSY = "user_busy"
    # The user cannot be messaged now (24-hour window closed, not on WhatsApp, invalid or
    # blocked number): an apology would fail the same way, so none is tried.
    RECIPIENT = "recipient"
    # An uploaded media id the provider no longer has: upload again.
    MEDIA_GONE = "media_gone"


class UpstreamError(Exception):
    def __init__(
        self,
        upstream: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        reason: Reason | None = None,
        retry_after: float | None = None,
        sent: bool | None = None,
    ) -> None:
        super().__init__(f"{upstream}: {message}")
        self.upstream = upstream
        self.message = message
        self.status = status
        self.code = code
        self.reason = reason
        self.retry_after = retry_after
        self.sent = sent


class UpstreamTimeout(UpstreamError):
    def __init__(self, upstream: str, seconds: float) -> None:
        super().__init__(upstream, f"no answer within {seconds:g}s")
        self.seconds = seconds


class UpstreamUnavailable(UpstreamError):
    pass


class UpstreamRejected(UpstreamError):
    pass
