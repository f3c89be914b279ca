"""``wa-agentd demo``: the daemon against its built-in simulators, with a short conversation.

Starts the simulated Graph API, Agentforce and ElevenLabs on loopback, starts the real daemon
pointed at them, plays a scripted conversation (two text turns, one voice turn, one
unsupported message) through real signed webhooks, and prints what the WhatsApp user would
see, with timings. Then it keeps serving until Ctrl-C, so you can post your own webhooks.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import trio

from daemon.sim import webhooks
from daemon.sim.audio import listen
from daemon.sim.base import Faults
from daemon.sim.graph import SentMessage
from daemon.sim.stack import PHONE_NUMBER_ID, SECRETS, Stack, open_stack

USER = "16505551234"

# Simulated upstream latencies, so the timeline looks like the real thing (a little faster).
AGENT_LATENCY = (0.6, 1.2)
SPEECH_LATENCY = (0.2, 0.5)
GRAPH_LATENCY = (0.05, 0.15)


@dataclass
class Step:
    kind: str  # text | voice | image
    content: str
    expect_voice: bool = False


SCRIPT = (
    Step("text", "Hi there!"),
    Step("text", "What are your opening hours?"),
    Step("voice", "Do you ship to Canada?", expect_voice=True),
    Step("image", "a photo of a receipt"),
)


def _show(sent: SentMessage) -> str:
    if sent.type == "text":
        body = textwrap.indent(sent.text or "", "      ").lstrip()
        return f"💬 {body}"
    spoken, _lang, seconds = listen(sent.audio or b"")
    return f"🔊 voice note, {seconds:.1f} s, {len(sent.audio or b'')} bytes: “{spoken}”"


async def _play(stack: Stack, step: Step, already: int) -> int:
    """Send one user message; print the replies as they arrive. Returns the sends so far."""
    if step.kind == "text":
        print(f"\n👤 user: {step.content}")
        message = webhooks.text_message(USER, step.content)
    elif step.kind == "voice":
        print(f"\n👤 user: 🎤 voice note saying “{step.content}”")
        message = stack.voice_note(USER, step.content)
    else:
        print(f"\n👤 user: 🖼  {step.content}")
        media_id = stack.graph.add_user_media(b"\xff\xd8\xff fake jpeg", "image/jpeg")
        message = webhooks.image_message(USER, media_id, sha256="c2ltdWxhdGVk")
    start = trio.current_time()
    response = await stack.deliver(message)
    print(
        f"   {_ms(trio.current_time() - start)}  webhook acknowledged: HTTP {response.status_code}"
    )
    expected = already + (2 if step.expect_voice else 1)
    for n in range(already, expected):
        sent = (await stack.graph.wait_sent(n + 1, to="+" + USER))[n]
        label = "voice reply" if sent.type == "audio" else "text reply"
        print(f"   {_ms(sent.at - start)}  {label}: {_show(sent)}")
    return expected


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.0f} ms"


async def main(bind: str = "127.0.0.1:8080", once: bool = False) -> None:
    async with open_stack(
        bind=bind,
        handle_signals=True,
        graph_faults=Faults(latency=GRAPH_LATENCY),
        agentforce_faults=Faults(latency=AGENT_LATENCY),
        elevenlabs_faults=Faults(latency=SPEECH_LATENCY),
    ) as stack:
        d = stack.daemon
        print("wa-agentd demo: the real daemon, with simulated WhatsApp, Agentforce and ElevenLabs")
        print(f"  daemon webhook   {d.webhook_url}")
        print(f"  health           {d.admin_url}/healthz  {d.admin_url}/readyz")
        print(f"  simulated Graph  {stack.graph.base_url}")
        print(f"  simulated agent  {stack.agentforce.base_url}")
        print(f"  simulated voice  {stack.elevenlabs.base_url}")
        print(
            "  simulated latency: agent {:.1f}-{:.1f} s, speech {:.1f}-{:.1f} s, "
            "graph {:.2f}-{:.2f} s".format(*AGENT_LATENCY, *SPEECH_LATENCY, *GRAPH_LATENCY)
        )
        sends = 0
        with trio.fail_after(60):
            for step in SCRIPT:
                sends = await _play(stack, step, sends)
        print("\nturn summaries (the daemon's own log lines):")
        for report in await stack.wait_reports(len(SCRIPT)):
            print("  " + report.summary())
        if once:
            return
        print(
            f"\nStill serving. Post your own signed webhooks to {d.webhook_url}\n"
            f"(app secret {SECRETS['WHATSAPP_APP_SECRET']!r}, phone_number_id "
            f"{PHONE_NUMBER_ID}). Ctrl-C stops."
        )
        await d.stop.wait()
