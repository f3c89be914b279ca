"""What one turn did: its summary line and what the metrics count.

daemon/observe imports only this module of the turn. ``Outcome`` names what became of the
user's message (the ``outcome`` label of ``wa_agentd_turns_total``), ``VoiceResult`` what
became of the voice note; both are ``StrEnum``s, so they compare equal to, and print as,
the words the logs, the metrics and the journal have always carried.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

from daemon.limits.base import Limit


class Outcome(enum.StrEnum):
    PENDING = "pending"  # the turn has not decided yet (a deadline finds it so)
    ANSWERED = "answered"
    ESCALATED = "escalated"  # the agent handed over to a human
    # Canned replies, each in place of the agent's answer:
    UNSUPPORTED = "unsupported"  # a message kind the daemon does not read
    NO_SPEECH = "no_speech"
    NOT_UNDERSTOOD = "not_understood"  # the voice note could not be fetched or transcribed
    AGENT_DOWN = "agent_down"
    AGENT_FAILURE = "agent_failure"  # the agent answered Failure / Error / nothing
    TIMEOUT = "timeout"  # the turn's deadline
    ERROR = "error"  # a bug
    SEND_FAILED = "send_failed"  # the answer was refused; the apology took its place
    TOO_LONG = "too_long"  # a voice note over [voice] max_seconds
    UNDECODABLE = "undecodable"  # audio that does not decode: not sent to speech-to-text
    OVER_BUDGET = "over_budget"  # a daily budget of the daemon is spent ([limits] budget_*)
    LIMITED_RATE = f"limited_{Limit.RATE}"  # per-user limits ([limits])
    LIMITED_DAILY_TURNS = f"limited_{Limit.DAILY_TURNS}"
    LIMITED_DAILY_STT_SECONDS = f"limited_{Limit.DAILY_STT_SECONDS}"
    LIMITED_DAILY_TTS_CHARACTERS = f"limited_{Limit.DAILY_TTS_CHARACTERS}"
    # Nothing (more) said:
    SEND_UNKNOWN = "send_unknown"  # the answer's send may have been delivered
    DEFERRED = "deferred"  # nothing could be delivered now: tried again later
    UNREACHABLE = "unreachable"  # this user cannot be messaged now
    GAVE_UP = "gave_up"  # the turn took the daemon down too often

    @classmethod
    def limited(cls, limit: Limit) -> Outcome:
        return cls(f"limited_{limit}")


class VoiceResult(enum.StrEnum):
    NONE = "none"  # no voice note was due
    SENT = "sent"
    SKIPPED = "skipped"  # due, but not sent: no text went out, or no allowance for it
    FAILED = "failed"  # the text answer stood alone


LIMITED = frozenset(Outcome.limited(limit) for limit in Limit)
# Outcomes whose message is a canned text, not the agent's answer.
CANNED = frozenset(
    {
        Outcome.UNSUPPORTED,
        Outcome.NO_SPEECH,
        Outcome.NOT_UNDERSTOOD,
        Outcome.AGENT_DOWN,
        Outcome.AGENT_FAILURE,
        Outcome.TIMEOUT,
        Outcome.ERROR,
        Outcome.SEND_FAILED,
        Outcome.TOO_LONG,
        Outcome.UNDECODABLE,
        Outcome.OVER_BUDGET,
        *LIMITED,
    }
)
# Canned outcomes that came from a passing trouble: a turn resumed before its apology went
# out asks the agent again instead of apologising.
ASK_AGAIN = frozenset({Outcome.AGENT_DOWN, Outcome.TIMEOUT, Outcome.ERROR})
# Business outcomes: what the user did or asked for, not trouble (logged at INFO).
QUIET = frozenset(
    {
        Outcome.ANSWERED,
        Outcome.ESCALATED,
        Outcome.UNSUPPORTED,
        Outcome.NO_SPEECH,
        Outcome.TOO_LONG,
        Outcome.UNDECODABLE,
        *LIMITED,
    }
)


@dataclass
class TurnReport:
    """What one turn did, for its summary log line and the metrics."""

    turn_id: str
    kind: str
    user: str  # hashed
    message_id: str = ""  # for tests and tools; not in the summary line
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    outcome: Outcome = Outcome.PENDING
    voice: VoiceResult = VoiceResult.NONE
    language: str = ""  # the language the turn answered in ("" = the default)
    cached: list[str] = field(default_factory=list)  # "transcript", "answer": what a cache gave
    resumed: str = ""  # the stage a restarted turn resumed from ("" = a fresh turn)
    extras: list[str] = field(
        default_factory=list
    )  # "holding", "echo": messages besides the answer
    error: str = ""
    voice_error: str = ""  # why the voice note failed, when the text answer stood alone
    # Upstream calls that got no HTTP answer at all (the HTTP ones are counted by the
    # clients' response hooks): (upstream, "timeout" | "error").
    failures: list[tuple[str, str]] = field(default_factory=list)
    # What the turn cost: Agentforce calls, seconds of audio and characters sent to STT / TTS
    # (once per attempt), WhatsApp messages sent by kind (text, voice, canned, extra; a
    # long answer split in three is three).
    agent_calls: int = 0
    stt_seconds: float = 0.0
    tts_characters: int = 0
    sent: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        stages = " ".join(f"{k}={v:.3f}" for k, v in self.stages.items())
        err = f" error={self.error!r}" if self.error else ""
        err += f" voice_error={self.voice_error!r}" if self.voice_error else ""
        extras = f" extras={','.join(self.extras)}" if self.extras else ""
        lang = f" lang={self.language}" if self.language else ""
        extras += f" cached={','.join(self.cached)}" if self.cached else ""
        extras += f" resumed={self.resumed}" if self.resumed else ""
        return (
            f"turn={self.turn_id} done user={self.user} kind={self.kind} outcome={self.outcome} "
            f"voice={self.voice}{lang}{extras} {stages}{err}"
        ).rstrip()

    @property
    def level(self) -> int:
        """The log level of the summary line: trouble is a warning."""
        return logging.INFO if self.outcome in QUIET else logging.WARNING
