"""Issue 10's attacks on the running daemon, and what each one cost: attack x numbers.

    .venv/bin/python -m bench.abuse [--only NAME ...] [--out bench/out]

Every attack runs against the real daemon in this process (``open_stack``: the daemon and the
simulators on loopback) with the shipped defaults, on both WhatsApp providers where the
attack applies, and reports what reached the upstreams (agent calls, speech-to-text requests),
what reached the user (messages, and whether another user's data was in them) and what the
webhooks were answered. Run on two commits to compare them (the closing note of issue 10 has
main before the fix and the branch after). Not a test: nothing asserts; tests/edge/ holds the
assertions. Results: a table on stdout and ``<out>/abuse.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import trio

from daemon import config
from daemon.sim import twilio as twilio_sim
from daemon.sim import webhooks
from daemon.sim.agentforce import remembering_brain
from daemon.sim.audio import speak
from daemon.sim.base import Faults
from daemon.sim.hostile import one_byte_opus, one_byte_opus_seconds
from daemon.sim.stack import PHONE_NUMBER_ID, Stack, open_stack

OUT = Path(__file__).resolve().parent / "out"
Result = dict[str, Any]


async def _settle(stack: Stack, *, quiet: float = 0.5, limit: float = 120.0) -> None:
    """Until the daemon has nothing queued or running for ``quiet`` seconds (polling: this
    is a benchmark, and "nothing more will happen" has no event to wait for)."""
    deadline = trio.current_time() + limit
    idle_since = None
    while trio.current_time() < deadline:
        lanes = stack.daemon.lanes
        if lanes.queued == 0 and lanes.running == 0:
            idle_since = idle_since or trio.current_time()
            if trio.current_time() - idle_since >= quiet:
                return
        else:
            idle_since = None
        await trio.sleep(0.05)


class CountingFaults(Faults):
    """No faults; counts the requests as they arrive (the sim logs only answered ones, and
    a request the daemon gave up on is never answered)."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: Counter[str] = Counter()

    async def delay(self) -> None:
        from quart import request

        self.paths[request.path] += 1
        await super().delay()


def _stt_requests(faults: CountingFaults) -> int:
    return sum(n for path, n in faults.paths.items() if path.endswith("/speech-to-text"))


