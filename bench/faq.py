"""What the response cache and the TTS audio cache save on an FAQ-like workload.

    .venv/bin/python -m bench.faq [--users 300] [--messages 3] [--voice 0.3] [--seed 7]
                                  [--latency realistic|none] [--arrival SECONDS]

The real daemon runs as its own process (``wa-agentd serve``) against the simulators, twice on
the same message sequence: once with the caches on (the default config plus ``[[cache.faq]]``
rules for opening hours, returns and shipping) and once with them off (no response cache, a
1-byte memory tier and no disk tier for audio, media-id and transcript caches of one entry
that expires at once). Users arrive spread over ``--arrival`` seconds; each sends
``--messages`` messages, the next once the previous answer arrived. A question is drawn from 8
FAQ intents with Zipf-like weights (1/k^1.1); each intent has spellings that normalise to one
cache key (case, punctuation, emoji, spaces) and real rewordings that do not. About 10 % of
the messages are personal ("where is my order 48213?"). A share ``--voice`` are voice notes;
every voice note is distinct audio (no forwarding: the transcript cache cannot hit).

Counted at the simulators (they record every request): agent messages and sessions,
speech-to-text and text-to-speech requests, Graph uploads and sends. From the daemon: its
/metrics (``wa_agentd_cache_lookups_total``, ``wa_agentd_cache_entries``) and its per-turn
summary lines, which say which turns were answered from a cache. Time to the text answer and
to the voice note runs from the webhook POST to the send recorded at the simulated Graph.
Results go to stdout and to bench/out/faq.json, the daemon's logs to
bench/out/faq-daemon-{on,off}.log. Not a test: nothing asserts. No config turns off the audio
cache's single flight, so with the caches off concurrent identical syntheses still share one
TTS request; the report gives the voice-note count as the fully uncached reference.

With ``--latency realistic`` the simulators answer like the field: agent turns 2-5 s (session
start/end and the token 0.2-0.5 s), text-to-speech 1-3 s, speech-to-text 0.3-1 s, Graph
0.05-0.2 s per request. ElevenLabs has one fault object for both speech routes, so the
latency is chosen per route from the request path (``RouteLatency``); likewise Agentforce's.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import statistics
import tempfile
import tomllib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio
from quart import has_request_context, request

from bench.turns import percentile
from daemon import config
from daemon.cache.normalize import normalize_question
from daemon.cache.rules import CacheRule, Rules
from daemon.observe import logs
from daemon.observe.logs import hashed, load_salt, salt_key
from daemon.sim import webhooks
from daemon.sim.agentforce import JsonDict, SimSession, default_brain, inform
from daemon.sim.audio import speak
from daemon.sim.base import Changes, Faults
from daemon.sim.graph import GraphSim, SentMessage
from daemon.sim.stack import PHONE_NUMBER_ID, SECRETS, Sims, open_sims, spawn_daemon, to_toml

OUT = Path(__file__).resolve().parent / "out"
OGG_OPUS = "audio/ogg; codecs=opus"
ZIPF_EXPONENT = 1.1
PERSONAL_SHARE = 0.1
WAIT_LIMIT = 180.0  # seconds a user waits for an answer (the daemon's turn deadline is 120)
HOLDING = config.ENGLISH.holding  # "One moment ...": not the answer

# ---------------------------------------------------------------------------- the workload


@dataclass(frozen=True)
class Intent:
    """One FAQ. ``same``: spellings that normalise to one question (the first is the usual
    one); ``reworded``: other words for it, so other cache keys. ``answer``: None when the
    simulator's ``default_brain`` knows the topic."""

    name: str
    same: tuple[str, ...]
    reworded: tuple[str, ...]
    answer: str | None = None


