"""The whole world on loopback: the three simulators and the real daemon pointed at them.

Used by ``wa-agentd demo``, the integration tests and the benchmarks, so all three drive the
daemon the same way: signed webhooks in over real HTTP, and assertions on what reached the
simulated upstreams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from daemon import config, runtime
from daemon.sim import webhooks
from daemon.sim.agentforce import AgentforceSim
from daemon.sim.audio import speak
from daemon.sim.base import Faults
from daemon.sim.elevenlabs import ElevenLabsSim
from daemon.sim.graph import GraphSim
from daemon.turn import TurnReport

PHONE_NUMBER_ID = "106540352242922"
AGENT_ID = "0XxSIM0000000001AA"
VOICE_ID = "sim-voice"

# Throw-away credentials shared by the simulators and the daemon they test.
SECRETS = {
    "WHATSAPP_ACCESS_TOKEN": "sim-graph-token",
    "WHATSAPP_APP_SECRET": "sim-app-secret",
    "WHATSAPP_VERIFY_TOKEN": "sim-verify-token",
    "AGENTFORCE_CLIENT_ID": "sim-client-id",
    "AGENTFORCE_CLIENT_SECRET": "sim-client-secret",
    "ELEVENLABS_API_KEY": "sim-elevenlabs-key",
    "WA_AGENTD_ADMIN_TOKEN": "sim-admin-token",
}


def sim_settings(
    *,
    graph_url: str,
    agentforce_url: str,
    elevenlabs_url: str,
    bind: str = "127.0.0.1:0",
    **overrides: Mapping[str, Any],
) -> config.Settings:
    """Settings that point the daemon at the simulators; ``overrides`` per section."""
    sections: dict[str, dict[str, Any]] = {
        "server": {"bind": bind},
        "whatsapp": {
            "graph_url": f"{graph_url}/v23.0",
            "phone_number_id": PHONE_NUMBER_ID,
            "media_hosts": ["127.0.0.1"],
        },
        "agentforce": {
            "token_url": f"{agentforce_url}/services/oauth2/token",
            "api_url": f"{agentforce_url}/einstein/ai-agent/v1",
            "instance_endpoint": "https://sim.my.salesforce.com",
            "agent_id": AGENT_ID,
        },
        "elevenlabs": {"api_url": elevenlabs_url, "voice_id": VOICE_ID},
    }
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    settings = config.parse(sections, env=SECRETS)
    config.validate_ready(settings)
    return settings


@dataclass
class Stack:
    settings: config.Settings
    graph: GraphSim
    agentforce: AgentforceSim
    elevenlabs: ElevenLabsSim
    daemon: runtime.Running
    client: httpx.AsyncClient  # for talking to the daemon (webhooks, admin routes)
    sender: webhooks.WebhookSender
    reports: list[TurnReport] = field(default_factory=list)
    _reported: trio.Event = field(default_factory=trio.Event)

    def add_report(self, report: TurnReport) -> None:
        self.reports.append(report)
        self._reported.set()
        self._reported = trio.Event()

    async def wait_reports(self, count: int) -> list[TurnReport]:
        """Return once ``count`` turns have finished (their summary line was emitted)."""
        while len(self.reports) < count:
            await self._reported.wait()
        return self.reports

    async def send_text(self, wa_id: str, text: str, **kw: Any) -> tuple[str, httpx.Response]:
        """A user writes ``text``; returns (message id, the daemon's webhook response)."""
        message = webhooks.text_message(wa_id, text, **kw)
        return message.id, await self.deliver(message)

    async def send_voice(
        self, wa_id: str, spoken: str, *, language: str = "en", **kw: Any
    ) -> tuple[str, httpx.Response]:
        """A user records a voice note saying ``spoken``."""
        message = self.voice_note(wa_id, spoken, language=language, **kw)
        return message.id, await self.deliver(message)

    def voice_note(
        self, wa_id: str, spoken: str, *, language: str = "en", **kw: Any
    ) -> webhooks.UserMessage:
        """A voice note saying ``spoken``, its audio already stored at the simulated Graph."""
        audio = speak(spoken, language)
        media_id = self.graph.add_user_media(audio, "audio/ogg; codecs=opus")
        return webhooks.voice_message(wa_id, media_id, sha256=webhooks.media_sha256(audio), **kw)

    async def deliver(self, *items: webhooks.Item) -> httpx.Response:
        body = webhooks.envelope(*items, phone_number_id=PHONE_NUMBER_ID)
        return await self.sender.post(body)


@asynccontextmanager
async def open_stack(
    *,
    bind: str = "127.0.0.1:0",
    handle_signals: bool = False,
    graph_faults: Faults | None = None,
    agentforce_faults: Faults | None = None,
    elevenlabs_faults: Faults | None = None,
    agentforce_options: Mapping[str, Any] | None = None,
    on_report: Callable[[TurnReport], None] | None = None,
    **overrides: Mapping[str, Any],
) -> AsyncIterator[Stack]:
    """Start the simulators and the daemon; leaving the block stops the daemon gracefully."""
    async with trio.open_nursery() as sims:
        graph = GraphSim(
            access_token=SECRETS["WHATSAPP_ACCESS_TOKEN"],
            phone_number_id=PHONE_NUMBER_ID,
            faults=graph_faults,
        )
        agentforce = AgentforceSim(
            client_id=SECRETS["AGENTFORCE_CLIENT_ID"],
            client_secret=SECRETS["AGENTFORCE_CLIENT_SECRET"],
            agent_id=AGENT_ID,
            instance_endpoint="https://sim.my.salesforce.com",
            faults=agentforce_faults,
            **dict(agentforce_options or {}),
        )
        elevenlabs = ElevenLabsSim(
            api_key=SECRETS["ELEVENLABS_API_KEY"],
            voice_ids=(VOICE_ID,),
            faults=elevenlabs_faults,
        )
        settings = sim_settings(
            graph_url=await graph.start(sims),
            agentforce_url=await agentforce.start(sims),
            elevenlabs_url=await elevenlabs.start(sims),
            bind=bind,
            **overrides,
        )
        stack: Stack | None = None

        def report(r: TurnReport) -> None:
            if stack is not None:
                stack.add_report(r)
            if on_report is not None:
                on_report(r)

        async with trio.open_nursery() as daemon_nursery:
            running: runtime.Running = await daemon_nursery.start(
                lambda task_status: runtime.run(
                    settings,
                    handle_signals=handle_signals,
                    on_report=report,
                    task_status=task_status,
                )
            )
            async with httpx.AsyncClient(timeout=10) as client:
                stack = Stack(
                    settings=settings,
                    graph=graph,
                    agentforce=agentforce,
                    elevenlabs=elevenlabs,
                    daemon=running,
                    client=client,
                    sender=webhooks.WebhookSender(
                        client, running.webhook_url, SECRETS["WHATSAPP_APP_SECRET"]
                    ),
                )
                try:
                    yield stack
                finally:
                    running.stop.set()
        sims.cancel_scope.cancel()
