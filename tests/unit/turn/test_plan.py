"""Where a resumed turn starts, from its journal record (pure: no trio, no I/O)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from daemon.model import Inbound, Kind, Transcript, User
from daemon.state.base import Stage, TurnRecord
from daemon.turn.plan import FRESH, MAX_ATTEMPTS, NOTICES, Plan, Start, plan
from daemon.turn.report import ASK_AGAIN, CANNED, LIMITED, Outcome

MESSAGE = Inbound("wamid.1", User("u", "+1"), Kind.VOICE)


def record(stage: Stage = Stage.RECEIVED, **fields: object) -> TurnRecord:
    return replace(TurnRecord(MESSAGE, stage), **fields)  # type: ignore[arg-type]


def test_a_message_the_journal_does_not_hold_starts_fresh() -> None:
    assert plan(None, None) is FRESH
    assert plan(None, 1) == Plan(Start.ASK)


def test_a_new_message_is_asked_and_not_resumed() -> None:
    assert plan(record(), 1) == Plan(Start.ASK)


@pytest.mark.parametrize("stage", [Stage.RECEIVED, Stage.TRANSCRIBED, Stage.TEXT_SENT])
def test_a_turn_that_took_the_daemon_down_too_often_is_given_up(stage: Stage) -> None:
    got = plan(record(stage, answer="hi"), MAX_ATTEMPTS + 1)
    assert got == Plan(Start.GIVE_UP, Outcome.GAVE_UP, text_sent=stage is Stage.TEXT_SENT)
    assert plan(record(stage), MAX_ATTEMPTS).start is not Start.GIVE_UP
    assert plan(record(stage), None).start is not Start.GIVE_UP  # not counted: never given up


def test_a_transcribed_turn_asks_from_its_transcript_in_its_language() -> None:
    got = plan(record(Stage.TRANSCRIBED, transcript="hola", transcript_language="es"), 2)
    assert got.start is Start.ASK
    assert got.transcript == Transcript("hola", "es")
    assert (got.language, got.resumed) == ("es", "transcribed")
    assert not got.text_sent and not got.voice_sent


def test_an_answered_turn_delivers_from_the_journal() -> None:
    got = plan(record(Stage.ANSWERED, answer="At 9.", outcome="answered"), 2)
    assert (got.start, got.reply, got.outcome) == (Start.DELIVER, "At 9.", Outcome.ANSWERED)
    assert got.resumed == "answered" and not got.text_sent


def test_what_went_out_before_is_not_sent_again() -> None:
    got = plan(record(Stage.TEXT_SENT, answer="At 9.", outcome="answered"), 2)
    assert got.start is Start.DELIVER and got.text_sent and not got.voice_sent
    got = plan(record(Stage.VOICE_SENT, answer="At 9.", outcome="answered"), 2)
    assert got.text_sent and got.voice_sent


def test_an_answer_without_a_recorded_outcome_or_with_an_unknown_one_is_an_answer() -> None:
    for outcome in (None, "", "from_a_newer_daemon"):
        got = plan(record(Stage.ANSWERED, answer="At 9.", outcome=outcome), 2)
        assert (got.start, got.outcome) == (Start.DELIVER, Outcome.ANSWERED)


@pytest.mark.parametrize("outcome", sorted(CANNED - ASK_AGAIN))
def test_a_canned_reply_is_said_again_not_asked_for(outcome: Outcome) -> None:
    got = plan(record(Stage.ANSWERED, answer="Sorry.", outcome=outcome.value), 2)
    assert (got.start, got.reply, got.outcome) == (Start.SAY, "Sorry.", outcome)


@pytest.mark.parametrize("outcome", sorted(ASK_AGAIN))
def test_an_apology_for_a_passing_trouble_asks_again_unless_it_went_out(outcome: Outcome) -> None:
    unsent = record(Stage.ANSWERED, answer="Sorry.", outcome=outcome.value)
    assert plan(unsent, 2).start is Start.ASK  # the agent may be back
    sent = record(Stage.TEXT_SENT, answer="Sorry.", outcome=outcome.value)
    got = plan(sent, 2)
    assert got.start is Start.SAY and got.text_sent  # said: the runner sends nothing more


@pytest.mark.parametrize("outcome", sorted(NOTICES))
def test_a_message_over_a_limit_at_intake_says_its_notice(outcome: Outcome) -> None:
    got = plan(record(outcome=outcome.value), 1)
    assert (got.start, got.outcome, got.resumed) == (Start.NOTICE, outcome, "")
    # Once the notice was chosen and written down, it is a canned reply like any other.
    said = plan(record(Stage.ANSWERED, answer="Slow down.", outcome=outcome.value), 2)
    assert said.start is Start.SAY


def test_notices_are_per_user_limits_decided_at_intake() -> None:
    assert set(NOTICES) <= LIMITED
