"""The delivery state machine and the verdict of a failed send (pure: no trio, no I/O)."""

from __future__ import annotations

import itertools

import httpx
import pytest

from daemon.errors import Reason, UpstreamError, UpstreamRejected, UpstreamTimeout
from daemon.errors import UpstreamUnavailable as Unavailable
from daemon.resilience.breaker import CircuitOpen
from daemon.turn.delivery import (
    Delivery,
    DeliveryError,
    Event,
    State,
    Verdict,
    outcome_after,
    verdict,
)
from daemon.turn.report import Outcome

# Every move the rules allow, and where it leads (the module header's table, spelled out).
ALLOWED = {
    (State.NOTHING, Event.SEND): State.IN_FLIGHT,
    (State.NOTHING, Event.ALREADY_SENT): State.SENT,
    (State.NOTHING, Event.SILENCE): State.SILENT,
    (State.REFUSED, Event.SEND): State.IN_FLIGHT,
    (State.IN_FLIGHT, Event.DELIVERED): State.SENT,
    (State.IN_FLIGHT, Verdict.UNKNOWN): State.MAYBE,
    (State.IN_FLIGHT, Verdict.REFUSED): State.REFUSED,
    (State.IN_FLIGHT, Verdict.LATER): State.DEFERRED,
    (State.IN_FLIGHT, Verdict.UNREACHABLE): State.UNREACHABLE,
}
MOVES: list[Event | Verdict] = [*Event, *Verdict]


def at(state: State) -> Delivery:
    delivery = Delivery()
    delivery.state = state
    return delivery


@pytest.mark.parametrize(("state", "move"), list(itertools.product(State, MOVES)))
def test_every_move_either_follows_the_table_or_is_refused(
    state: State, move: Event | Verdict
) -> None:
    delivery = at(state)
    if (state, move) in ALLOWED:
        assert delivery.move(move) is ALLOWED[state, move]
        assert delivery.state is ALLOWED[state, move]
    else:
        with pytest.raises(DeliveryError, match=f"{move} is not a move from {state}"):
            delivery.move(move)
        assert delivery.state is state  # a refused move changes nothing


def test_a_turn_starts_with_nothing_sent() -> None:
    delivery = Delivery()
    assert delivery.state is State.NOTHING
    assert delivery.may_speak and not delivery.started
    assert not delivery.may_have_reached and not delivery.sent


@pytest.mark.parametrize("state", list(State))
def test_what_the_turn_reads_off_each_state(state: State) -> None:
    delivery = at(state)
    assert delivery.may_speak is (state in {State.NOTHING, State.REFUSED})
    assert delivery.may_have_reached is (state in {State.IN_FLIGHT, State.SENT, State.MAYBE})
    assert delivery.sent is (state is State.SENT)
    assert delivery.started is (state is not State.NOTHING)


def test_a_refused_answer_leaves_room_for_an_apology_and_only_one_after_it_went_out() -> None:
    delivery = Delivery()
    delivery.move(Event.SEND)
    delivery.move(Verdict.REFUSED)
    assert delivery.may_speak  # the apology
    delivery.move(Event.SEND)
    delivery.move(Event.DELIVERED)
    assert delivery.sent and not delivery.may_speak
    with pytest.raises(DeliveryError):
        delivery.move(Event.SEND)  # never a second message


@pytest.mark.parametrize("failed", [Verdict.UNKNOWN, Verdict.LATER, Verdict.UNREACHABLE])
def test_after_an_unknown_deferred_or_unreachable_send_nothing_more_is_said(
    failed: Verdict,
) -> None:
    delivery = Delivery()
    delivery.move(Event.SEND)
    delivery.move(failed)
    assert not delivery.may_speak and not delivery.sent
    assert delivery.may_have_reached is (failed is Verdict.UNKNOWN)


def test_a_send_cancelled_mid_way_may_have_reached_the_user() -> None:
    delivery = Delivery()
    delivery.move(Event.SEND)  # and then the deadline: no verdict ever comes
    assert delivery.may_have_reached and not delivery.may_speak and not delivery.sent


def not_sent() -> UpstreamError:
    error = Unavailable("whatsapp", "connect failed")
    error.__cause__ = httpx.ConnectError("refused")  # the request never left
    return error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            UpstreamRejected("whatsapp", "131047", status=400, reason=Reason.RECIPIENT),
            "unreachable",
        ),
        (UpstreamRejected("whatsapp", "130429", status=400, reason=Reason.SLOW_DOWN), "later"),
        (UpstreamRejected("whatsapp", "131056", status=400, reason=Reason.USER_BUSY), "later"),
        (Unavailable("whatsapp", "HTTP 503", status=503, reason=Reason.SLOW_DOWN), "later"),
        (CircuitOpen("whatsapp", retry_after=30), "later"),
        (UpstreamTimeout("whatsapp", 10), "unknown"),
        (Unavailable("whatsapp", "POST failed: ReadError"), "unknown"),  # after it went out
        (not_sent(), "later"),
        (UpstreamRejected("whatsapp", "(#190) token expired", status=401), "later"),
        (UpstreamRejected("whatsapp", "(#100) Invalid parameter", status=400), "refused"),
        (UpstreamRejected("whatsapp", "too many", status=429), "refused"),  # no SLOW_DOWN
        (Unavailable("whatsapp", "(#131000) Something went wrong", status=500), "unknown"),
        (Unavailable("whatsapp", "(#131000)", status=503), "unknown"),  # may be processed
        (Unavailable("whatsapp", "odd", status=302), "unknown"),
    ],
)
def test_the_verdict_of_a_failed_send(error: UpstreamError, expected: str) -> None:
    assert verdict(error) == Verdict(expected)


@pytest.mark.parametrize(
    ("failed", "expected"),
    [
        (Verdict.LATER, Outcome.DEFERRED),
        (Verdict.UNREACHABLE, Outcome.UNREACHABLE),
        (Verdict.REFUSED, Outcome.SEND_FAILED),
        (Verdict.UNKNOWN, Outcome.SEND_FAILED),
    ],
)
def test_the_outcome_after_a_failed_send(failed: Verdict, expected: Outcome) -> None:
    assert outcome_after(failed, Outcome.SEND_FAILED) is expected
