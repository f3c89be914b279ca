"""The last error of each kind, for the status: counted, timed, bounded, most recent first."""

from __future__ import annotations

from daemon.observe.recent import RecentErrors
from daemon.turn import TurnReport


def report(outcome: str, error: str = "", voice: str = "none", voice_error: str = "") -> TurnReport:
    return TurnReport(
        "t1", "text", "u:x", outcome=outcome, error=error, voice=voice, voice_error=voice_error
    )


def test_failed_turns_and_refused_or_unanswered_calls_are_kinds_of_error() -> None:
    now = [100.0]
    errors = RecentErrors(clock=lambda: now[0])
    errors.turn(report("answered"))
    errors.turn(report("unsupported"))
    errors.upstream("agentforce", "200")
    assert errors.latest() == []  # nothing went wrong

    errors.turn(report("agent_down", error="agentforce: HTTP 503"))
    now[0] = 105.0
    errors.upstream("whatsapp", "400")
    errors.upstream("agentforce", "timeout")
    errors.turn(report("answered", voice="failed", voice_error="elevenlabs-tts: HTTP 500"))
    now[0] = 110.0
    errors.turn(report("agent_down", error="agentforce: timeout after 60s"))
    kinds = [(e.kind, e.count, e.last_at, e.detail) for e in errors.latest()]
    assert kinds == [
        ("turn agent_down", 2, 110.0, "agentforce: timeout after 60s"),
        ("voice failed", 1, 105.0, "elevenlabs-tts: HTTP 500"),
        ("agentforce timeout", 1, 105.0, ""),
        ("whatsapp 400", 1, 105.0, ""),
    ]


def test_policy_is_not_an_error_but_a_spent_budget_is() -> None:
    errors = RecentErrors()
    for outcome in ("limited_rate", "limited_daily_turns", "limited_daily_stt_seconds"):
        errors.turn(report(outcome))
    errors.turn(report("too_long"))  # a voice note over [voice] max_seconds: told so
    assert errors.latest() == []
    errors.turn(report("over_budget", error="daily budget for agent spent"))
    errors.turn(report("undecodable"))  # might be ours to fix: shown
    assert [e.kind for e in errors.latest()] == ["turn undecodable", "turn over_budget"]


def test_the_table_is_bounded_and_details_are_clipped() -> None:
    errors = RecentErrors(max_kinds=3)
    for status in ("500", "502", "503", "504"):
        errors.upstream("agentforce", status)
    assert [e.kind for e in errors.latest()] == [
        "agentforce 504",
        "agentforce 503",
        "agentforce 502",
    ]
    errors.turn(report("error", error="x" * 1000))
    assert len(errors.latest()[0].detail) == 200
