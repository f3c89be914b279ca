"""Has the answer reached the user, and may the turn still say something? (pure, no I/O)

A turn sends the user one answer — the agent's, or one message in its place — and, whatever
fails, never two. This module keeps the turn honest about that, in the manner of h11's
``_state.py``: the states and the rules here, the moves in one table, no I/O. Every send of
the answer (or of a message in its place) moves the machine; the holding message, the echo
and the voice note do not (they are not the answer).

States::

    NOTHING      nothing sent, nothing on its way                           may speak
    IN_FLIGHT    a send is on its way (cancelled mid-way, it may still land)
    SENT         a send went out
    MAYBE        a send's outcome is unknown: it may have been delivered
    REFUSED      a send was refused for its content: room for one apology     may speak
    DEFERRED     nothing delivered, and later will likely work: the whole turn is tried
                 again (its row stays open, daemon/resume.py)
    UNREACHABLE  this user cannot be messaged now: an apology would fail the same way
    SILENT       nothing is to be said (over a limit whose notice went out already)

Moves (anything else is a bug in the turn, ``DeliveryError``)::

    NOTHING, REFUSED  --SEND-->          IN_FLIGHT
    IN_FLIGHT         --DELIVERED-->     SENT
    IN_FLIGHT         --UNKNOWN-->       MAYBE         (verdicts of a failed send:
    IN_FLIGHT         --REFUSED-->       REFUSED        ``verdict(exc)``)
    IN_FLIGHT         --LATER-->         DEFERRED
    IN_FLIGHT         --UNREACHABLE-->   UNREACHABLE
    NOTHING           --ALREADY_SENT-->  SENT          (the journal says it went out
                                                        before a restart)
    NOTHING           --SILENCE-->       SILENT

Rules the turn reads off the state:

- it may send the answer, or a message in its place, only in NOTHING and REFUSED
  (``may_speak``): never a second message after one that went out or may have;
- the answer may have reached the user in IN_FLIGHT, SENT and MAYBE (``may_have_reached``):
  then no apology follows, whatever else failed;
- the voice note follows only a text that went out (``sent``): a lone voice note would
  confuse.
"""

from __future__ import annotations

import enum

from daemon.errors import Reason, UpstreamError, UpstreamTimeout
from daemon.resilience.breaker import CircuitOpen
from daemon.resilience.retry import was_sent
from daemon.turn.report import Outcome


class State(enum.StrEnum):
    NOTHING = "nothing"
    IN_FLIGHT = "in_flight"
    SENT = "sent"
    MAYBE = "maybe"
    REFUSED = "refused"
    DEFERRED = "deferred"
    UNREACHABLE = "unreachable"
    SILENT = "silent"


class Event(enum.StrEnum):
    SEND = "send"
    DELIVERED = "delivered"
    ALREADY_SENT = "already_sent"
    SILENCE = "silence"


class Verdict(enum.StrEnum):
    """What a failed send means for the user (``verdict``); each is also a move."""

    UNKNOWN = "unknown"
    LATER = "later"
    UNREACHABLE = "unreachable"
    REFUSED = "refused"


class DeliveryError(Exception):
    """A move the rules do not allow: a bug in the turn, never the user's doing."""


_MOVES: dict[State, dict[Event | Verdict, State]] = {
    State.NOTHING: {
        Event.SEND: State.IN_FLIGHT,
        Event.ALREADY_SENT: State.SENT,
        Event.SILENCE: State.SILENT,
    },
    State.REFUSED: {Event.SEND: State.IN_FLIGHT},
    State.IN_FLIGHT: {
        Event.DELIVERED: State.SENT,
        Verdict.UNKNOWN: State.MAYBE,
        Verdict.REFUSED: State.REFUSED,
        Verdict.LATER: State.DEFERRED,
        Verdict.UNREACHABLE: State.UNREACHABLE,
    },
    State.SENT: {},
    State.MAYBE: {},
    State.DEFERRED: {},
    State.UNREACHABLE: {},
    State.SILENT: {},
}

_MAY_SPEAK = frozenset({State.NOTHING, State.REFUSED})
_MAY_HAVE_REACHED = frozenset({State.IN_FLIGHT, State.SENT, State.MAYBE})


class Delivery:
    """The delivery state of one turn."""

    def __init__(self) -> None:
        self.state = State.NOTHING

    def move(self, event: Event | Verdict) -> State:
        try:
            self.state = _MOVES[self.state][event]
        except KeyError:
            raise DeliveryError(f"{event} is not a move from {self.state}") from None
        return self.state

    @property
    def may_speak(self) -> bool:
        return self.state in _MAY_SPEAK

    @property
    def may_have_reached(self) -> bool:
        return self.state in _MAY_HAVE_REACHED

    @property
    def started(self) -> bool:
        """Whether the answer (or the message in its place) has begun to go out."""
        return self.state is not State.NOTHING

    @property
    def sent(self) -> bool:
        return self.state is State.SENT


def verdict(exc: UpstreamError) -> Verdict:
    """What a failed send means for the user:

    - ``UNKNOWN``: it may have been delivered (a timeout or a connection lost after the
      request went out, an unreadable 2xx, a 5xx: Graph's 500 / 131000 may have been
      processed). Nothing more is sent: a second message is worse than none.
    - ``LATER``: certainly not delivered, and trying again later will likely work (the
      provider said slow down or the user is busy, its circuit is open, the request never
      left, the token was refused and may be renewed). The turn is deferred.
    - ``UNREACHABLE``: this user cannot be messaged now (24-hour window closed, not on
      WhatsApp, invalid number). No apology: it would fail the same way.
    - ``REFUSED``: certainly not delivered, for this message only (a 4xx on its content).
    """
    if exc.reason == Reason.RECIPIENT:
        return Verdict.UNREACHABLE
    if exc.reason in (Reason.SLOW_DOWN, Reason.USER_BUSY) or isinstance(exc, CircuitOpen):
        return Verdict.LATER
    if isinstance(exc, UpstreamTimeout):
        return Verdict.UNKNOWN
    if exc.status is None:
        return Verdict.UNKNOWN if was_sent(exc) else Verdict.LATER
    if exc.status == 401:  # the token was refused: nothing sent, and it may be renewed
        return Verdict.LATER
    # 429 / 503 are "not processed" only when the client says so (Reason.SLOW_DOWN): a Graph
    # 503 carrying 131000, an unknown error, may have been processed all the same.
    if 400 <= exc.status < 500:
        return Verdict.REFUSED
    return Verdict.UNKNOWN


def outcome_after(failed: Verdict, outcome: Outcome) -> Outcome:
    """The turn's outcome once a send certainly did not deliver: ``LATER`` defers the whole
    turn, ``UNREACHABLE`` ends it without an apology, ``REFUSED`` leaves ``outcome`` (and
    room for one apology)."""
    if failed is Verdict.LATER:
        return Outcome.DEFERRED
    if failed is Verdict.UNREACHABLE:
        return Outcome.UNREACHABLE
    return outcome
