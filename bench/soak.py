"""Soak: does the daemon's memory plateau when ever new users keep writing?

    .venv/bin/python -m bench.soak [--users 100000] [--concurrency 200] [--voice 0.1]
                                   [--sample 1.0] [--out bench/out]

Every in-process map of the daemon (lanes, agent sessions, dedupe ids, caches) has a size
and a TTL bound in config.toml. This drives ``--users`` DISTINCT users, each sending ONE
message (a share ``--voice`` of them a voice note), at most ``--concurrency`` in flight,
against ``wa-agentd serve`` running as its own process with bounds small enough that EVERY
map fills up within the run (``BOUNDS``). Every ``--sample`` seconds it records the daemon's
VmRSS (from /proc) and its gauges (``/metrics``): lanes, agent sessions, dedupe ids, queue
depth, and each cache's entries and bytes. Once the maps are full, RSS must stop growing and
stay under ``--bound-mib``; ``bounds_reached`` in the summary says whether each map did fill.

Questions are a realistic mix: FAQs (answered from the response cache after the first few),
personal ones with an order number (never cached: one agent session each) and one-off
product questions (agent sessions and response-cache candidates). Voice notes say one of
``VOICE_PHRASES`` distinct product questions (a few FAQs among them), so the transcripts
(by the voice note's sha256), the spoken answers (audio cache, memory and disk) and the
uploaded media ids keep meeting new keys after their bounds are reached, as they would with
real users. Each phrase is recorded the first time it is needed, in a worker thread. The
simulators run in this process with no added latency, so the run is as fast as the two
processes allow.

Output: ``<out>/soak.json`` (every sample and a summary) and ``<out>/soak.png`` (needs
matplotlib: ``.venv/bin/pip install -r bench/requirements.txt``). Not a test: nothing
asserts; ``within_bound`` and ``rss_growth_second_half_mib`` in the summary say how it went.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from daemon.observe import logs
from daemon.sim import webhooks
from daemon.sim.audio import speak
from daemon.sim.graph import GraphSim
from daemon.sim.stack import PHONE_NUMBER_ID, SECRETS, DaemonProcess, Sims, open_sims, spawn_daemon

OUT = Path(__file__).resolve().parent / "out"
MIB = 1024 * 1024

# The daemon's bounds for the soak: realistic, but small enough that every map fills up
# well within 100 000 users (config.toml has the production defaults, 2-10x larger).
BOUNDS: dict[str, dict[str, Any]] = {
    "lanes": {"idle_seconds": 5.0, "remembered_users": 2000},
    "agentforce": {"max_sessions": 5000, "session_idle": 60.0},
    "inbox": {"dedupe_max_ids": 50_000},
    "cache": {
        "response_entries": 300,
        # A spoken answer here is ~40 KB: ~50 in memory, ~200 on disk, of VOICE_PHRASES.
        "audio_memory_bytes": 2 * MIB,
        "audio_disk_bytes": 8 * MIB,
        "transcripts": 200,
        "media_ids": 200,
    },
}
# Distinct things voice notes say: twice the voice maps above (transcripts, media ids, ~200
# answers on disk), so they fill and keep churning. Not more: every distinct answer costs
# the simulated TTS, which runs in this process, an encode of its own.
VOICE_PHRASES = 400
# Not bounds, but needed to count answers: no "one moment" message (it would be an extra
# send to wait for), and the startup line spawn_daemon waits for is logged at info.
OTHER_SETTINGS: dict[str, dict[str, Any]] = {"ux": {"holding_after": 0.0}, "log": {"level": "info"}}
# The simulated agent forgets idle sessions too (after the daemon's own session_idle, so
# the daemon's DELETEs still find them); the bench then drops them from the sim's map.
SIM_SESSION_IDLE = 120.0
DEFAULT_BOUND_MIB = 200.0

FAQ = [
    "What are your opening hours?",
    "Do you ship to Canada?",
    "How do returns work?",
    "Hello!",
]
SPOKEN_FAQ = [  # a fifth of the voice notes: the same few questions, cache hits
    "What are your opening hours?",
    "How do returns work?",
    "Do you ship to Canada?",
    "Where is my order?",
]
GAUGES = (
    "wa_agentd_lanes",
    "wa_agentd_agent_sessions",
    "wa_agentd_dedupe_ids",
    "wa_agentd_queue_depth",
)
# Labelled gauges, one series per cache: (family, label value) -> the key in the samples.
CACHE_GAUGES = {
    ("wa_agentd_cache_entries", "responses"): "cache_entries_responses",
    ("wa_agentd_cache_entries", "transcripts"): "cache_entries_transcripts",
    ("wa_agentd_cache_entries", "media_ids"): "cache_entries_media_ids",
    ("wa_agentd_cache_entries", "audio_memory"): "cache_entries_audio_memory",
    ("wa_agentd_cache_entries", "audio_disk"): "cache_entries_audio_disk",
    ("wa_agentd_cache_bytes", "audio_memory"): "cache_bytes_audio_memory",
    ("wa_agentd_cache_bytes", "audio_disk"): "cache_bytes_audio_disk",
}
# Each bounded map, the sample key that shows its size, and the bound it must reach.
FILLS = {
    "agent_sessions": ("wa_agentd_agent_sessions", BOUNDS["agentforce"]["max_sessions"]),
    "dedupe_ids": ("wa_agentd_dedupe_ids", BOUNDS["inbox"]["dedupe_max_ids"]),
    "responses": ("cache_entries_responses", BOUNDS["cache"]["response_entries"]),
    "transcripts": ("cache_entries_transcripts", BOUNDS["cache"]["transcripts"]),
    "media_ids": ("cache_entries_media_ids", BOUNDS["cache"]["media_ids"]),
    "audio_memory_bytes": ("cache_bytes_audio_memory", BOUNDS["cache"]["audio_memory_bytes"]),
    "audio_disk_bytes": ("cache_bytes_audio_disk", BOUNDS["cache"]["audio_disk_bytes"]),
}
# An LRU bounded by bytes stops one entry short of its budget; "full" allows for that.
FULL_SHARE = 0.9
UPSTREAM_CALLS = "wa_agentd_upstream_calls_total"
OUTCOME = re.compile(rb"outcome=(\w+)")
PROBLEM = re.compile(rb" (WARNING|ERROR|CRITICAL) +([\w.]+):")


# --------------------------------------------------------------------------- the users


def letters(n: int) -> str:
    """``n`` spelt in letters (a, b, ..., ba, ...): a unique word without digits, which the
    response cache would take for an order number and never cache."""
    word = ""
    while True:
        n, digit = divmod(n, 26)
        word = chr(ord("a") + digit) + word
        if n == 0:
            return word


def spoken(rng: random.Random) -> str:
    """What one voice note says."""
    if rng.random() < 0.2:
        return rng.choice(SPOKEN_FAQ)
    return f"Is the {letters(rng.randrange(VOICE_PHRASES))} teapot in stock?"


def question(n: int, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(FAQ)
    if roll < 0.65:
        return f"Where is my order {n:08d}?"
    return f"Do you sell the {letters(n)} kettle in blue?"


@dataclass
class _Wanted:
    count: int
    done: trio.Event = field(default_factory=trio.Event)
    got: int = 0


class Answers:
    """Counts what the simulated Graph sent to each user in flight.

    One task reads ``graph.sent`` and then empties it (and the other records Graph keeps),
    so neither the simulator's lists nor the cost of scanning them grow with the run: 200
    users each waiting with ``wait_sent(n, to=...)`` would rescan the whole list on every
    send. Every user is new, so all their sends belong to this one turn.
    """

    def __init__(self, graph: GraphSim) -> None:
        self._graph = graph
        self._wanted: dict[str, _Wanted] = {}
        self.stray = 0  # sends to nobody waiting (a user that timed out)
        self.rejected = 0  # sends Graph refused

    def expect(self, wa_id: str, count: int) -> trio.Event:
        wanted = self._wanted[wa_id] = _Wanted(count)
        return wanted.done

    def forget(self, wa_id: str) -> None:
        self._wanted.pop(wa_id, None)

    async def run(self) -> None:
        graph = self._graph
        while True:
            # No checkpoint between wait_sent returning and the clear: nothing is lost.
            for message in await graph.wait_sent(1):
                wanted = self._wanted.get(message.to.lstrip("+"))
                if wanted is None:
                    self.stray += 1
                    continue
                wanted.got += 1
                if wanted.got >= wanted.count:
                    wanted.done.set()
            self.rejected += len(graph.rejected)
            graph.sent.clear()
            graph.rejected.clear()
            graph.reads.clear()
            graph.uploads.clear()  # the bytes stay in graph.media under their id


@dataclass
class Load:
    sims: Sims
    sender: webhooks.WebhookSender
    answers: Answers
    users: int
    voice_share: float
    timeout: float
    rng: random.Random
    recordings: dict[str, bytes]
    numbers: Iterator[int] = field(default_factory=itertools.count)
    done: int = 0
    results: Counter[str] = field(default_factory=Counter)

    def next_user(self) -> int | None:
        n = next(self.numbers)
        return n if n < self.users else None

    async def worker(self) -> None:
        while (n := self.next_user()) is not None:
            await self.one_user(n)
            self.done += 1

    async def one_user(self, n: int) -> None:
        wa_id = f"1555{n:07d}"
        media_id = ""
        if self.rng.random() < self.voice_share:
            audio = await self.record(spoken(self.rng))
            media_id = self.sims.graph.add_user_media(audio, "audio/ogg; codecs=opus")
            sha = webhooks.media_sha256(audio)
            message = webhooks.voice_message(wa_id, media_id, sha256=sha)
            done = self.answers.expect(wa_id, 2)  # the text answer and the voice note
        else:
            message = webhooks.text_message(wa_id, question(n, self.rng))
            done = self.answers.expect(wa_id, 1)
        body = webhooks.envelope(message, phone_number_id=PHONE_NUMBER_ID)
        try:
            if await self.post(body):
                with trio.move_on_after(self.timeout):
                    await done.wait()
                self.results["answered" if done.is_set() else "timed_out"] += 1
        finally:
            self.answers.forget(wa_id)
            if media_id:  # the user's clip is only needed until the daemon fetched it
                self.sims.graph.media.pop(media_id, None)

    async def record(self, text: str) -> bytes:
        """The voice note saying ``text``: encoded once (in a thread: ~20 ms of CPU that
        would stall this process's event loop, and with it the simulators), then reused."""
        audio = self.recordings.get(text)
        if audio is None:
            audio = await trio.to_thread.run_sync(speak, text)
            self.recordings[text] = audio
        return audio

    async def post(self, body: dict[str, Any]) -> bool:
        """POST the webhook; on a 503 (queue full) retry as Meta does, a little later."""
        for attempt in range(20):
            try:
                response = await self.sender.post(body)
            except httpx.HTTPError:
                self.results["post_error"] += 1
            else:
                if response.status_code == 200:
                    return True
                self.results[f"http_{response.status_code}"] += 1
            await trio.sleep(min(0.1 * 2**attempt, 2.0))
        self.results["gave_up"] += 1
        return False


# --------------------------------------------------------------------------- upkeep


def prune_sims(sims: Sims, totals: Counter[str]) -> None:
    """Drop the simulators' records of finished work (this process, not the daemon's),
    counting them first."""
    agent, speech = sims.agentforce, sims.elevenlabs
    totals["agent_messages"] += len(agent.received)
    totals["agent_sessions_started"] += len(agent.started)
    totals["agent_sessions_ended"] += len(agent.ended)
    totals["stt"] += len(speech.stt_requests)
    totals["tts"] += len(speech.tts_requests)
    for records in (
        agent.received,
        agent.started,
        agent.ended,
        agent.requests,
        speech.stt_requests,
        speech.tts_requests,
        speech.requests,
    ):
        records.clear()
    live = {s.session_id for s in agent.live_sessions()}  # busy sessions count as live
    for session_id in [sid for sid in agent.sessions if sid not in live]:
        del agent.sessions[session_id]
    totals["agent_sessions_live_at_last_prune"] = len(agent.sessions)


async def keep_sims_small(sims: Sims, totals: Counter[str], every: float = 5.0) -> None:
    while True:
        await trio.sleep(every)
        prune_sims(sims, totals)


async def drain(
    daemon: DaemonProcess, outcomes: Counter[str], problems: Counter[str], tail: bytearray
) -> None:
    """Read the daemon's stderr (a full pipe would stall it), count turn outcomes and
    warnings per logger, and keep only the last 64 KiB of it, so this process's memory does
    not grow with the log."""
    stderr = daemon.process.stderr
    assert stderr is not None
    partial = b""
    while chunk := await stderr.receive_some(65536):
        lines = (partial + chunk).split(b"\n")
        partial = lines.pop()
        for line in lines:
            if match := OUTCOME.search(line):
                outcomes[match.group(1).decode()] += 1
            elif match := PROBLEM.search(line):  # e.g. "WARNING daemon.agentforce.lifecycle"
                problems[b" ".join(match.groups()).decode()] += 1
        tail += chunk
        del tail[: max(0, len(tail) - 65536)]


# --------------------------------------------------------------------------- sampling


@dataclass
class Sample:
    t: float  # seconds since the load started (negative: before)
    users_done: int
    rss_bytes: int | None
    gauges: dict[str, float | None]


def read_rss(pid: int) -> int | None:
    """VmRSS of ``pid`` in bytes, None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # reported in kB
    return None


def parse_gauges(text: str) -> dict[str, float | None]:
    """The gauges, each cache's entries and bytes, and all upstream calls so far (to relate
    memory to calls, not turns)."""
    found: dict[str, float | None] = dict.fromkeys([*GAUGES, *CACHE_GAUGES.values()])
    for family in text_string_to_metric_families(text):
        if family.name in GAUGES and family.samples:
            found[family.name] = family.samples[0].value
        elif family.name in ("wa_agentd_cache_entries", "wa_agentd_cache_bytes"):
            for sample in family.samples:
                key = CACHE_GAUGES.get((family.name, sample.labels.get("cache", "")))
                if key is not None:
                    found[key] = sample.value
        elif family.name == "wa_agentd_upstream_calls":
            found[UPSTREAM_CALLS] = sum(
                s.value for s in family.samples if s.name.endswith("_total")
            )
    return found


@dataclass
class Sampler:
    pid: int
    metrics_url: str
    client: httpx.AsyncClient
    load: Load
    started: float = 0.0
    samples: list[Sample] = field(default_factory=list)

    async def sample(self) -> Sample:
        rss = read_rss(self.pid)
        gauges: dict[str, float | None] = dict.fromkeys([*GAUGES, *CACHE_GAUGES.values()])
        try:
            response = await self.client.get(self.metrics_url)
            gauges = parse_gauges(response.text)
        except httpx.HTTPError:
            pass  # a slow scrape under load: RSS still counts, the gauges stay empty
        sample = Sample(round(trio.current_time() - self.started, 3), self.load.done, rss, gauges)
        self.samples.append(sample)
        return sample

    async def run(self, every: float) -> None:
        while True:
            await trio.sleep(every)
            await self.sample()


# --------------------------------------------------------------------------- the run


@dataclass
class Options:
    users: int
    concurrency: int
    voice_share: float
    sample_every: float
    timeout: float
    tail: float
    bound_mib: float
    seed: int


async def run(opts: Options) -> dict[str, Any]:
    recordings = {text: speak(text) for text in SPOKEN_FAQ}
    overrides = {**BOUNDS, **OTHER_SETTINGS}
    outcomes: Counter[str] = Counter()
    problems: Counter[str] = Counter()
    sim_totals: Counter[str] = Counter()
    log_tail = bytearray()
    limits = httpx.Limits(
        max_connections=opts.concurrency, max_keepalive_connections=opts.concurrency
    )
    with tempfile.TemporaryDirectory(prefix="wa-agentd-soak-") as workdir:
        async with (
            open_sims(agentforce_options={"idle_timeout": SIM_SESSION_IDLE}) as sims,
            spawn_daemon(sims, Path(workdir), **overrides) as daemon,
            httpx.AsyncClient(timeout=30, limits=limits) as client,
            httpx.AsyncClient(timeout=5) as scraper,
            trio.open_nursery() as background,
        ):
            background.start_soon(drain, daemon, outcomes, problems, log_tail)
            answers = Answers(sims.graph)
            background.start_soon(answers.run)
            background.start_soon(keep_sims_small, sims, sim_totals)
            sender = webhooks.WebhookSender(
                client, daemon.webhook_url, SECRETS["WHATSAPP_APP_SECRET"]
            )
            load = Load(
                sims,
                sender,
                answers,
                opts.users,
                opts.voice_share,
                opts.timeout,
                random.Random(opts.seed),
                recordings,
            )
            sampler = Sampler(daemon.process.pid, daemon.admin_url + "/metrics", scraper, load)
            sampler.started = trio.current_time()
            await sampler.sample()  # the idle daemon, before any load
            background.start_soon(sampler.run, opts.sample_every)
            async with trio.open_nursery() as users:
                for _ in range(opts.concurrency):
                    users.start_soon(load.worker)
            elapsed = trio.current_time() - sampler.started
            await sampler.sample()  # the moment the last user was served
            await trio.sleep(opts.tail)  # idle: lanes expire, nothing else should move
            await sampler.sample()
            background.cancel_scope.cancel()
            prune_sims(sims, sim_totals)  # the last few seconds' records
    if daemon.process.returncode not in (0, None):
        print(f"daemon exited with {daemon.process.returncode}; log tail:\n{log_tail.decode()}")
    summary = summarize(opts, sampler.samples, elapsed, load, outcomes)
    summary["load"] = {
        **dict(load.results),
        "stray_sends": answers.stray,
        "rejected_sends": answers.rejected,
    }
    summary["simulators"] = dict(sim_totals)
    summary["daemon_log_problems"] = dict(problems)
    return {"summary": summary, "samples": [asdict(s) for s in sampler.samples]}


def rss_mib(sample: Sample | None) -> float | None:
    if sample is None or sample.rss_bytes is None:
        return None
    return round(sample.rss_bytes / MIB, 1)


def summarize(
    opts: Options,
    samples: list[Sample],
    elapsed: float,
    load: Load,
    outcomes: Mapping[str, int],
) -> dict[str, Any]:
    with_rss = [s for s in samples if s.rss_bytes is not None]

    def at_share(share: float) -> Sample | None:
        wanted = share * opts.users
        return next((s for s in with_rss if s.users_done >= wanted), None)

    quartiles = {
        f"at_{round(q * 100)}pct_users": rss_mib(at_share(q)) for q in (0.25, 0.5, 0.75, 1)
    }
    peak = max(with_rss, key=lambda s: s.rss_bytes or 0, default=None)
    half, full = rss_mib(at_share(0.5)), rss_mib(at_share(1.0))

    def highest(name: str) -> float | None:
        return max((v for s in samples if (v := s.gauges.get(name)) is not None), default=None)

    gauges_max = {name: highest(name) for name in [*GAUGES, *CACHE_GAUGES.values()]}
    bounds_reached = {
        name: {
            "max_seen": highest(key),
            "bound": bound,
            "full": (highest(key) or 0) >= FULL_SHARE * bound,
        }
        for name, (key, bound) in FILLS.items()
    }
    peak_mib = rss_mib(peak)
    calls = max((v for s in samples if (v := s.gauges.get(UPSTREAM_CALLS)) is not None), default=0)
    return {
        "users": opts.users,
        "concurrency": opts.concurrency,
        "voice_share": opts.voice_share,
        "duration_s": round(elapsed, 1),
        "turns_per_s": round(load.done / elapsed, 1) if elapsed > 0 else None,
        "rss_mib": {
            "start": rss_mib(with_rss[0] if with_rss else None),
            "peak": peak_mib,
            "peak_at_users": peak.users_done if peak else None,
            "final": rss_mib(with_rss[-1] if with_rss else None),
            **quartiles,
        },
        # The plateau test: what the second half of the users added.
        "rss_growth_second_half_mib": (
            round(full - half, 1) if full is not None and half is not None else None
        ),
        "rss_bound_mib": opts.bound_mib,
        "within_bound": peak_mib is not None and peak_mib <= opts.bound_mib,
        "gauges_max": gauges_max,
        # The evidence that every bounded map was driven to its bound, not just below it.
        "bounds_reached": bounds_reached,
        "upstream_calls": calls,
        "upstream_calls_per_turn": round(calls / load.done, 2) if load.done else None,
        "bounds": BOUNDS,
        "sim_session_idle_s": SIM_SESSION_IDLE,
        "outcomes": dict(outcomes),
    }


# --------------------------------------------------------------------------- the plot


def plot(result: dict[str, Any], path: Path) -> bool:
    """RSS and the audio cache's memory (MiB) over users served, the gauges and cache entries
    on a second (log) axis, each bound dotted; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "matplotlib is not installed: no plot, the JSON has every sample. "
            "Install it with: .venv/bin/pip install -r bench/requirements.txt"
        )
        return False
    summary, samples = result["summary"], result["samples"]
    bounds, rss_top = summary["bounds"], max(summary["rss_bound_mib"], summary["rss_mib"]["peak"])
    rows = [s for s in samples if s["rss_bytes"] is not None]
    fig, (by_users, by_time) = plt.subplots(2, 1, figsize=(11, 9))
    colors = {
        "wa_agentd_lanes": "tab:green",
        "wa_agentd_agent_sessions": "tab:orange",
        "wa_agentd_dedupe_ids": "tab:purple",
        "wa_agentd_queue_depth": "tab:gray",
        "cache_entries_responses": "tab:brown",
        "cache_entries_transcripts": "tab:pink",
        "cache_entries_media_ids": "tab:olive",
    }
    cache = bounds["cache"]
    audio_bound_mib = cache["audio_memory_bytes"] / MIB
    for ax, x_key, x_label in (
        (by_users, "users_done", "users served"),
        (by_time, "t", "seconds since the load started"),
    ):
        xs = [s[x_key] for s in rows]
        ax.plot(xs, [s["rss_bytes"] / MIB for s in rows], color="tab:blue", lw=2, label="RSS")
        ax.axhline(summary["rss_bound_mib"], color="tab:red", ls="--", label="RSS bound")
        audio = [
            (s[x_key], v / MIB)
            for s in samples
            if (v := s["gauges"].get("cache_bytes_audio_memory")) is not None
        ]
        if audio:
            ax.plot(*zip(*audio, strict=True), color="tab:cyan", lw=1, label="audio cache MiB")
            ax.axhline(audio_bound_mib, color="tab:cyan", ls=":", lw=1)
        ax.set_xlabel(x_label)
        ax.set_ylabel("daemon RSS (MiB)", color="tab:blue")
        ax.set_ylim(0, rss_top * 1.15)
        ax.grid(alpha=0.3)
        gauges = ax.twinx()
        highest = 10.0
        for name, color in colors.items():
            points = [(s[x_key], v) for s in samples if (v := s["gauges"].get(name)) is not None]
            if points:
                gx, gy = zip(*points, strict=True)
                gauges.plot(gx, gy, color=color, lw=1, label=name.removeprefix("wa_agentd_"))
                highest = max(highest, *gy)
        for bound, color in (
            (bounds["inbox"]["dedupe_max_ids"], "tab:purple"),
            (bounds["agentforce"]["max_sessions"], "tab:orange"),
            (cache["response_entries"], "tab:brown"),
            (cache["transcripts"], "tab:pink"),
            (cache["media_ids"], "tab:olive"),
        ):
            gauges.axhline(bound, color=color, ls=":", lw=1)
            highest = max(highest, bound)
        gauges.set_yscale("symlog", linthresh=10)
        gauges.set_ylim(0, highest * 3)
        gauges.set_ylabel("gauges (dotted: configured max)")
        handles = ax.get_legend_handles_labels()[0] + gauges.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="lower right", fontsize=8)
    by_users.set_title(
        f"wa-agentd soak: {summary['users']} distinct users, {summary['turns_per_s']} turns/s, "
        f"RSS peak {summary['rss_mib']['peak']} MiB"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000, help="distinct users, 1 turn each")
    parser.add_argument("--concurrency", type=int, default=200, help="users in flight at most")
    parser.add_argument("--voice", type=float, default=0.1, help="share of voice notes")
    parser.add_argument("--sample", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=OUT, help="directory for soak.json/.png")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait per answer")
    parser.add_argument("--tail", type=float, default=10.0, help="idle seconds sampled after")
    parser.add_argument("--bound-mib", type=float, default=DEFAULT_BOUND_MIB, help="RSS bound")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    opts = Options(
        users=args.users,
        concurrency=args.concurrency,
        voice_share=args.voice,
        sample_every=args.sample,
        timeout=args.timeout,
        tail=args.tail,
        bound_mib=args.bound_mib,
        seed=args.seed,
    )
    logs.setup("error")
    result = trio.run(run, opts)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, indent=1))
    plotted = plot(result, args.out / "soak.png")
    print(json.dumps(result["summary"], indent=2))
    print(f"wrote {args.out / 'soak.json'}" + (f" and {args.out / 'soak.png'}" if plotted else ""))


if __name__ == "__main__":
    main()