# Most frequent first: the Zipf rank is the position.
INTENTS = (
    Intent(
        "opening_hours",
        (
            "What are your opening hours?",
            "what are your opening hours",
            "WHAT ARE YOUR OPENING HOURS?? 🙂",
            "  What are your   opening hours?!",
        ),
        ("When are you open?", "What time do you close on Saturdays?"),
    ),
    Intent(
        "shipping",
        (
            "Do you ship to Canada?",
            "do you ship to canada",
            "DO YOU SHIP TO CANADA?!",
            "Do you ship to Canada ? 🇨🇦",
        ),
        ("How long does delivery take?",),
    ),
    Intent(
        "returns",
        ("How do returns work?", "how do returns work", "How do returns work??? 🤔"),
        ("What is your refund policy?", "Is it possible to return an item?"),
    ),
    Intent(
        "greeting",
        ("Hello!", "hello", "HELLO!!! 👋", "Hello 🙂"),
        ("Hi there", "Good morning"),
    ),
    Intent(
        "payment",
        (
            "What payment methods do you accept?",
            "what payment methods do you accept",
            "What payment methods do you accept?? 💳",
        ),
        ("Do you take PayPal?",),
        "We accept **Visa**, **Mastercard**, **American Express**, PayPal and Apple Pay.",
    ),
    Intent(
        "gift_cards",
        ("Do you sell gift cards?", "do you sell gift cards", "Do you sell GIFT CARDS?! 🎁"),
        ("Are gift cards available?",),
        "Yes! Gift cards from $10 to $500 are sold online and in every store. They never expire.",
    ),
    Intent(
        "stores",
        ("Where are your stores?", "where are your stores", "WHERE ARE YOUR STORES ?? 📍"),
        ("Is there a store near Berlin?",),
        "We have stores in **Berlin**, **Hamburg** and **Munich**. The full list with "
        "addresses is at [example.com/stores](https://example.com/stores).",
    ),
    Intent(
        "contact",
        (
            "How can customers contact support?",
            "how can customers contact support",
            "How can customers contact support?? 📞",
        ),
        ("What is the support phone number?",),
        "You can reach our support team by chat here, by e-mail at help@example.com, or by "
        "phone on weekdays from 9:00 to 18:00.",
    ),
)

# Questions only their asker may get the answer to; {order} {email} {phone} per message.
PERSONAL = (
    "Where is my order {order}?",
    "My email is {email}, why no invoice?",
    "Can you change the address on my account? It is {email}",
    "Please call me back on +1 555 {phone}",
    "I was charged twice for order #{order}",
)

# Operator rules of the cache-on run ([[cache.faq]]): (name, pattern).
FAQ_RULES = (
    ("opening hours", r"opening hours|when are you open|what time do you (?:open|close)"),
    ("returns", r"returns? work|return an item|refund policy"),
    ("shipping", r"\bship to\b|shipping options|delivery take"),
)
FAQ_TTL = 86400.0

ANSWERS = {text: i.answer for i in INTENTS if i.answer for text in (*i.same, *i.reworded)}


def agent_brain(session: SimSession, text: str) -> list[JsonDict]:
    """The simulated agent: the intents' answers, else ``default_brain``. Only the last
    paragraph is the question: after a cached answer the daemon puts a context line in
    front ("Earlier I asked ..."), which ``default_brain``'s keyword match would take for
    the question."""
    question = text.rsplit("\n\n", 1)[-1]
    answer = ANSWERS.get(question)
    return [inform(answer)] if answer else default_brain(session, question)


def check_workload() -> None:
    """The workload's promises hold for this daemon's normaliser and rules: spellings of one
    intent normalise together, rewordings do not, personal questions are personal and the
    others are not. A broken promise would make the numbers mean something else."""
    rules = Rules(faq=[CacheRule(p, FAQ_TTL, True, n) for n, p in FAQ_RULES])
    seen: dict[str, str] = {}  # normalised question -> the intent it belongs to
    for intent in INTENTS:
        same = {normalize_question(t) for t in intent.same}
        if len(same) != 1:
            raise SystemExit(f"{intent.name}: spellings normalise apart: {sorted(same)}")
        for key in (*same, *(normalize_question(t) for t in intent.reworded)):
            if key in seen:
                raise SystemExit(f"{key!r} ({intent.name}) normalises like a {seen[key]} text")
            seen[key] = intent.name
            decision = rules.decide(key, opens_conversation=False)
            if decision.reason == "personal":
                raise SystemExit(f"{key!r} looks personal to the daemon ({decision.rule})")
    for template in PERSONAL:
        text = template.format(order="48213", email="ann@example.com", phone="0100 2233")
        if rules.decide(normalize_question(text), opens_conversation=True).reason != "personal":
            raise SystemExit(f"{text!r} does not look personal to the daemon")


