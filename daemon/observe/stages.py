"""Stage timings measured below the turn, for its summary line and the stage histogram.

The turn times each upstream call itself; a few steps happen deeper, inside a client (the
Ogg/Opus encode inside text-to-speech). They report here, into the stages of the turn the
current task works for: like the turn id (observe/logs.py), the dict travels in a context
variable, which trio copies into every task the turn starts. Outside a turn nothing is kept.
"""

from __future__ import annotations

from contextvars import ContextVar

current_stages: ContextVar[dict[str, float] | None] = ContextVar("wa_agentd_stages", default=None)


def record(stage: str, seconds: float) -> None:
    """Add ``seconds`` to ``stage`` of the current turn, if there is one."""
    stages = current_stages.get()
    if stages is not None:
        stages[stage] = stages.get(stage, 0.0) + seconds
