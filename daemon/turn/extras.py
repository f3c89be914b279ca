"""Messages besides the answer ([ux]): read receipt and typing, holding message, echo.

All best effort, each with its own time budget, none through the guard (a failure costs
nothing but the message itself) and none moving the delivery state (they are not the
answer). The holding message goes after ``holding_after`` seconds without an answer, and
never when the answer comes first: both take the turn's send lock, and the holding message
only goes if the lock is free and the answer has not started. The echo repeats what
speech-to-text understood of a voice note before the answer comes.
"""

from __future__ import annotations

import logging

import trio

from daemon.channels.base import Channel
from daemon.config import TimeoutsConfig, UxConfig
from daemon.errors import UpstreamError
from daemon.model import Inbound
from daemon.turn.costs import Costs
from daemon.turn.flow import Flow

log = logging.getLogger("daemon.turn")


class Extras:
    def __init__(
        self, channel: Channel, costs: Costs, timeouts: TimeoutsConfig, ux: UxConfig
    ) -> None:
        self._channel = channel
        self._costs = costs
        self._timeouts = timeouts
        self._ux = ux

    async def acknowledge(self, message: Inbound) -> None:
        """Read receipt + typing indicator. Best effort: the answer matters, not the ticks."""
        try:
            with trio.move_on_after(self._timeouts.whatsapp):
                await self._channel.acknowledge(message)
        except UpstreamError as exc:
            log.info("acknowledge failed: %s", exc)

    async def hold(self, flow: Flow) -> None:
        """After ``holding_after`` seconds without an answer, one short holding message."""
        with trio.move_on_after(self._ux.holding_after):
            await flow.settled.wait()
            return
        # No checkpoint between these checks and taking the lock: the answer can't slip in
        # between, and if the answer (or the echo) is being sent, the lock is taken.
        if flow.delivery.started or flow.extras_sent:
            return
        try:
            flow.send_lock.acquire_nowait()
        except trio.WouldBlock:
            return
        try:
            await self._send(flow, "holding", flow.texts.holding)
        finally:
            flow.send_lock.release()

    async def echo(self, flow: Flow, transcript: str) -> None:
        """What speech-to-text understood, before the answer ([ux] echo_transcript)."""
        if not self._ux.echo_transcript:
            return
        echo = flow.texts.transcript_echo.replace("{transcript}", transcript.strip())
        async with flow.send_lock:
            await self._send(flow, "echo", echo)

    async def _send(self, flow: Flow, name: str, text: str) -> None:
        await flow.may_send()
        try:
            with trio.move_on_after(self._timeouts.whatsapp):
                ids = await self._channel.send_text(flow.message.user, text)
                flow.extras_sent = True
                flow.report.extras.append(name)
                self._costs.sent(flow.report, "extra", len(ids))
        except UpstreamError as exc:
            log.info("turn %s: %s message not sent: %s", flow.report.turn_id, name, exc)