@dataclass(frozen=True)
class Message:
    text: str
    voice: bool
    intent: str  # an intent's name, or "personal"
    variant: str  # "usual" | "same" (normalises like usual) | "reworded" | "personal"


@dataclass(frozen=True)
class UserPlan:
    n: int
    wa_id: str
    start: float  # seconds after the clock starts
    messages: tuple[Message, ...]


def make_plan(
    users: int, messages: int, voice_share: float, seed: int, arrival: float
) -> list[UserPlan]:
    """Who says what, and when they start: the same for both runs."""
    rng = random.Random(seed)
    weights = [1 / k**ZIPF_EXPONENT for k in range(1, len(INTENTS) + 1)]
    plan: list[UserPlan] = []
    for n in range(users):
        said: list[Message] = []
        for _ in range(messages):
            voice = rng.random() < voice_share
            if rng.random() < PERSONAL_SHARE:
                text = rng.choice(PERSONAL).format(
                    order=rng.randrange(10_000, 99_999),
                    email=f"user{n}@example.com",
                    phone=f"{rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}",
                )
                said.append(Message(text, voice, "personal", "personal"))
                continue
            intent = rng.choices(INTENTS, weights)[0]
            # The usual spelling most often, other spellings less, rewordings least.
            options = [(intent.same[0], "usual", 4.0)]
            options += [(t, "same", 2.0) for t in intent.same[1:]]
            options += [(t, "reworded", 1.0) for t in intent.reworded]
            text, variant, _ = rng.choices(options, [w for _, _, w in options])[0]
            said.append(Message(text, voice, intent.name, variant))
        start = rng.uniform(0, arrival) if arrival > 0 else 0.0
        plan.append(UserPlan(n, f"1555{n:07d}", start, tuple(said)))
    return plan


def record_voice_notes(plan: Sequence[UserPlan]) -> dict[tuple[int, int], bytes]:
    """Every voice note recorded before the clock starts. Each is distinct audio (20 ms
    longer than the one before), as when every user records their own: identical bytes would
    be a forwarded note, which the transcript cache answers by sha256."""
    notes: dict[tuple[int, int], bytes] = {}
    for user in plan:
        for i, message in enumerate(user.messages):
            if message.voice:
                seconds = min(20.0, max(0.5, 0.06 * len(message.text))) + 0.02 * (len(notes) + 1)
                notes[user.n, i] = speak(message.text, "en", seconds)
    return notes


# ---------------------------------------------------------------------------- latencies

Span = tuple[float, float]


@dataclass(frozen=True)
class Latencies:
    agent: Span = (0.0, 0.0)  # one agent turn (the answer)
    agent_other: Span = (0.0, 0.0)  # session start / end, token
    stt: Span = (0.0, 0.0)
    tts: Span = (0.0, 0.0)
    graph: Span = (0.0, 0.0)


PROFILES = {
    "realistic": Latencies(
        agent=(2.0, 5.0), agent_other=(0.2, 0.5), stt=(0.3, 1.0), tts=(1.0, 3.0), graph=(0.05, 0.2)
    ),
    "none": Latencies(),
}


@dataclass
class RouteLatency(Faults):
    """``Faults`` whose latency depends on the request path: the first ``routes`` entry whose
    fragment is in the path, else ``latency`` (also outside a request: the Agentforce sim runs
    a turn in its own task)."""

    routes: tuple[tuple[str, Span], ...] = ()

    async def delay(self) -> None:
        path = request.path if has_request_context() else ""
        low, high = next((span for part, span in self.routes if part in path), self.latency)
        if high > 0:
            await trio.sleep(self.rng.uniform(low, high))


