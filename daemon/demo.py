"""``wa-agentd demo``: the daemon against its built-in simulators, with a short conversation.

Starts the simulated Graph API, Agentforce and ElevenLabs on loopback, starts the real daemon
pointed at them, plays a scripted conversation (two text turns, one voice turn, one
unsupported message) through real signed webhooks, and prints what the WhatsApp user would
see, with timings. Then it keeps serving until Ctrl-C, so you can post your own webhooks.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from functools import partial

import httpx
import trio

from daemon.config import AdminConfig
from daemon.sim import twilio as twilio_sim
from daemon.sim import webhooks
from daemon.sim.audio import listen, speak
from daemon.sim.base import Faults
from daemon.sim.stack import PHONE_NUMBER_ID, SECRETS, Delivered, Stack, open_stack

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


def _show(sent: Delivered) -> str:
    if sent.type == "text":
        body = textwrap.indent(sent.text or "", "      ").lstrip()
        return f"💬 {body}"
    spoken, _lang, seconds = listen(sent.audio or b"")
    return f"🔊 voice note, {seconds:.1f} s, {len(sent.audio or b'')} bytes: “{spoken}”"


async def _send(stack: Stack, step: Step) -> httpx.Response:
    """The user's message as the provider would post it, timed from the webhook POST."""
    if step.kind == "text":
        print(f"\n👤 user: {step.content}")
        send = partial(stack.send_text, USER, step.content)
    elif step.kind == "voice":
        print(f"\n👤 user: 🎤 voice note saying “{step.content}”")
        speak(step.content)  # record it before the clock starts (cached)
        send = partial(stack.send_voice, USER, step.content)
    else:
        print(f"\n👤 user: 🖼  {step.content}")
        send = partial(_send_image, stack)
    start = trio.current_time()
    _, response = await send()
    print(
        f"   {_ms(trio.current_time() - start)}  webhook acknowledged: HTTP {response.status_code}"
    )
    return response


async def _send_image(stack: Stack) -> tuple[str, httpx.Response]:
    jpeg = b"\xff\xd8\xff fake jpeg"
    if stack.provider == "twilio":
        url = stack.twilio.add_user_media(jpeg, "image/jpeg")
        params = twilio_sim.webhook_params(from_wa_id=USER, media=(url, "image/jpeg"))
        return "", await stack.twilio_sender.post(params)
    media_id = stack.graph.add_user_media(jpeg, "image/jpeg")
    return "", await stack.deliver(webhooks.image_message(USER, media_id, sha256="c2ltdWxhdGVk"))


async def _play(stack: Stack, step: Step, already: int) -> int:
    """Send one user message; print the replies as they arrive. Returns the sends so far."""
    start = trio.current_time()
    await _send(stack, step)
    expected = already + (2 if step.expect_voice else 1)
    for n in range(already, expected):
        sent = (await stack.wait_delivered(n + 1, USER))[n]
        label = "voice reply" if sent.type == "audio" else "text reply"
        print(f"   {_ms(sent.at - start)}  {label}: {_show(sent)}")
    return expected


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.0f} ms"


async def main(bind: str = "127.0.0.1:8080", once: bool = False, provider: str = "meta") -> None:
    # The admin routes on their default loopback port, as a deployment has them; on an
    # ephemeral one when the webhook's is too (tests run demos side by side).
    admin = "127.0.0.1:0" if bind.endswith(":0") else AdminConfig().bind
    async with open_stack(
        provider=provider,
        bind=bind,
        admin={"bind": admin},
        # The demo shows the plain turn; the holding message would only add noise here.
        ux={"holding_after": 0.0},
        handle_signals=True,
        graph_faults=Faults(latency=GRAPH_LATENCY),
        agentforce_faults=Faults(latency=AGENT_LATENCY),
        elevenlabs_faults=Faults(latency=SPEECH_LATENCY),
        twilio_faults=Faults(latency=GRAPH_LATENCY),
    ) as stack:
        d = stack.daemon
        upstream = "Twilio" if provider == "twilio" else "Meta's Cloud API"
        print(
            f"wa-agentd demo: the real daemon, with simulated WhatsApp ({upstream}), "
            "Agentforce and ElevenLabs"
        )
        print(f"  daemon webhook   {d.webhook_url}")
        print(f"  public health    {d.url}/healthz  {d.url}/readyz (ready / not ready)")
        print(
            f"  admin (loopback) {d.admin_url}/metrics  {d.admin_url}/readyz (with reasons)"
            f"  POST {d.admin_url}/admin/cache/flush"
        )
        if provider == "twilio":
            print(f"  simulated Twilio {stack.twilio.base_url}")
        else:
            print(f"  simulated Graph  {stack.graph.base_url}")
        print(f"  simulated agent  {stack.agentforce.base_url}")
        print(f"  simulated voice  {stack.elevenlabs.base_url}")
        print(
            "  simulated latency: agent {:.1f}-{:.1f} s, speech {:.1f}-{:.1f} s, "
            "graph {:.2f}-{:.2f} s".format(*AGENT_LATENCY, *SPEECH_LATENCY, *GRAPH_LATENCY)
        )
        sends = 0
        with trio.fail_after(60):
            # The daemon fetches its Agentforce token at start-up; a user writes later than
            # the moment it starts, so the script does too.
            await stack.agentforce.wait_requests(1)
            for step in SCRIPT:
                sends = await _play(stack, step, sends)
        print("\nturn summaries (the daemon's own log lines):")
        for report in await stack.wait_reports(len(SCRIPT)):
            print("  " + report.summary())
        if once:
            return
        secret = (
            f"auth token {SECRETS['TWILIO_AUTH_TOKEN']!r}"
            if provider == "twilio"
            else f"app secret {SECRETS['WHATSAPP_APP_SECRET']!r}, phone_number_id {PHONE_NUMBER_ID}"
        )
        print(
            f"\nStill serving. Post your own signed webhooks to {d.webhook_url}\n"
            f"({secret}). Ctrl-C stops."
        )
        await d.stop.wait()
