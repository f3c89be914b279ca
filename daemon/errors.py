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
looks at the httpx error it was raised from).
"""

from __future__ import annotations


class UpstreamError(Exception):
    def __init__(
        self,
        upstream: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(f"{upstream}: {message}")
        self.upstream = upstream
        self.message = message
        self.status = status
        self.code = code
        self.retry_after: float | None = None
        self.sent: bool | None = None


class UpstreamTimeout(UpstreamError):
    def __init__(self, upstream: str, seconds: float) -> None:
        super().__init__(upstream, f"no answer within {seconds:g}s")
        self.seconds = seconds


class UpstreamUnavailable(UpstreamError):
    pass


class UpstreamRejected(UpstreamError):
    pass