def sim_faults(latencies: Latencies, seed: int) -> dict[str, Faults]:
    return {
        "agentforce_faults": RouteLatency(
            latency=latencies.agent,
            routes=(("/messages", latencies.agent), ("/", latencies.agent_other)),
            rng=random.Random(seed + 1),
        ),
        "elevenlabs_faults": RouteLatency(
            latency=latencies.tts,
            routes=(("/speech-to-text", latencies.stt), ("/text-to-speech", latencies.tts)),
            rng=random.Random(seed + 2),
        ),
        "graph_faults": Faults(latency=latencies.graph, rng=random.Random(seed + 3)),
    }


# ---------------------------------------------------------------------------- the config

CACHES_OFF: dict[str, Any] = {
    "responses": False,
    "audio_memory_bytes": 1,  # must be > 0; no voice note fits in one byte
    "audio_disk_bytes": 0,
    "media_ids": 1,
    "media_id_ttl": 0.001,
    "transcripts": 1,
    "transcript_ttl": 0.001,
}
# Both runs: enough turns and connections at once that neither limit shapes the result.
COMMON: dict[str, dict[str, Any]] = {
    "lanes": {"max_concurrent_turns": 512},
    "http": {"max_connections": 512, "max_keepalive": 128},
}


def faq_tables() -> str:
    """``[[cache.faq]]`` tables: ``stack.to_toml`` writes JSON values, and an array of JSON
    objects is not TOML, so the rules are written here."""
    lines: list[str] = []
    for name, pattern in FAQ_RULES:
        lines += [
            "",
            "[[cache.faq]]",
            f"name = {json.dumps(name)}",
            f"pattern = {json.dumps(pattern)}",
            f"ttl = {FAQ_TTL}",
            "standalone = true",
        ]
    return "\n".join(lines) + "\n"


def write_config(sims: Sims, path: Path, caches_on: bool) -> dict[str, Any]:
    """The daemon's config file for one run; returns the parsed document (for the report)."""
    overrides = {**COMMON, "cache": {} if caches_on else CACHES_OFF}
    text = to_toml(sims.sections(**overrides)) + (faq_tables() if caches_on else "")
    document = tomllib.loads(text)
    settings = config.parse(document, env=SECRETS)  # fail here, not in the child
    assert len(settings.cache.faq) == (len(FAQ_RULES) if caches_on else 0)
    path.write_text(text)
    return document


# ---------------------------------------------------------------------------- one run


class Inboxes:
    """What each user received, routed from the simulated Graph's sends by one task (a
    ``wait_sent(to=...)`` per user would rescan every send for every user at every send)."""

    def __init__(self) -> None:
        self.sent: dict[str, list[SentMessage]] = defaultdict(list)
        self.changes: dict[str, Changes] = defaultdict(Changes)

    async def follow(self, graph: GraphSim) -> None:
        seen = 0
        while True:
            sent = await graph.wait_sent(seen + 1)
            touched = set()
            for message in sent[seen:]:
                to = message.to.lstrip("+")
                self.sent[to].append(message)
                touched.add(to)
            seen = len(sent)
            for to in touched:
                self.changes[to].bump()


@dataclass
class TurnRecord:
    user: int
    index: int
    kind: str  # "text" | "voice"
    intent: str
    variant: str
    to_text: float | None = None  # seconds from the webhook POST to the answer's text
    to_voice: float | None = None  # ... to the voice note (voice turns)
    holding: bool = False
    outcome: str = ""  # from the daemon's summary line
    served: str = "unknown"  # "cache" (hit) | "shared" (single flight) | "agent"
    cached: tuple[str, ...] = ()  # the summary line's cached=


def answer_parts(
    messages: Sequence[SentMessage],
) -> tuple[SentMessage | None, SentMessage | None, bool]:
    """(answer text, voice note, holding message seen) among a turn's deliveries."""
    text = next((m for m in messages if m.type == "text" and m.text != HOLDING), None)
    audio = next((m for m in messages if m.type == "audio"), None)
    return text, audio, any(m.type == "text" and m.text == HOLDING for m in messages)