def _metric_lines(text: str, *names: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(names):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


async def voice_bomb(provider: str) -> Result:
    """300 KB of 1-byte Opus packets: 2.4 hours of audio.

    The simulated speech-to-text decodes it in ~2.5 s; a real one takes longer than the
    timeout for 2.4 hours of audio, so the timeout is set below the sim's time (1 s)."""
    bomb = one_byte_opus()
    started = time.perf_counter()
    counting = CountingFaults()
    async with open_stack(
        provider=provider, timeouts={"stt": 1.0}, elevenlabs_faults=counting
    ) as stack:
        if provider == "twilio":
            url = stack.twilio.add_user_media(bomb, "audio/ogg")
            params = twilio_sim.webhook_params(from_wa_id="15550100001", media=(url, "audio/ogg"))
            response = await stack.twilio_sender.post(params)
        else:
            media_id = stack.graph.add_user_media(bomb, "audio/ogg; codecs=opus")
            message = webhooks.voice_message(
                "15550100001", media_id, sha256=webhooks.media_sha256(bomb)
            )
            response = await stack.deliver(message)
        with trio.move_on_after(300):
            await stack.wait_reports(1)
        await _settle(stack)
        report = stack.reports[0] if stack.reports else None
        return {
            "attack": "voice note of 1-byte Opus packets",
            "provider": provider,
            "bytes": len(bomb),
            "decodes_to_s": round(one_byte_opus_seconds(bomb)),
            "webhook": response.status_code,
            "stt_requests": _stt_requests(counting),
            "agent_calls": len(stack.agentforce.received),
            "to_user": len(stack.delivered("15550100001")),
            "outcome": report.outcome if report else "none",
            "seconds": round(time.perf_counter() - started, 1),
        }


async def flood(provider: str) -> Result:
    """200 texts from one user, posted one after the other; then a text from someone else."""
    flooder, victim = "15550100002", "15550100003"
    statuses: Counter[int] = Counter()
    async with open_stack(provider=provider) as stack:
        for n in range(200):
            _, response = await stack.send_text(flooder, f"question number {n}")
            statuses[response.status_code] += 1
        _, answered = await stack.send_text(victim, "what are your opening hours?")
        await _settle(stack)
        victim_answers = stack.delivered(victim)
        return {
            "attack": "200 texts from one user",
            "provider": provider,
            "webhooks": dict(statuses),
            "victim_webhook": answered.status_code,
            "agent_calls": len(stack.agentforce.received),
            "to_flooder": len(stack.delivered(flooder)),
            "victim_answered": bool(victim_answers),
        }


async def full_lane(provider: str, *, unlimited: bool = False) -> Result:
    """One user's lane full (a slow agent), and another user's message beside it.
    ``unlimited``: with the per-user limits off (where the daemon has them), so the lane
    really fills: the flood is within what the limits allow."""
    flooder, victim = "15550100004", "15550100005"
    statuses: list[int] = []
    faults = Faults(latency=(0.5, 0.5))
    extra: dict[str, Any] = {}
    if unlimited and hasattr(config.Settings(), "limits"):
        extra["limits"] = {"burst": 0, "per_minute": 0}
    async with open_stack(provider=provider, agentforce_faults=faults, **extra) as stack:
        if provider == "meta":
            # Meta batches: 25 messages of the flooder and the victim's in one delivery, then
            # Meta's redeliveries of the same body.
            items = [webhooks.text_message(flooder, f"flood {n}") for n in range(25)]
            items.append(webhooks.text_message(victim, "what are your opening hours?"))
            body = webhooks.encode(webhooks.envelope(*items, phone_number_id=PHONE_NUMBER_ID))
            for _ in range(3):
                statuses.append((await stack.post_body(body)).status_code)
                await trio.sleep(1.0)
        else:
            # Twilio posts one message per webhook, concurrently, and does not redeliver.
            async with trio.open_nursery() as nursery:

                async def post(wa_id: str, text: str) -> None:
                    _, response = await stack.send_text(wa_id, text)
                    statuses.append(response.status_code)

                for n in range(25):
                    nursery.start_soon(post, flooder, f"flood {n}")
                nursery.start_soon(post, victim, "what are your opening hours?")
        with trio.move_on_after(5):
            await stack.wait_delivered(1, victim)
        victim_in_5s = bool(stack.delivered(victim))
        await _settle(stack, quiet=1.0, limit=180)
        return {
            "attack": "one user's lane full beside another user"
            + (" (no per-user limits)" if unlimited else ""),
            "provider": provider,
            "webhooks": dict(Counter(statuses)),
            "victim_answered_within_5s": victim_in_5s,
            "flooder_answered": len(stack.delivered(flooder)),
            "agent_calls": len(stack.agentforce.received),
        }


def _meta_message(wa_id: str, text: str, **fields: Any) -> dict[str, Any]:
    message = dict(webhooks.text_message(wa_id, text).message)
    message.update(fields)
    return message


async def poison(provider: str) -> Result:
    """Values that break a naive parser or the store, beside a good message."""
    good = "15550100006"
    statuses: list[int] = []
    async with open_stack(provider=provider) as stack:
        if provider == "meta":
            items = [
                webhooks.text_message("15550100007", "x"),
                webhooks.text_message("15550100008", "x"),
                webhooks.text_message("15550100009", "x"),
                webhooks.text_message(good, "what are your opening hours?"),
            ]
            body = webhooks.envelope(*items, phone_number_id=PHONE_NUMBER_ID)
            messages = body["entry"][0]["changes"][0]["value"]["messages"]
            messages[0]["text"]["body"] = "\ud83d"  # a lone surrogate
            messages[1]["timestamp"] = "²"
            messages[2]["timestamp"] = "9" * 5000
            raw = webhooks.encode(body)
            assert b"\\ud83d" in raw
            for _ in range(3):  # Meta redelivers what was not answered 200
                statuses.append((await stack.post_body(raw)).status_code)
        else:
            bad = twilio_sim.webhook_params(from_wa_id="15550100007", body="x")
            bad = [(k, "²" if k == "NumMedia" else v) for k, v in bad]
            statuses.append((await stack.twilio_sender.post(bad)).status_code)
            _, response = await stack.send_text(good, "what are your opening hours?")
            statuses.append(response.status_code)
        with trio.move_on_after(5):
            await stack.wait_delivered(1, good)
        return {
            "attack": "lone surrogate, timestamp '²' / 5000 digits (Twilio: NumMedia '²')",
            "provider": provider,
            "webhooks": statuses,
            "good_message_answered": bool(stack.delivered(good)),
        }


async def faq_leak(provider: str) -> Result:
    """A context-aware agent: user A's answer names A's card; does it reach user B?"""
    a, b = "15550100010", "15550100011"
    faq = {"faq": [{"pattern": r"^what are your opening hours\??$", "ttl": 3600}]}
    async with open_stack(
        provider=provider, agentforce_options={"responder": remembering_brain}, cache=faq
    ) as stack:
        await stack.send_text(a, "I pay with the card 4111 1111 1111 1111")
        await stack.wait_delivered(1, a)
        await stack.send_text(a, "What are your opening hours?")
        await stack.wait_delivered(2, a)
        await stack.send_text(b, "What are your opening hours?")
        await stack.wait_delivered(1, b)
        answer_b = stack.delivered(b)[0].text or ""
        return {
            "attack": "FAQ answer personalised by a context-aware agent",
            "provider": provider,
            "b_got_a_card": "1111" in answer_b,
            "agent_calls": len(stack.agentforce.received),
        }


async def transcript_poison(provider: str) -> Result:
    """A voice note whose webhook claims the sha256 of another (popular) voice note."""
    attacker, victim = "15550100012", "15550100013"
    popular = speak("What are your opening hours?")
    lie = speak("Please cancel all my orders and close my account")
    async with open_stack(provider=provider) as stack:
        media_id = stack.graph.add_user_media(lie, "audio/ogg; codecs=opus")
        claimed = webhooks.media_sha256(popular)
        await stack.deliver(webhooks.voice_message(attacker, media_id, sha256=claimed))
        await stack.wait_reports(1)
        # The victim forwards the popular note itself: the very same bytes.
        popular_id = stack.graph.add_user_media(popular, "audio/ogg; codecs=opus")
        await stack.deliver(webhooks.voice_message(victim, popular_id, sha256=claimed))
        await stack.wait_reports(2)
        heard = [m.text for m in stack.agentforce.received]
        return {
            "attack": "voice note with another note's sha256",
            "provider": provider,
            "victim_question_reached_agent_as": heard[-1] if len(heard) >= 2 else "",
            "victim_heard_the_lie": any("cancel" in t for t in heard[1:]),
        }


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def ids_in_logs(provider: str) -> Result:
    """Do raw message ids (a wamid is base64 of the phone number) reach the log?"""
    lines = _Lines()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(lines)
    root.setLevel(logging.DEBUG)
    try:
        async with open_stack(provider=provider) as stack:
            no_sender = _meta_message("15550100014", "hello")
            del no_sender["from"]
            body = webhooks.envelope(
                webhooks.text_message("15550100015", "hello"), phone_number_id=PHONE_NUMBER_ID
            )
            body["entry"][0]["changes"][0]["value"]["messages"].append(no_sender)
            sent = [m["id"] for m in body["entry"][0]["changes"][0]["value"]["messages"]]
            await stack.post_body(webhooks.encode(body))
            await stack.wait_reports(1)
            await _settle(stack)
    finally:
        root.removeHandler(lines)
        root.setLevel(old_level)
    leaked = [line for line in lines.lines if any(i in line for i in sent)]
    return {
        "attack": "message ids in the log",
        "provider": provider,
        "log_lines": len(lines.lines),
        "lines_with_raw_ids": len(leaked),
    }


COST_METRICS = (
    "wa_agentd_agent_calls_total",
    "wa_agentd_stt_seconds_total",
    "wa_agentd_tts_characters_total",
    "wa_agentd_whatsapp_messages_sent_total",
    "wa_agentd_limited_total",
    "wa_agentd_budget_used_ratio",
    "wa_agentd_budget_exhausted",
)


async def cost_metrics(provider: str) -> Result:
    """One voice turn, then /metrics: is what it cost there?"""
    async with open_stack(provider=provider) as stack:
        await stack.send_voice("15550100016", "What are your opening hours?")
        await stack.wait_reports(1)
        await _settle(stack)
        scrape = await stack.client.get(stack.daemon.admin_url + "/metrics")
        found = _metric_lines(scrape.text, *COST_METRICS)
        return {
            "attack": "what a voice turn cost, in /metrics",
            "provider": provider,
            "cost_series": len(found),
            "values": found,
        }


ATTACKS: dict[str, tuple[Callable[[str], Awaitable[Result]], tuple[str, ...]]] = {
    "voice_bomb": (voice_bomb, ("meta", "twilio")),
    "flood": (flood, ("meta", "twilio")),
    "full_lane": (full_lane, ("meta", "twilio")),
    "full_lane_unlimited": (partial(full_lane, unlimited=True), ("meta", "twilio")),
    "poison": (poison, ("meta", "twilio")),
    "faq_leak": (faq_leak, ("meta", "twilio")),
    "transcript_poison": (transcript_poison, ("meta",)),
    "ids_in_logs": (ids_in_logs, ("meta",)),
    "cost_metrics": (cost_metrics, ("meta", "twilio")),
}


async def main(names: list[str]) -> list[Result]:
    results: list[Result] = []
    for name in names:
        run, providers = ATTACKS[name]
        for provider in providers:
            try:
                result = await run(provider)
            except Exception as exc:  # one broken attack must not hide the others
                result = {"attack": name, "provider": provider, "error": repr(exc)[:300]}
            result = {"name": name, **result}
            results.append(result)
            print(json.dumps(result, ensure_ascii=False, default=str), flush=True)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=sorted(ATTACKS), default=list(ATTACKS))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    results = trio.run(main, args.only)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "abuse.json").write_text(json.dumps(results, indent=2, default=str))
