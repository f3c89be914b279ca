"""Where a turn starts, from its journal record (pure, no I/O).

A turn runs again after a crash, a restart, a drain that ran out of time, or a deferral
(daemon/resume.py); its journal record (daemon/state/base.py ``TurnRecord``) says how far
the last run got. The rules, in the order they are applied:

1. ``GIVE_UP``: the turn was counted more than ``MAX_ATTEMPTS`` times. Runs that end are
   released (``Journal.release``), so these are runs that took the daemon down: the turn
   itself is the trouble. The user is told once — unless the answer went out already.
2. ``NOTICE``: the message came in over a per-user limit (daemon/intake.py noted it) and is
   the one of its window that gets the polite notice (the others were dropped at intake).
3. ``SAY``: a canned reply was chosen before (``report.CANNED``): it is said, not asked for
   again — except when it came from a passing trouble (``report.ASK_AGAIN``: the agent was
   down, the deadline, a bug) and had not gone out: then the agent is asked again.
4. ``DELIVER``: the agent's answer is in the journal: the parts not sent yet go out (the
   text unless ``text_sent``, the voice note unless ``voice_sent``), the agent is not asked.
5. ``ASK``: everything else — from the transcript when the journal has one (no download,
   no speech-to-text again).

Whatever the start, ``text_sent`` stops any message from going out twice, and a resumed
turn keeps the language its speech-to-text heard.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from daemon.model import Transcript
from daemon.state.base import Stage, TurnRecord
from daemon.turn.report import ASK_AGAIN, CANNED, Outcome

# A turn that took the daemon down this many times is given up (logged, not retried).
MAX_ATTEMPTS = 3
# Per-user limits decided as a message comes in (daemon/intake.py), and the ``[texts]``
# entry of the notice its turn says.
NOTICES: dict[Outcome, str] = {
    Outcome.LIMITED_RATE: "slow_down",
    Outcome.LIMITED_DAILY_TURNS: "daily_limit",
}


class Start(enum.StrEnum):
    GIVE_UP = "give_up"
    NOTICE = "notice"
    SAY = "say"
    DELIVER = "deliver"
    ASK = "ask"


@dataclass(frozen=True, slots=True)
class Plan:
    start: Start
    outcome: Outcome = Outcome.PENDING  # NOTICE, SAY, DELIVER: what the record decided
    reply: str = ""  # SAY, DELIVER: the text the record holds
    transcript: Transcript | None = None  # ASK: what speech-to-text heard before
    language: str | None = None  # the language speech-to-text heard before
    resumed: str = ""  # the stage a restarted turn resumes from ("" = a fresh turn)
    text_sent: bool = False
    voice_sent: bool = False


FRESH = Plan(Start.ASK)


def plan(record: TurnRecord | None, attempts: int | None) -> Plan:
    """Where the turn of ``record`` starts; ``attempts`` is the journal's count of its runs,
    this one included (None: the journal does not hold the message, nothing is counted)."""
    if record is None:
        return FRESH
    text_sent = record.reached(Stage.TEXT_SENT)
    if attempts is not None and attempts > MAX_ATTEMPTS:
        return Plan(Start.GIVE_UP, Outcome.GAVE_UP, text_sent=text_sent)
    resumed = Plan(
        Start.ASK,
        transcript=None
        if record.transcript is None
        else Transcript(record.transcript, record.transcript_language),
        language=record.transcript_language,
        resumed="" if record.stage is Stage.RECEIVED else record.stage.value,
        text_sent=text_sent,
        voice_sent=record.reached(Stage.VOICE_SENT),
    )
    recorded = _outcome(record.outcome)
    if recorded in NOTICES and not record.reached(Stage.ANSWERED):
        return replace(resumed, start=Start.NOTICE, outcome=recorded)
    if (
        record.reached(Stage.ANSWERED)
        and record.answer
        and not (recorded in ASK_AGAIN and not text_sent)
    ):
        start = Start.SAY if recorded in CANNED else Start.DELIVER
        return replace(resumed, start=start, outcome=recorded, reply=record.answer)
    return resumed


def _outcome(value: str | None) -> Outcome:
    """The recorded outcome; an answer recorded without one (or with one this daemon does
    not know: a row of another version) counts as answered, as it always did."""
    try:
        return Outcome(value) if value else Outcome.ANSWERED
    except ValueError:
        return Outcome.ANSWERED