def answered(inbox: list[SentMessage], since: int, voice: bool) -> bool:
    text, audio, _ = answer_parts(inbox[since:])
    return text is not None and (audio is not None or not voice)


async def play(
    user: UserPlan,
    sims: Sims,
    sender: webhooks.WebhookSender,
    inboxes: Inboxes,
    notes: Mapping[tuple[int, int], bytes],
    started: float,
    records: list[TurnRecord],
) -> None:
    await trio.sleep_until(started + user.start)
    inbox = inboxes.sent[user.wa_id]
    for i, message in enumerate(user.messages):
        record = TurnRecord(
            user.n, i, "voice" if message.voice else "text", message.intent, message.variant
        )
        records.append(record)
        item: webhooks.UserMessage
        if message.voice:
            audio = notes[user.n, i]
            media_id = sims.graph.add_user_media(audio, OGG_OPUS)
            sha256 = webhooks.media_sha256(audio)
            item = webhooks.voice_message(user.wa_id, media_id, sha256=sha256)
        else:
            item = webhooks.text_message(user.wa_id, message.text)
        since = len(inbox)
        start = trio.current_time()
        response = await sender.post(webhooks.envelope(item, phone_number_id=PHONE_NUMBER_ID))
        if response.status_code != 200:
            record.outcome = f"http_{response.status_code}: {response.text.strip()[:60]}"
            continue
        with trio.move_on_after(WAIT_LIMIT):
            await inboxes.changes[user.wa_id].until(partial(answered, inbox, since, message.voice))
        text, voice_note, record.holding = answer_parts(inbox[since:])
        record.to_text = None if text is None else text.at - start
        record.to_voice = None if voice_note is None else voice_note.at - start


SUMMARY = re.compile(
    r"turn=(\w+) done user=(\S+) kind=(\w+) outcome=(\w+) voice=(\w+)(.*)$", re.MULTILINE
)
CACHE_HIT = re.compile(r"turn=(\w+) answered from the response cache \((\w+)\)")
METRIC = re.compile(r"^(wa_agentd_\w+)\{(.*)\} (\S+)$", re.MULTILINE)
WANTED_METRICS = ("wa_agentd_cache_", "wa_agentd_upstream_calls_total", "wa_agentd_turns_total")


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """The cache metrics and upstream call counters, as {name: {labels: value}}."""
    found: dict[str, dict[str, float]] = defaultdict(dict)
    for name, labels, value in METRIC.findall(text):
        if name.startswith(WANTED_METRICS):
            found[name][labels.replace('"', "")] = float(value)
    return dict(found)


def apply_log(
    log: str,
    plan: Sequence[UserPlan],
    records: Sequence[TurnRecord],
    user_hash: Callable[[str], str],
) -> Counter[str]:
    """Fill outcome / served / cached of every record from the daemon's summary lines (a
    user's turns run one after another, so the k-th line of a user is their k-th turn).
    ``user_hash``: a user as the daemon's lines show them (keyed with the daemon's salt).
    Returns what the response cache answered hits for, by rule reason (faq, opener)."""
    hits = {turn: reason for turn, reason in CACHE_HIT.findall(log)}
    lines: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for turn, user, _kind, outcome, _voice, rest in SUMMARY.findall(log):
        found = re.search(r"cached=(\S+)", rest)
        lines[user].append((turn, outcome, found.group(1) if found else ""))
    by_user = {user_hash(u.wa_id): u.n for u in plan}
    mine = {(r.user, r.index): r for r in records}
    for user_hash, turns in lines.items():
        n = by_user.get(user_hash)
        for index, (turn, outcome, cached) in enumerate(turns):
            record = mine.get((n, index)) if n is not None else None
            if record is None:
                continue
            record.outcome = outcome
            record.cached = tuple(c for c in cached.split(",") if c)
            if turn in hits:
                record.served = "cache"
            else:
                record.served = "shared" if "answer" in record.cached else "agent"
    return Counter(hits.values())


@dataclass
class RunResult:
    caches_on: bool
    elapsed_s: float
    records: list[TurnRecord]
    calls: dict[str, int]
    metrics: dict[str, dict[str, float]]
    hit_reasons: dict[str, int]
    config: dict[str, Any] = field(default_factory=dict)


