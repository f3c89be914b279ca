"""Turn latency and throughput of the real daemon against the simulators, on loopback.

    .venv/bin/python -m bench.turns [--users 50] [--turns 4] [--voice 0.3] [--realistic]

The daemon runs as its own process (``wa-agentd serve``); the simulators and the load
generator run in this one, so the daemon has a core to itself as it would in production.
Each simulated user sends ``--turns`` messages one after the other (the next once the
previous answer arrived, as people do), a share ``--voice`` of them voice notes; all users
at once. Reported per kind: webhook acknowledgement, time to the text answer and to the
voice note, measured from the webhook POST, as p50/p95/max, plus turns per second. With
``--realistic`` the simulators add the upstream latencies seen in the field (agent 2-5 s,
TTS 1-3 s); without, the numbers are the daemon's own overhead plus loopback HTTP.
Results go to stdout and, as JSON, to bench/out/turns.json. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import trio

from daemon.observe import logs
from daemon.sim import webhooks
from daemon.sim.audio import speak
from daemon.sim.base import Faults
from daemon.sim.stack import PHONE_NUMBER_ID, SECRETS, Sims, open_sims, spawn_daemon

OUT = Path(__file__).resolve().parent / "out"
QUESTIONS = [
    "What are your opening hours?",
    "Do you ship to Canada?",
    "How do returns work?",
    "Hello!",
    "Where is my order 12345?",
]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def voice_message(sims: Sims, wa_id: str, question: str) -> webhooks.UserMessage:
    audio = RECORDINGS[question]  # recorded once, before the clock starts
    media_id = sims.graph.add_user_media(audio, "audio/ogg; codecs=opus")
    return webhooks.voice_message(wa_id, media_id, sha256=webhooks.media_sha256(audio))


RECORDINGS: dict[str, bytes] = {}


async def user(
    sims: Sims,
    sender: webhooks.WebhookSender,
    n: int,
    turns: int,
    voice_share: float,
    rng: random.Random,
    samples: dict[str, list[float]],
) -> None:
    wa_id = f"1555{n:07d}"
    to = "+" + wa_id
    received = 0
    for _ in range(turns):
        question = rng.choice(QUESTIONS)
        voice = rng.random() < voice_share
        message = (
            voice_message(sims, wa_id, question)
            if voice
            else webhooks.text_message(wa_id, question)
        )
        body = webhooks.envelope(message, phone_number_id=PHONE_NUMBER_ID)
        start = trio.current_time()
        response = await sender.post(body)
        samples["ack"].append(trio.current_time() - start)
        assert response.status_code == 200, response.status_code
        expected = received + (2 if voice else 1)
        mine = await sims.graph.wait_sent(expected, to=to)
        text = next(s for s in mine[received:] if s.type == "text")
        samples["voice_text" if voice else "text"].append(text.at - start)
        if voice:
            audio = next(s for s in mine[received:] if s.type == "audio")
            samples["voice_note"].append(audio.at - start)
        received = expected


async def run(users: int, turns: int, voice_share: float, realistic: bool) -> dict[str, object]:
    faults: dict[str, Faults] = {}
    if realistic:
        faults = {
            "agentforce_faults": Faults(latency=(2.0, 5.0)),
            "elevenlabs_faults": Faults(latency=(1.0, 3.0)),
            "graph_faults": Faults(latency=(0.1, 0.3)),
        }
    for question in QUESTIONS:
        RECORDINGS[question] = speak(question)
    samples: dict[str, list[float]] = defaultdict(list)
    rng = random.Random(42)
    with tempfile.TemporaryDirectory() as workdir:
        async with (
            open_sims(**faults) as sims,  # type: ignore[arg-type]
            spawn_daemon(sims, Path(workdir), lanes={"max_concurrent_turns": 256}) as daemon,
            httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as client,
            trio.open_nursery() as background,
        ):
            background.start_soon(daemon.drain_log)
            sender = webhooks.WebhookSender(
                client, daemon.webhook_url, SECRETS["WHATSAPP_APP_SECRET"]
            )
            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                for n in range(users):
                    nursery.start_soon(user, sims, sender, n, turns, voice_share, rng, samples)
            elapsed = trio.current_time() - started
            background.cancel_scope.cancel()  # the rest of the log is read after the exit
    outcomes = Counter(re.findall(r"outcome=(\w+)", daemon.log.decode()))
    result: dict[str, object] = {
        "users": users,
        "turns_per_user": turns,
        "voice_share": voice_share,
        "realistic_latency": realistic,
        "elapsed_s": round(elapsed, 3),
        "turns_per_s": round(users * turns / elapsed, 1),
        "outcomes": dict(outcomes),
    }
    for name, values in samples.items():
        result[name] = {
            "n": len(values),
            "p50_ms": round(percentile(values, 50) * 1000, 1),
            "p95_ms": round(percentile(values, 95) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1),
            "mean_ms": round(statistics.fmean(values) * 1000, 1),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--voice", type=float, default=0.3, help="share of voice notes")
    parser.add_argument("--realistic", action="store_true", help="field upstream latencies")
    args = parser.parse_args()
    logs.setup("error")
    result = trio.run(run, args.users, args.turns, args.voice, args.realistic)
    OUT.mkdir(exist_ok=True)
    (OUT / "turns.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
