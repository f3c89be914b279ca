"""The turn's upstream calls: timed, booked on the report, unguarded when no guard is given."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from daemon.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from daemon.resilience.breaker import CircuitOpen
from daemon.turn.calls import Calls, unguarded
from daemon.turn.report import TurnReport


def report() -> TurnReport:
    return TurnReport("t1", "text", "u:1")


async def test_unguarded_is_one_attempt_even_of_a_retryable_call() -> None:
    calls, booked, attempts = Calls(unguarded(), trio.current_time), report(), []

    async def busy() -> None:
        raise UpstreamUnavailable("elevenlabs-tts", "HTTP 503", status=503)

    with pytest.raises(UpstreamUnavailable):
        await calls.timed(
            booked,
            "tts",
            "elevenlabs-tts",
            5,
            busy,
            idempotent=True,
            on_attempt=lambda: attempts.append(1),
        )
    assert attempts == [1]
    assert booked.failures == []  # an HTTP answer: the client's response hook counts it


async def test_a_call_gets_its_own_timeout_and_the_report_books_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls, booked = Calls(unguarded(), trio.current_time), report()

    async def hangs() -> None:
        await trio.sleep(100)

    with pytest.raises(UpstreamTimeout, match="no answer within 5s"):
        await calls.timed(booked, "agent", "agentforce", 5, hangs, idempotent=False)
    assert booked.failures == [("agentforce", "timeout")]
    assert booked.stages["agent"] == pytest.approx(5)


@pytest.mark.parametrize(
    ("error", "booked_as"),
    [
        (UpstreamUnavailable("whatsapp", "POST failed: ReadError"), [("whatsapp", "error")]),
        (CircuitOpen("whatsapp", retry_after=30), [("whatsapp", "circuit_open")]),
        (UpstreamUnavailable("whatsapp", "HTTP 500", status=500), []),
    ],
)
async def test_calls_without_an_http_answer_are_booked_as_failures(
    error: UpstreamError, booked_as: list[tuple[str, str]]
) -> None:
    calls, booked = Calls(unguarded(), trio.current_time), report()

    async def fails() -> None:
        raise error

    with pytest.raises(UpstreamError):
        await calls.timed(booked, "send", "whatsapp", 5, fails, idempotent=False)
    assert booked.failures == booked_as and "send" in booked.stages