async def run_once(
    plan: Sequence[UserPlan],
    notes: Mapping[tuple[int, int], bytes],
    latencies: Latencies,
    seed: int,
    caches_on: bool,
) -> RunResult:
    records: list[TurnRecord] = []
    faults = sim_faults(latencies, seed)
    with tempfile.TemporaryDirectory(prefix="wa-agentd-faq-") as scratch:
        workdir = Path(scratch)
        options = {"responder": agent_brain}
        async with open_sims(agentforce_options=options, **faults) as sims:
            config_path = workdir / "bench.toml"
            document = write_config(sims, config_path, caches_on)
            async with (
                spawn_daemon(sims, workdir, env={"WA_AGENTD_CONFIG": str(config_path)}) as daemon,
                httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=300)) as client,
                trio.open_nursery() as background,
            ):
                background.start_soon(daemon.drain_log)
                # The salt file goes with the temporary directory: read it while it is there.
                user_hash = partial(hashed, key=salt_key(load_salt(daemon.state_dir, create=False)))
                inboxes = Inboxes()
                background.start_soon(inboxes.follow, sims.graph)
                secret = SECRETS["WHATSAPP_APP_SECRET"]
                sender = webhooks.WebhookSender(client, daemon.webhook_url, secret)
                started = trio.current_time()
                async with trio.open_nursery() as users:
                    for user in plan:
                        users.start_soon(play, user, sims, sender, inboxes, notes, started, records)
                elapsed = trio.current_time() - started
                scraped = await client.get(daemon.admin_url + "/metrics")
                metrics = parse_metrics(scraped.text)
                background.cancel_scope.cancel()  # the rest of the log is read after the exit
            calls = {
                "agent_messages": len(sims.agentforce.received),
                "agent_sessions": len(sims.agentforce.started),
                "stt": len(sims.elevenlabs.stt_requests),
                "tts": len(sims.elevenlabs.tts_requests),
                "graph_uploads": len(sims.graph.uploads),
                "graph_sends": len(sims.graph.sent),
            }
    records.sort(key=lambda r: (r.user, r.index))
    log = daemon.log.decode(errors="replace")
    OUT.mkdir(exist_ok=True)
    (OUT / f"faq-daemon-{'on' if caches_on else 'off'}.log").write_text(log)
    reasons = apply_log(log, plan, records, user_hash)
    return RunResult(caches_on, elapsed, records, calls, metrics, dict(reasons), document)


# ---------------------------------------------------------------------------- the report


def latency(values: Iterable[float | None]) -> dict[str, float | int]:
    got = [v for v in values if v is not None]
    if not got:
        return {"n": 0}
    return {
        "n": len(got),
        "p50_s": round(percentile(got, 50), 3),
        "p95_s": round(percentile(got, 95), 3),
        "mean_s": round(statistics.fmean(got), 3),
        "max_s": round(max(got), 3),
    }


def group_latencies(records: Sequence[TurnRecord]) -> dict[str, dict[str, float | int]]:
    text = [r for r in records if r.kind == "text"]
    voice = [r for r in records if r.kind == "voice"]
    return {
        "time_to_text": latency(r.to_text for r in records),
        "time_to_text_text_turns": latency(r.to_text for r in text),
        "time_to_text_voice_turns": latency(r.to_text for r in voice),
        "time_to_voice": latency(r.to_voice for r in voice),
    }


def metric(result: RunResult, name: str, labels: str) -> float:
    return result.metrics.get(name, {}).get(labels, 0.0)


