"""The state of one turn, and the small values its steps hand each other.

``Flow`` is everything one turn knows while it runs: the message, its report, its journal
and fence (the backend's, or those of one user's lease with several hosts), where it
started (``plan``), whether the answer went out (``delivery``), its language. One ``Turn``
serves every user; each run has its own ``Flow``.

A step of the answer path returns what it found (a question, an ``Answer``) or ``Canned``:
the message chosen in place of the answer, which ends the path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import trio

from daemon.config import TextsConfig, TextTable
from daemon.model import Inbound
from daemon.state.base import Fence, Journal, Stage
from daemon.turn.delivery import Delivery
from daemon.turn.plan import FRESH, Plan
from daemon.turn.report import Outcome, TurnReport

log = logging.getLogger("daemon.turn")


async def _unfenced() -> None:
    """The fence of one host: it may always send."""


UNFENCED: Fence = _unfenced


@dataclass(frozen=True, slots=True)
class Canned:
    """A message in place of the agent's answer ("" = nothing is said: over a limit whose
    notice went out already)."""

    outcome: Outcome
    reply: str


@dataclass(frozen=True, slots=True)
class Answer:
    """The agent's answer, as the user is to get it (markdown; the channel formats it)."""

    text: str
    outcome: Outcome


class Flow:
    def __init__(
        self,
        message: Inbound,
        report: TurnReport,
        *,
        journal: Journal,
        fence: Fence,
        texts: TextsConfig,
    ) -> None:
        self.message = message
        self.report = report
        self.journal = journal
        self.may_send = fence  # awaited before every message sent
        self._texts = texts
        self.plan: Plan = FRESH  # where the turn started (the journal's record of it)
        self.counted = False  # the journal counted this run (released when it ends)
        self.started = 0.0  # when the turn's work began (its clock): to_text, to_voice
        self.delivery = Delivery()
        self.language: str | None = None
        # The language this user's last turn was in: canned texts use it until this turn
        # knows better (a voice note's holding message comes before speech-to-text).
        self.remembered_language: str | None = None
        self.send_lock = trio.Lock()  # one message at a time, in the order they were meant
        self.extras_sent = False  # an echo or holding message went out already
        self.settled = trio.Event()  # the answer path is over

    @property
    def canned_language(self) -> str:
        """The language of the canned texts this user gets (a ``[texts]`` table's code)."""
        return self._texts.code_for(self.language or self.remembered_language)

    @property
    def texts(self) -> TextTable:
        return self._texts.tables[self.canned_language]

    async def note(self, stage: Stage, **fields: Any) -> None:
        """Write down how far the turn got. The write is not abandoned on cancellation (the
        SQLite store's thread is not), so a turn cancelled mid-note still leaves a
        consistent record."""
        await self.journal.progress(self.message.message_id, stage, **fields)
        log.debug("turn reached %s", stage.value)


class TextGate:
    """Lets the voice note wait until the text answer went out, and learn whether it did."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self.sent = False

    def open(self, sent: bool) -> None:
        self.sent = sent
        self._event.set()

    async def wait(self) -> bool:
        await self._event.wait()
        return self.sent


class Attempts:
    """Counts the attempts of one guarded call (``on_attempt``): what a billed call cost."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1
