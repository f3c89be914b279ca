"""Has anything reached the user, and what a failed send means for them."""

from __future__ import annotations

from daemon.errors import Reason, UpstreamError, UpstreamTimeout
from daemon.resilience.breaker import CircuitOpen
from daemon.resilience.retry import was_sent


def verdict(exc: UpstreamError) -> str:
    """What a failed send means for the user:

    - ``unknown``: it may have been delivered (a timeout or a connection lost after the
      request went out, an unreadable 2xx, a 5xx: Graph's 500 / 131000 may have been
      processed). Nothing more is sent: a second message is worse than none.
    - ``later``: certainly not delivered, and trying again later will likely work (the
      provider said slow down or the user is busy, its circuit is open, the request never
      left, the token was refused and may be renewed). The turn is deferred.
    - ``unreachable``: this user cannot be messaged now (24-hour window closed, not on
      WhatsApp, invalid number). No apology: it would fail the same way.
    - ``refused``: certainly not delivered, for this message only (a 4xx on its content).
    """
    if exc.reason == Reason.RECIPIENT:
        return "unreachable"
    if exc.reason in (Reason.SLOW_DOWN, Reason.USER_BUSY) or isinstance(exc, CircuitOpen):
        return "later"
    if isinstance(exc, UpstreamTimeout):
        return "unknown"
    if exc.status is None:
        return "unknown" if was_sent(exc) else "later"
    if exc.status == 401:  # the token was refused: nothing sent, and it may be renewed
        return "later"
    # 429 / 503 are "not processed" only when the client says so (Reason.SLOW_DOWN): a Graph
    # 503 carrying 131000, an unknown error, may have been processed all the same.
    if 400 <= exc.status < 500:
        return "refused"
    return "unknown"


class Delivery:
    """Has anything reached, or possibly reached, the user in this turn?"""

    def __init__(self) -> None:
        self.maybe = False  # a send was attempted and did not fail for sure
        self.sent = False  # a send succeeded

    def begin(self) -> None:
        self.maybe = True

    def done(self) -> None:
        self.sent = True

    def failed(self) -> None:
        self.maybe = self.sent

    def unknown(self) -> None:
        self.maybe = True