def summarize(on: RunResult, off: RunResult, settings: dict[str, Any]) -> dict[str, Any]:
    lookups = "wa_agentd_cache_lookups_total"
    hit = metric(on, lookups, "result=response_hit")
    miss = metric(on, lookups, "result=response_miss")
    audio_hit = metric(on, lookups, "result=audio_hit")
    audio_miss = metric(on, lookups, "result=audio_miss")
    turns = len(on.records)
    served = Counter(r.served for r in on.records)
    calls = {
        name: {
            "on": on.calls[name],
            "off": off.calls[name],
            "saved": off.calls[name] - on.calls[name],
        }
        for name in on.calls
    }
    groups = {
        "cache_on_cached": [r for r in on.records if r.served == "cache"],
        "cache_on_shared": [r for r in on.records if r.served == "shared"],
        "cache_on_uncached": [r for r in on.records if r.served not in ("cache", "shared")],
        "cache_off_all": off.records,
    }
    by_intent: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in on.records:
        by_intent[r.intent]["turns"] += 1
        by_intent[r.intent][r.served] += 1
    # First messages of intents no FAQ rule covers: only opener caching can answer them.
    rule_intents = {"opening_hours", "returns", "shipping"}
    openers: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in on.records:
        if r.index == 0 and r.intent not in rule_intents | {"personal"}:
            openers[r.kind][r.served] += 1

    def run_facts(result: RunResult) -> dict[str, Any]:
        return {
            "elapsed_s": round(result.elapsed_s, 2),
            "outcomes": dict(Counter(r.outcome or "unknown" for r in result.records)),
            "unanswered_turns": sum(r.to_text is None for r in result.records),
            "voice_turns_without_voice_note": sum(
                r.kind == "voice" and r.to_voice is None for r in result.records
            ),
            "holding_messages": sum(r.holding for r in result.records),
            "transcript_cache_hits": sum("transcript" in r.cached for r in result.records),
            "metrics": result.metrics,
            "config": result.config,
        }

    return {
        "settings": settings,
        "workload": {
            "intents": [asdict(i) for i in INTENTS],
            "personal_templates": list(PERSONAL),
            "faq_rules": [{"name": n, "pattern": p, "ttl": FAQ_TTL} for n, p in FAQ_RULES],
            "turns": turns,
            "voice_turns": sum(r.kind == "voice" for r in on.records),
            "by_intent": Counter(r.intent for r in on.records),
            "by_variant": Counter(r.variant for r in on.records),
        },
        "calls": calls,
        # The cache-off run still coalesces concurrent identical syntheses (the audio cache's
        # single flight cannot be configured away): without it, one TTS per voice note.
        "tts_without_any_coalescing": sum(r.to_voice is not None for r in off.records),
        "hit_rate": {
            "metrics_response_hit": hit,
            "metrics_response_miss": miss,
            "metrics_response_shared": metric(on, lookups, "result=response_shared"),
            "response_hit_rate_metrics": round(hit / (hit + miss), 4) if hit + miss else None,
            "audio_hit": audio_hit,
            "audio_miss": audio_miss,
            "audio_hit_rate_metrics": (
                round(audio_hit / (audio_hit + audio_miss), 4) if audio_hit + audio_miss else None
            ),
            "turns_answered_from_cache": served["cache"],
            "turns_shared_agent_call": served["shared"],
            "turns": turns,
            "turn_hit_rate": round(served["cache"] / turns, 4) if turns else None,
            "turn_cached_answer_rate": (
                round((served["cache"] + served["shared"]) / turns, 4) if turns else None
            ),
            "hits_by_rule": on.hit_reasons,
            "served_by_intent": {k: dict(v) for k, v in by_intent.items()},
            "first_messages_without_faq_rule_by_kind": {k: dict(v) for k, v in openers.items()},
        },
        "latency": {name: group_latencies(records) for name, records in groups.items()},
        "runs": {"cache_on": run_facts(on), "cache_off": run_facts(off)},
        "records": {
            "cache_on": [asdict(r) for r in on.records],
            "cache_off": [asdict(r) for r in off.records],
        },
    }


