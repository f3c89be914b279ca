"""What the daemon keeps about turns, whichever backend keeps it.

A message's turn moves through ``Stage``s; its ``TurnRecord`` is the message with how far its
turn got and what it got there (transcript, answer, ids of the messages sent).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from daemon.model import Inbound


class Stage(enum.StrEnum):
    """How far a turn got. The first six are in order; the last three are final."""

    RECEIVED = "received"
    TRANSCRIBED = "transcribed"
    ANSWERED = "answered"
    TEXT_SENT = "text_sent"
    VOICE_SENT = "voice_sent"
    DONE = "done"
    FAILED = "failed"  # given up (e.g. it crashed the daemon too often)
    APOLOGIZED = "apologized"  # the user got the apology in place of the answer


FINISHED = frozenset({Stage.DONE, Stage.FAILED, Stage.APOLOGIZED})
# The final stages share one rank: once a turn is finished, nothing moves it any more.
RANK = {stage: min(i, 5) for i, stage in enumerate(Stage)}


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One message's row: the message itself and how far its turn got."""

    inbound: Inbound
    stage: Stage
    transcript: str | None = None
    transcript_language: str | None = None
    answer: str | None = None  # the final user-facing text
    outcome: str | None = None
    text_ids: tuple[str, ...] = ()  # outbound ids of the answer's text parts sent so far
    voice_id: str | None = None
    attempts: int = 0  # runs counted by ``attempt``
    received_at: float = 0.0  # wall clock

    @property
    def finished(self) -> bool:
        return self.stage in FINISHED

    def reached(self, stage: Stage) -> bool:
        """Whether the turn got at least as far as ``stage`` (by rank, not by name)."""
        return RANK[self.stage] >= RANK[stage]
