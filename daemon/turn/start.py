"""Where a run of a turn starts, and how the journal counts it.

Each run is counted (``Journal.attempt``) before it does anything and released when it ends
without taking the daemon down (finished, deferred, cancelled by a drain): what stays
counted are the runs that never got to the end — crashes, kill -9, OOM kills — and a turn
with too many of those is given up (plan.py). The record says where the run starts.
"""

from __future__ import annotations

import logging

import trio

from daemon.observe.logs import message_tag
from daemon.state.base import Stage
from daemon.turn import plan as plans
from daemon.turn.delivery import Event
from daemon.turn.flow import Flow
from daemon.turn.outbox import Outbox
from daemon.turn.report import Outcome

log = logging.getLogger("daemon.turn")


async def start(flow: Flow, outbox: Outbox) -> bool:
    """Count this run and plan it from the journal record: where a restarted turn stands.
    False when the turn must not run (it took the daemon down too often)."""
    message_id = flow.message.message_id
    record = await flow.journal.get(message_id)
    try:
        attempts: int | None = await flow.journal.attempt(message_id)
        flow.counted = True
    except KeyError:  # a journal that does not hold the message: nothing to count
        attempts = None
    flow.plan = plan = plans.plan(record, attempts)
    if plan.start is plans.Start.GIVE_UP:
        await _give_up(flow, outbox, attempts or 0)
        return False
    if plan.resumed:
        flow.report.resumed = plan.resumed
        flow.language = plan.language or flow.language
        log.info("resuming a turn at stage %s", plan.resumed)
    return True


async def release(flow: Flow) -> None:
    """Un-count this run: it ended (or was cancelled) without taking the daemon down."""
    with trio.CancelScope(shield=True):  # a drain's cancellation must not skip it
        try:
            await flow.journal.release(flow.message.message_id)
        except Exception as exc:  # the store may be closing; the count errs towards safety
            log.info("could not release the turn's attempt: %s", exc)


async def _give_up(flow: Flow, outbox: Outbox, attempts: int) -> None:
    # Runs that ended normally are released, so these are crashes: the turn itself takes
    # the daemon down. Give up, but still tell the user once.
    log.error(
        "turn of message %s given up after %d attempts",
        message_tag(flow.message.message_id),
        attempts - 1,
    )
    flow.report.outcome = Outcome.GAVE_UP
    if flow.plan.text_sent:
        flow.delivery.move(Event.ALREADY_SENT)  # the answer went out before: nothing more
    else:
        await outbox.say(flow, flow.texts.agent_down)
    await flow.note(Stage.FAILED, outcome=Outcome.GAVE_UP)