def table(report: dict[str, Any]) -> str:
    s = report["settings"]
    h = report["hit_rate"]
    out = [
        f"FAQ workload: {s['users']} users x {s['messages']} messages, {s['voice']:.0%} voice, "
        f"seed {s['seed']}, latency {s['latency']}, arrivals over {s['arrival_s']:g} s",
        "",
        f"{'upstream calls':<22}{'cache on':>10}{'cache off':>11}{'saved':>8}",
    ]
    for name, c in report["calls"].items():
        share = f" ({c['saved'] / c['off']:.0%})" if c["off"] else ""
        out.append(f"{name:<22}{c['on']:>10}{c['off']:>11}{c['saved']:>8}{share}")
    rate = h["response_hit_rate_metrics"]
    out += [
        "",
        "response cache (metrics): "
        f"{h['metrics_response_hit']:.0f} hits / {h['metrics_response_miss']:.0f} misses"
        + (f" = {rate:.1%}" if rate is not None else "")
        + f", {h['metrics_response_shared']:.0f} shared agent calls",
        f"turns answered from the cache: {h['turns_answered_from_cache']} / {h['turns']}"
        f" = {h['turn_hit_rate']:.1%}"
        f" (+{h['turns_shared_agent_call']} shared: cached={h['turn_cached_answer_rate']:.1%});"
        f" hits by rule {h['hits_by_rule']}",
        f"audio cache (metrics): {h['audio_hit']:.0f} hits / {h['audio_miss']:.0f} misses",
        "",
        f"(cache off: {report['calls']['tts']['off']} TTS requests for "
        f"{report['tts_without_any_coalescing']} voice notes: concurrent identical syntheses "
        "share one request even with the caches off)",
        "",
        "latency (s) from the webhook POST; text = the answer's text, voice = the voice note",
        f"{'':<20}{'all turns':>21}{'text messages':>21}{'voice messages':>22}",
        f"{'group':<20}{'n':>5}{'text p50':>9}{'p95':>7}{'n':>5}{'text p50':>9}{'p95':>7}"
        f"{'n':>5}{'voice p50':>10}{'p95':>7}",
    ]
    for name, group in report["latency"].items():
        row = f"{name:<20}"
        for key, width in (
            ("time_to_text", 9),
            ("time_to_text_text_turns", 9),
            ("time_to_voice", 10),
        ):
            stats = group[key]
            p50, p95 = stats.get("p50_s", math.nan), stats.get("p95_s", math.nan)
            row += f"{stats['n']:>5}{p50:>{width}.2f}{p95:>7.2f}"
        out.append(row)
    for name, run in report["runs"].items():
        out.append(
            f"{name}: {run['elapsed_s']} s, outcomes {run['outcomes']}, "
            f"unanswered {run['unanswered_turns']}, holding messages {run['holding_messages']}"
        )
    return "\n".join(out)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    check_workload()
    arrival = args.arrival
    if arrival is None:
        arrival = 0.2 * args.users if args.latency == "realistic" else 0.0
    plan = make_plan(args.users, args.messages, args.voice, args.seed, arrival)
    notes = record_voice_notes(plan)  # before the clock starts
    latencies = PROFILES[args.latency]
    on = await run_once(plan, notes, latencies, args.seed, caches_on=True)
    off = await run_once(plan, notes, latencies, args.seed, caches_on=False)
    settings = {
        "users": args.users,
        "messages": args.messages,
        "voice": args.voice,
        "seed": args.seed,
        "latency": args.latency,
        "latencies_s": asdict(latencies),
        "arrival_s": arrival,
        "zipf_exponent": ZIPF_EXPONENT,
        "personal_share": PERSONAL_SHARE,
        "voice_notes": "distinct audio per note (no forwarding)",
        "caches_off": CACHES_OFF,
        "both_runs": COMMON,
    }
    return summarize(on, off, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--messages", type=int, default=3, help="messages per user")
    parser.add_argument("--voice", type=float, default=0.3, help="share of voice notes")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency", choices=sorted(PROFILES), default="realistic")
    parser.add_argument(
        "--arrival",
        type=float,
        default=None,
        help="seconds over which users arrive (default: 0.2 s per user when realistic, else 0)",
    )
    args = parser.parse_args()
    logs.setup("error")
    report = trio.run(bench, args)
    OUT.mkdir(exist_ok=True)
    (OUT / "faq.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(table(report))
    print(f"\nfull results: {OUT / 'faq.json'}")


if __name__ == "__main__":
    main()
