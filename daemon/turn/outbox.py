"""The answer's way out: the agent's text, or the one message in its place.

Both take the turn's send lock (one message at a time, in the order they were meant) and
move its delivery state (delivery.py); both go through the guard, so an open WhatsApp
circuit fails at once and "slow down" answers are waited out. Before every send the turn's
fence is asked (state/base.py ``Fence``): one host always may; a host that lost its user to
another sends nothing.

After a crash a resumed turn sends the answer again unless TEXT_SENT was written: at least
once. Recording "sending" first would make it at most once instead, and trade a ~1 ms
window for a duplicate (between WhatsApp's 200 and this process writing TEXT_SENT) for a
far longer window for a lost answer (the whole request).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from daemon.channels.base import Channel
from daemon.config import TimeoutsConfig
from daemon.errors import UpstreamError
from daemon.state.base import Stage
from daemon.turn.calls import Calls
from daemon.turn.costs import Costs
from daemon.turn.delivery import Event, State, Verdict, outcome_after, verdict
from daemon.turn.flow import Flow
from daemon.turn.report import Outcome

log = logging.getLogger("daemon.turn")


class Outbox:
    def __init__(
        self,
        channel: Channel,
        calls: Calls,
        costs: Costs,
        timeouts: TimeoutsConfig,
        clock: Callable[[], float],
    ) -> None:
        self._channel = channel
        self._calls = calls
        self._costs = costs
        self._timeouts = timeouts
        self._clock = clock

    async def answer(self, flow: Flow, text: str) -> bool:
        """Send the agent's answer; whether it went out. When it did not, the report says
        why (``send_unknown``, ``deferred``, ``unreachable``, ``send_failed``) and the
        delivery state whether an apology may follow."""
        report = flow.report
        flow.delivery.move(Event.SEND)
        async with flow.send_lock:
            try:
                ids = await self._send(flow, text)
            except UpstreamError as exc:
                report.error = str(exc)
                failed = verdict(exc)
                flow.delivery.move(failed)
                if failed is Verdict.UNKNOWN:  # the text may be on its way (or delivered)
                    report.outcome = Outcome.SEND_UNKNOWN
                else:  # "later": the answer is in the journal already, for the retry
                    report.outcome = outcome_after(failed, Outcome.SEND_FAILED)
                return False
        self._costs.sent(report, "text", len(ids))
        flow.delivery.move(Event.DELIVERED)
        report.stages["to_text"] = self._clock() - flow.started  # what the user waited
        await flow.note(Stage.TEXT_SENT, text_ids=ids)
        return True

    async def say(self, flow: Flow, text: str) -> None:
        """Send a canned message in place of the answer, once, with its own time budget —
        unless something went out (or may have) already, or nothing may be said.

        Shielded: it is what the user gets when the turn ran out of time."""
        delivery = flow.delivery
        if not delivery.may_speak:
            return
        delivery.move(Event.SEND)
        # Room for the guard's retries of a "slow down" (1 s, then 4 s for the pair rate).
        with trio.CancelScope(shield=True), trio.move_on_after(2 * self._timeouts.whatsapp):
            await self._say(flow, text)
        if delivery.state is State.IN_FLIGHT:  # out of time mid-send: it may have gone out
            delivery.move(Verdict.UNKNOWN)

    async def _say(self, flow: Flow, text: str) -> None:
        report = flow.report
        async with flow.send_lock:
            try:
                ids = await self._send(flow, text)
            except UpstreamError as exc:
                failed = verdict(exc)
                flow.delivery.move(failed)
                if failed is Verdict.UNKNOWN:
                    return
                log.error("turn %s could not tell the user: %s", report.turn_id, exc)
                outcome = report.outcome
                report.outcome = outcome_after(failed, outcome)
                if failed is Verdict.LATER:  # resumed later, with this very text
                    await flow.note(Stage.ANSWERED, answer=text, outcome=outcome)
                return
        self._costs.sent(report, "canned", len(ids))
        flow.delivery.move(Event.DELIVERED)
        await flow.note(Stage.TEXT_SENT, text_ids=ids)

    async def _send(self, flow: Flow, text: str) -> list[str]:
        """The answer (or the message in its place) to the user: one guarded send."""
        await flow.may_send()
        return await self._calls.timed(
            flow.report,
            "send",
            "whatsapp",
            self._timeouts.whatsapp,
            lambda: self._channel.send_text(flow.message.user, text),
            idempotent=False,
        )
