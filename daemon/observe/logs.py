"""Logging helpers shared by every module.

Phone numbers and user ids appear in logs only through ``hashed``: stable within a
deployment (so an operator can follow one user across lines), useless to anyone reading the
log without the salt.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from contextvars import ContextVar
from typing import TextIO

# A per-host salt would be better for privacy but would make hashes differ between hosts
# behind one load balancer; an operator can set WA_AGENTD_LOG_SALT to choose.
_SALT = os.environ.get("WA_AGENTD_LOG_SALT", "wa-agentd").encode()


def hashed(value: str) -> str:
    """A short, stable, non-reversible tag for a phone number or user id."""
    return "u:" + hashlib.blake2s(value.encode(), key=_SALT[:32], digest_size=5).hexdigest()


# --------------------------------------------------------------------------- turn ids

# The id of the turn the current task works for. Set by the turn; trio gives every task a
# copy of its parent's context, so the tasks a turn starts carry the id too, and every log
# line of one turn can be found with `journalctl -g 'turn=<id>'`.
current_turn: ContextVar[str] = ContextVar("wa_agentd_turn", default="")


class _TurnIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        turn = current_turn.get()
        record.turn = f"turn={turn} " if turn else ""
        return True


# --------------------------------------------------------------------------- set-up

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _priority(levelno: int) -> int:
    """syslog priority of a logging level (journald reads it from a <N> line prefix)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalFormatter(logging.Formatter):
    """``<N>`` on every line, so a multi-line traceback keeps its priority in the journal.

    journald strips the prefix and files the line at priority N (SyslogLevelPrefix=, on by
    default); ``journalctl -p warning`` then shows exactly the problems.
    """

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def setup(level: str = "info", stream: TextIO | None = None) -> None:
    """One line per event on stderr. Under journald no timestamps (it adds its own)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_TurnIdFilter())
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(turn)s%(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(turn)s%(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # Per-request access lines would drown the turn summaries; hypercorn errors still show.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
