"""daemon.errors: the tree, the reasons' values, what an error carries from its constructor."""

from __future__ import annotations

from enum import StrEnum

from daemon.errors import (
    Reason,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from daemon.resilience.breaker import CircuitOpen


def test_reason_values_are_unchanged() -> None:
    # Logs, metrics labels and stored records spell reasons by these values.
    assert issubclass(Reason, StrEnum)
    assert {r.name: r.value for r in Reason} == {
        "SLOW_DOWN": "slow_down",
        "USER_BUSY": "user_busy",
        "RECIPIENT": "recipient",
        "MEDIA_GONE": "media_gone",
    }
    assert f"{Reason.USER_BUSY}" == "user_busy" == str(Reason.USER_BUSY)
    assert Reason("slow_down") is Reason.SLOW_DOWN


def test_the_tree() -> None:
    for cls in (UpstreamTimeout, UpstreamUnavailable, UpstreamRejected):
        assert issubclass(cls, UpstreamError)
    assert not issubclass(UpstreamRejected, UpstreamUnavailable)


def test_constructor_carries_everything() -> None:
    error = UpstreamUnavailable(
        "whatsapp",
        "throttled",
        status=429,
        code="130429",
        reason=Reason.SLOW_DOWN,
        retry_after=7.0,
        sent=False,
    )
    assert str(error) == "whatsapp: throttled"
    assert (error.upstream, error.message, error.status, error.code) == (
        "whatsapp",
        "throttled",
        429,
        "130429",
    )
    assert (error.reason, error.retry_after, error.sent) == (Reason.SLOW_DOWN, 7.0, False)


def test_defaults_say_nothing() -> None:
    error = UpstreamRejected("twilio", "no")
    assert (error.status, error.code, error.reason, error.retry_after, error.sent) == (
        None,
        None,
        None,
        None,
        None,
    )


def test_timeout_and_circuit_open() -> None:
    timeout = UpstreamTimeout("agentforce", 2.5)
    assert (timeout.message, timeout.seconds, timeout.sent) == ("no answer within 2.5s", 2.5, None)
    refused = CircuitOpen("elevenlabs-tts", 3.0)
    assert (refused.retry_after, refused.sent, refused.message) == (3.0, False, "circuit open")
