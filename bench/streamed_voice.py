"""How long the voice note takes once the agent's answer is complete: sentence by sentence
while it streams (issue 12) against one text-to-speech call after it, in the same run.

    .venv/bin/python -m bench.streamed_voice [--runs 20] [--stream-seconds 3]

No daemon and no WhatsApp: the Agentforce simulator streams a 4-6 sentence answer over
``--stream-seconds``, the real client reads it, and either the voice composer speaks each
sentence as it closes (``streamed``) or, once the answer is complete, one request speaks it
all (``sync``, what the turn does today). The ElevenLabs simulator takes 0.3 s + 20 ms a
word per request (issue 12's model). Reported: from EndOfTurn (when the text can be sent)
to the voice note encoded and ready to upload, p50/p95/max per mode. The turn's own
text-send to voice-send latency adds the upload and the send on top of this; that bench
comes with the turn integration. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

import httpx
import trio

from daemon.agentforce.client import AgentforceClient
from daemon.agentforce.sessions import SessionStore
from daemon.sim.agentforce import AgentforceSim, SimSession, StreamPacing, inform
from daemon.sim.elevenlabs import ElevenLabsSim
from daemon.speech.client import ElevenLabs
from daemon.speech.composer import compose_voice
from daemon.speech.sentence_voice import SentenceVoice
from daemon.text import for_speech

OUT = Path(__file__).resolve().parent / "out"
SENTENCES = [
    "Your parcel left our warehouse in Leeds this morning.",
    "It is with the courier now and should reach you on Friday.",
    "You can follow it on the tracking page at any time.",
    "If nobody is at home, the courier leaves a card with a new date.",
    "You can also collect it from the nearest post office after two days.",
    "Is there anything else I can help you with today?",
]
CLIENT_ID, SECRET, AGENT, ENDPOINT = "bench-id", "bench-secret", "0XxBENCH000000001A", "https://b"
KEY, VOICE = "sk-bench", "bench-voice"


def answer(rng: random.Random) -> str:
    return " ".join(SENTENCES[: rng.randint(4, 6)])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


async def run(runs: int, stream_seconds: float, seed: int) -> dict[str, dict[str, float]]:
    rng = random.Random(seed)
    answers: list[str] = []

    def responder(session: SimSession, text: str) -> list[dict[str, object]]:
        return [inform(answers[-1])]

    agent_sim = AgentforceSim(
        client_id=CLIENT_ID,
        client_secret=SECRET,
        agent_id=AGENT,
        instance_endpoint=ENDPOINT,
        responder=responder,
    )
    speech_sim = ElevenLabsSim(api_key=KEY, voice_ids=(VOICE,))
    speech_sim.tts_time = lambda text: 0.3 + 0.02 * len(text.split())
    results: dict[str, list[float]] = {"streamed": [], "sync": []}
    async with trio.open_nursery() as nursery:
        await agent_sim.start(nursery)
        await speech_sim.start(nursery)
        async with httpx.AsyncClient(timeout=60) as http:
            agent = AgentforceClient(
                http,
                token_url=f"{agent_sim.base_url}/services/oauth2/token",
                api_url=f"{agent_sim.base_url}/einstein/ai-agent/v1",
                instance_endpoint=ENDPOINT,
                agent_id=AGENT,
                client_id=CLIENT_ID,
                client_secret=SECRET,
                sessions=SessionStore(1000, 1200.0),
            )
            speech = ElevenLabs(
                http,
                api_url=speech_sim.base_url,
                api_key=KEY,
                voice_id=VOICE,
                tts_model="eleven_flash_v2_5",
                stt_model="scribe_v1",
                output_format="pcm_24000",  # same bytes per second as the parts: fair
            )
            voice = SentenceVoice(speech, language="en")
            for n in range(runs):
                answers.append(answer(rng))
                chunks = max(1, len(answers[-1].split()) // 3)
                agent_sim.stream_pacing = StreamPacing(
                    chunk_interval=stream_seconds / chunks, words=3
                )
                for mode in ("streamed", "sync") if n % 2 else ("sync", "streamed"):
                    results[mode].append(await one(agent, voice, speech, nursery, mode, n))
        nursery.cancel_scope.cancel()
    return {
        mode: {
            "p50": statistics.median(values),
            "p95": percentile(values, 95),
            "max": max(values),
            "runs": len(values),
        }
        for mode, values in results.items()
    }


async def one(
    agent: AgentforceClient,
    voice: SentenceVoice,
    speech: ElevenLabs,
    nursery: trio.Nursery,
    mode: str,
    n: int,
) -> float:
    stream = await agent.open_stream(f"user-{n}-{mode}", "Where is my parcel?")
    async with stream, compose_voice(nursery, voice, concurrency=3, max_chars=1500) as note:
        async for step in stream:
            if mode == "streamed":
                note.apply(step.speech)
        text_ready = trio.current_time()  # EndOfTurn: the text can go out now
        if mode == "streamed":
            await note.finish(stream.reply.text)
        else:
            await speech.synthesize(for_speech(stream.reply.text), language="en")
        return trio.current_time() - text_ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--stream-seconds", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    report = trio.run(run, args.runs, args.stream_seconds, args.seed)
    OUT.mkdir(exist_ok=True)
    (OUT / "streamed_voice.json").write_text(json.dumps(report, indent=2))
    print(f"EndOfTurn -> voice note ready, {args.runs} answers of 4-6 sentences,")
    print(f"streamed over {args.stream_seconds:g} s, TTS 0.3 s + 20 ms a word:")
    for mode, row in report.items():
        print(
            f"  {mode:9} p50 {row['p50'] * 1000:6.0f} ms  p95 {row['p95'] * 1000:6.0f} ms  "
            f"max {row['max'] * 1000:6.0f} ms"
        )


if __name__ == "__main__":
    main()
