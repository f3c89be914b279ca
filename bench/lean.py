"""``make bench``: what one turn costs the daemon, next to the floor of its stack, in one run.

    .venv/bin/python -m bench.lean [--out bench/out] [--only PHASE ...] [--quick]
                                   [--targets daemon-meta daemon-twilio floor]
                                   [--daemon-config SECTION.KEY=JSON ...] [--plan FIELD=JSON ...]

Three servers, one after the other, each as its own process: ``wa-agentd serve`` for Meta,
``wa-agentd serve`` for Twilio, and ``bench/floor.py`` (the bare quart-trio + hypercorn +
httpx endpoint that does the same three calls per turn). The simulators and the load
generator run in this process, so every figure of a server is its own. For each server:

- ``startup``: from the spawn to ``READY=1`` on ``$NOTIFY_SOCKET`` (what systemd waits for).
- ``idle``: its CPU use and RSS at rest.
- ``text`` / ``voice``: open-loop load at a fixed rate with upstreams answering at once;
  CPU ms per turn over a steady window (``/proc/<pid>/stat`` utime+stime), time to the text
  answer and to the voice note, the webhook ack.
- ``saturation``: a closed loop of ``saturation_users`` users: the turns per second it
  sustains and the share of a core it used doing so.
- ``open_loop``: webhooks at each rate of ``mix_rates`` (one in four a text message, the
  rest delivery statuses): ack p50/p99 from the scheduled send time.
- ``connections``: closed loops of N users on an agent that takes ``agent_latency`` s, a
  share of them voice notes; new TCP connections per turn to each upstream at steady state,
  counted at the simulators' accept (``daemon.sim.connections``).

Output in ``--out``: ``lean.json`` (everything, with the commit measured and whether the
tree was dirty), ``lean.md`` (the tables) and ``lean.png`` (latency CDFs; needs matplotlib,
``pip install -e '.[bench]'``). Not a test: nothing asserts. ``--daemon-config`` overrides
a config key of both daemons for a what-if (``--daemon-config http.max_keepalive=64``),
``--plan`` a knob of ``Plan`` (``--plan conn_users=[8,64] --plan conn_voice_share=0``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import trio

from daemon.observe import logs
from daemon.sim.audio import speak
from daemon.sim.connections import accepted
from daemon.sim.stack import AGENT_ID, PHONE_NUMBER_ID, SECRETS, DaemonProcess, Sims, open_sims
from daemon.sim.stack import spawn_daemon as spawn_wa_agentd

from . import http1, proc, report
from .loadgen import Tracker, Turn, Webhooks, closed_user, new_key, open_loop, question

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("text", "voice", "saturation", "open_loop", "connections")
MIB = 1024


@dataclass(frozen=True)
class Plan:
    """The run's knobs; the defaults take about four minutes on two cores."""

    text_rate: float = 40.0  # turns/s for the CPU-per-turn window (well under saturation)
    voice_rate: float = 8.0
    warmup: float = 1.5  # seconds of load before a window opens (sessions, pools)
    window: float = 5.0
    saturation_users: int = 64  # [lanes] max_concurrent_turns: the most that run at once
    saturation_window: float = 5.0
    mix_rates: tuple[int, ...] = (50, 100, 200, 400)
    mix_warmup: float = 1.0
    mix_window: float = 4.0
    agent_latency: float = 2.0
    conn_users: tuple[int, ...] = (8, 50, 64)
    floor_conn_users: tuple[int, ...] = (50,)
    conn_voice_share: float = 0.25
    conn_warmup: float = 3.0  # after a first round at zero latency (sessions started)
    conn_window: float = 4.5
    drain: float = 20.0  # seconds a phase waits for its last answers
    max_noise: float = 0.10  # share of the machine's CPU others may take during a window
    retries: int = 1  # further attempts of a phase whose window was noisier than that ...
    retry_until: float = 180.0  # ... while the run is younger than this (seconds)
    quiet_budget: float = 30.0  # seconds in all a run may wait for others to calm down


def open_loop_users(plan: Plan) -> int:
    """Users of the open-loop phases: as many as the text phase's warm-up reaches, so that
    every one has its agent session before a window opens (a first turn also starts one)."""
    return max(1, int(plan.text_rate * plan.warmup))


QUICK = Plan(
    warmup=1.0,
    window=2.0,
    saturation_window=2.0,
    mix_rates=(50, 200),
    mix_window=2.0,
    conn_users=(50,),
    conn_warmup=2.5,
    conn_window=3.0,
)


@dataclass
class Target:
    """A server under load: a daemon or the floor."""

    name: str
    provider: str
    process: DaemonProcess
    hooks: Webhooks
    pool: http1.Connections
    startup: dict[str, float]

    @property
    def pid(self) -> int:
        return self.process.process.pid


@dataclass(frozen=True)
class Snapshot:
    at: float
    server: proc.Usage
    own_cpu_s: float
    machine: tuple[int, int]  # (busy, total) jiffies of the whole machine
    connections: dict[str, int]


@dataclass
class Bench:
    plan: Plan
    sims: Sims
    tracker: Tracker
    workdir: Path
    daemon_config: dict[str, dict[str, Any]]
    # latency samples for the plot: panel -> target -> seconds
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    began: float = field(default_factory=time.monotonic)
    quiet_left: float = 0.0  # seconds still to spend waiting for a quiet machine (wait_quiet)

    def __post_init__(self) -> None:
        self.quiet_left = self.plan.quiet_budget

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def upstreams(self, target: Target) -> dict[str, Any]:
        """Each upstream's simulator app (its accept counter), as the target uses them."""
        whatsapp = self.sims.twilio.app if target.provider == "twilio" else self.sims.graph.app
        return {
            "whatsapp": whatsapp,
            "agentforce": self.sims.agentforce.app,
            "elevenlabs": self.sims.elevenlabs.app,
        }

    def snapshot(self, target: Target) -> Snapshot:
        return Snapshot(
            trio.current_time(),
            proc.usage(target.pid),
            proc.own_cpu_s(),
            machine_jiffies(),
            {name: accepted(app).connections for name, app in self.upstreams(target).items()},
        )

    def curve(self, panel: str, target: str, values: list[float]) -> None:
        self.curves.setdefault(panel, {})[target] = values


def machine_jiffies() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


# --------------------------------------------------------------------------- the servers


@asynccontextmanager
async def started(
    bench: Bench, name: str, provider: str, spawn: Callable[[dict[str, str]], Any]
) -> AsyncIterator[Target]:
    """Spawn a server with a notify socket; measure its start-up; keep its stderr drained."""
    async with proc.ready_socket() as notify, trio.open_nursery() as nursery:
        ready: list[float] = []
        is_ready = trio.Event()

        async def wait_ready() -> None:
            ready.append(await notify.ready())
            is_ready.set()

        nursery.start_soon(wait_ready)
        spawned = trio.current_time()
        try:
            async with (
                spawn({"NOTIFY_SOCKET": notify.path}) as process,
                trio.open_nursery() as reader,
            ):
                listening = trio.current_time()
                reader.start_soon(process.drain_log)
                with trio.fail_after(30):
                    await is_ready.wait()
                signed = process.signed_url or process.webhook_url
                hooks = Webhooks(provider, bench.sims, process.webhook_url, signed)
                host, _, port = hooks.hostport.partition(":")
                pool = http1.Connections(host, int(port))
                await pool.warm(16)
                startup = {
                    "ready_s": round(ready[0] - spawned, 3),
                    "listening_log_s": round(listening - spawned, 3),
                }
                try:
                    yield Target(name, provider, process, hooks, pool, startup)
                finally:
                    await pool.aclose()
                    # The stop reads the rest of the log itself (spawn_daemon).
                    reader.cancel_scope.cancel()
        finally:
            # Only once the server is stopped: cancelling earlier would cancel its clean-up
            # too, and the Cancelled would replace (and so hide) an error of the phases.
            nursery.cancel_scope.cancel()


def daemon_spawner(bench: Bench, provider: str) -> Callable[[dict[str, str]], Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"daemon-{provider}-", dir=bench.workdir))
    return lambda env: spawn_wa_agentd(
        bench.sims, workdir, provider=provider, env=env, **bench.daemon_config
    )


@asynccontextmanager
async def spawn_floor(bench: Bench, env: Mapping[str, str]) -> AsyncIterator[DaemonProcess]:
    """``python -m bench.floor`` on the simulators, until it listens (as spawn_daemon)."""
    workdir = Path(tempfile.mkdtemp(prefix="floor-", dir=bench.workdir))
    sims = bench.sims
    cfg = {
        "bind": "127.0.0.1:0",
        "webhook_path": "/webhook",
        "graph_url": f"{sims.graph.base_url}/v23.0",
        "phone_number_id": PHONE_NUMBER_ID,
        "token_url": f"{sims.agentforce.base_url}/services/oauth2/token",
        "api_url": f"{sims.agentforce.base_url}/einstein/ai-agent/v1",
        "instance_endpoint": "https://sim.my.salesforce.com",
        "agent_id": AGENT_ID,
    }
    path = workdir / "floor.json"
    path.write_text(json.dumps(cfg))
    child_env = {**os.environ, **SECRETS, **env, "PYTHONPATH": str(ROOT)}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "bench.floor", str(path)],
        env=child_env,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    floor = DaemonProcess(process, "", "", bytearray())
    try:
        with trio.fail_after(30):
            floor.url = await floor.read_log_until(r"listening on (http://\S+)")
        floor.webhook_url = floor.url + "/webhook"
        yield floor
    finally:
        process.terminate()
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


# --------------------------------------------------------------------------- the phases


async def idle(bench: Bench, target: Target, seconds: float = 2.0) -> dict[str, Any]:
    before = bench.snapshot(target)
    await trio.sleep(seconds)
    after = bench.snapshot(target)
    return {
        "cpu_util": round((after.server.cpu_s - before.server.cpu_s) / seconds, 4),
        "rss_mib": round(after.server.rss_kib / MIB, 1),
        "threads": after.server.threads,
    }


async def recordings(keys: list[int]) -> dict[int, bytes]:
    """Voice notes saying each key's question, recorded before the clock starts."""
    return await trio.to_thread.run_sync(lambda: {k: speak(question(k)) for k in keys})


def user_id(n: int) -> str:
    return f"1555{n:07d}"


async def steady(
    bench: Bench, target: Target, turns: list[Turn], rate: float, warmup: float, window: float
) -> tuple[list[Turn], Snapshot, Snapshot]:
    """Send ``turns`` open-loop at ``rate``; snapshots at the window's edges; wait for the
    answers (``plan.drain`` at most). Returns the turns scheduled inside the window."""
    bench.tracker.forget()
    for turn in turns:
        bench.tracker.add(turn)
    await target.pool.warm(16)
    start = trio.current_time() + 0.1
    async with trio.open_nursery() as nursery:
        nursery.start_soon(open_loop, target.pool.post, turns, rate, start)
        await trio.sleep_until(start + warmup)
        first = bench.snapshot(target)
        await trio.sleep_until(start + warmup + window)
        last = bench.snapshot(target)
    await drain(bench, turns)
    inside = [t for t in turns if first.at <= t.scheduled < last.at]
    return inside, first, last


async def drain(bench: Bench, turns: list[Turn]) -> None:
    with trio.move_on_after(bench.plan.drain):
        for turn in turns:
            if turn.kind != "status" and turn.status == 200:
                await turn.done.wait()


def window_figures(
    bench: Bench, target: Target, turns: list[Turn], first: Snapshot, last: Snapshot
) -> dict[str, Any]:
    """What the server spent and did between two snapshots."""
    elapsed = last.at - first.at
    finished = [t for t in bench.tracker.turns.values() if first.at <= t.finished_at < last.at]
    cpu_s = last.server.cpu_s - first.server.cpu_s
    messages = [t for t in turns if t.kind != "status"]
    figures: dict[str, Any] = {
        "window_s": round(elapsed, 2),
        "turns": len(finished),
        "turns_per_s": round(len(finished) / elapsed, 1),
        "cpu_ms_per_turn": round(cpu_s * 1000 / len(finished), 3) if finished else None,
        "cpu_util": round(cpu_s / elapsed, 3),
        "harness_cpu_util": round((last.own_cpu_s - first.own_cpu_s) / elapsed, 3),
        "other_cpu_share": round(others_share(first, last), 3),
        "webhooks": dict(Counter(str(t.status) for t in turns)),
        "ack": report.latency([t.acked - t.scheduled for t in turns]),
        "ack_messages": report.latency([t.acked - t.scheduled for t in messages]),
        "service": report.latency([t.acked - t.sent for t in turns]),
        "send_lag": report.latency([t.sent - t.scheduled for t in turns]),
        "new_connections_per_turn": {
            name: round((last.connections[name] - first.connections[name]) / len(finished), 3)
            if finished
            else None
            for name in last.connections
        },
        "rss_mib": round(last.server.rss_kib / MIB, 1),
        "unmatched_answers": dict(bench.tracker.unmatched),
    }
    texts = [t for t in messages if t.kind == "text"]
    voices = [t for t in messages if t.kind == "voice"]
    if texts:
        figures["time_to_text"] = report.latency([t.text_at - t.scheduled for t in texts])
    if voices:
        figures["time_to_text_of_voice"] = report.latency([t.text_at - t.scheduled for t in voices])
        figures["time_to_voice"] = report.latency([t.voice_at - t.scheduled for t in voices])
    return figures


Attempt = Callable[[], Awaitable[dict[str, Any]]]


async def quietest(bench: Bench, panel: str, target: Target, attempt: Attempt) -> dict[str, Any]:
    """Run ``attempt`` until the rest of the machine kept under ``plan.max_noise`` of its
    CPU during the window, at most ``1 + plan.retries`` times; keep the quietest run. (The
    machine is shared: another process's burst takes CPU from the server mid-window.) An
    attempt's ``_samples`` (seconds) become the panel's curve for this target."""
    runs: list[dict[str, Any]] = []
    for _ in range(1 + bench.plan.retries):
        await wait_quiet(bench, target)
        runs.append(await attempt())
        if _noise(runs[-1]) <= bench.plan.max_noise or bench.elapsed() > bench.plan.retry_until:
            break
    samples = [run.pop("_samples") for run in runs]
    best = min(range(len(runs)), key=lambda i: _noise(runs[i]))
    bench.curve(panel, target.name, samples[best])
    return {**runs[best], "noise_of_attempts": [run.get("other_cpu_share") for run in runs]}


async def wait_quiet(bench: Bench, target: Target) -> None:
    """Wait (from the run's ``plan.quiet_budget`` seconds in all) until other processes
    take under ``plan.max_noise`` of the machine for half a second."""
    while bench.quiet_left > 0:
        before = bench.snapshot(target)
        await trio.sleep(0.5)
        after = bench.snapshot(target)
        if others_share(before, after) <= bench.plan.max_noise:
            return
        bench.quiet_left -= 0.5


def others_share(first: Snapshot, last: Snapshot) -> float:
    """The share of the machine's CPU that processes other than the bench's took."""
    busy = last.machine[0] - first.machine[0]
    total = last.machine[1] - first.machine[1]
    ours_s = last.server.cpu_s - first.server.cpu_s + last.own_cpu_s - first.own_cpu_s
    ours = ours_s * proc.CLK_TCK
    return max(0.0, busy - ours) / total if total else 0.0


def _noise(run: dict[str, Any]) -> float:
    share = run.get("other_cpu_share")
    return 1.0 if share is None else float(share)


async def measured(
    bench: Bench,
    target: Target,
    turns: list[Turn],
    rate: float,
    sample: Callable[[Turn], float],
    warmup: float | None = None,
    window: float | None = None,
) -> dict[str, Any]:
    """One steady open-loop attempt: the window's figures, and ``sample`` of each turn
    scheduled in it (seconds) as ``_samples`` for the plot."""
    warmup = bench.plan.warmup if warmup is None else warmup
    window = bench.plan.window if window is None else window
    inside, first, last = await steady(bench, target, turns, rate, warmup, window)
    return {
        "rate": rate,
        **window_figures(bench, target, inside, first, last),
        "_samples": [sample(t) for t in inside],
    }


def _time_to_text(turn: Turn) -> float:
    return turn.text_at - turn.scheduled


def _time_to_voice(turn: Turn) -> float:
    return turn.voice_at - turn.scheduled


def _ack(turn: Turn) -> float:
    return turn.acked - turn.scheduled


async def text_phase(bench: Bench, target: Target) -> dict[str, Any]:
    plan = bench.plan

    async def attempt() -> dict[str, Any]:
        count = int(plan.text_rate * (plan.warmup + plan.window))
        users = open_loop_users(plan)
        turns = [target.hooks.text(user_id(i % users)) for i in range(count)]
        return await measured(bench, target, turns, plan.text_rate, _time_to_text)

    return await quietest(bench, "time to text", target, attempt)


async def voice_phase(bench: Bench, target: Target) -> dict[str, Any]:
    plan = bench.plan
    users = max(1, int(plan.voice_rate * plan.warmup))  # all with a session by the window

    async def attempt() -> dict[str, Any]:
        keys = [new_key() for _ in range(int(plan.voice_rate * (plan.warmup + plan.window)))]
        audio = await recordings(keys)
        turns = [
            target.hooks.voice(user_id(10_000 + i % users), key, audio[key])
            for i, key in enumerate(keys)
        ]
        return await measured(bench, target, turns, plan.voice_rate, _time_to_voice)

    return await quietest(bench, "time to voice note", target, attempt)


async def open_loop_phase(bench: Bench, target: Target) -> dict[str, Any]:
    plan = bench.plan
    results: dict[str, Any] = {}
    users = open_loop_users(plan)  # the text phase's: their sessions are started
    for rate in plan.mix_rates:

        async def attempt(rate: int = rate) -> dict[str, Any]:
            count = int(rate * (plan.mix_warmup + plan.mix_window))
            turns = [
                target.hooks.text(user_id((i // 4) % users))
                if i % 4 == 0
                else target.hooks.status(user_id(i % users))
                for i in range(count)
            ]
            return await measured(
                bench, target, turns, rate, _ack, plan.mix_warmup, plan.mix_window
            )

        results[str(rate)] = await quietest(bench, f"webhook ack at {rate}/s", target, attempt)
    return results


async def closed_phase(
    bench: Bench,
    target: Target,
    users: int,
    *,
    warmup: float,
    window: float,
    voice_share: float,
    stagger: float,
    first_user: int,
) -> dict[str, Any]:
    """``users`` closed-loop users (started over ``stagger`` s); figures over the window."""
    plan = bench.plan
    bench.tracker.forget()
    rounds = (warmup + window) / max(plan.agent_latency, 0.05) + 2
    voice_keys = [new_key() for _ in range(int(users * rounds * voice_share * 1.5) + 1)]
    audio = await recordings(voice_keys) if voice_share else {}
    spare = list(audio)
    rng = random.Random(users)
    await target.pool.warm(min(users, 64))
    sent: list[Turn] = []

    def maker(user: str) -> Callable[[], Turn]:
        def next_turn() -> Turn:
            if spare and rng.random() < voice_share:
                key = spare.pop()
                turn = target.hooks.voice(user, key, audio[key])
            else:
                turn = target.hooks.text(user)
            sent.append(turn)
            return turn

        return next_turn

    start = trio.current_time() + 0.1
    until = start + warmup + window
    async with trio.open_nursery() as nursery:
        for n in range(users):
            nursery.start_soon(
                partial_user,
                target,
                bench.tracker,
                maker(user_id(first_user + n)),
                start + stagger * n / users,
                until,
            )
        await trio.sleep_until(start + warmup)
        first = bench.snapshot(target)
        await trio.sleep_until(until)
        last = bench.snapshot(target)
    inside = [t for t in sent if first.at <= t.scheduled < last.at]
    return {"users": users, **window_figures(bench, target, inside, first, last)}


async def partial_user(
    target: Target, tracker: Tracker, next_turn: Callable[[], Turn], start: float, until: float
) -> None:
    await closed_user(target.pool.post, tracker, next_turn, start=start, until=until)


async def saturation_phase(bench: Bench, target: Target) -> dict[str, Any]:
    plan = bench.plan

    async def attempt() -> dict[str, Any]:
        phase = await closed_phase(
            bench,
            target,
            plan.saturation_users,
            warmup=plan.warmup,
            window=plan.saturation_window,
            voice_share=0.0,
            stagger=0.0,
            first_user=30_000,
        )
        phase["bound_by"] = "server" if phase["cpu_util"] >= 0.9 else "harness or pools"
        return {**phase, "_samples": []}

    return await quietest(bench, "saturation", target, attempt)


async def connections_phase(bench: Bench, target: Target) -> dict[str, Any]:
    plan = bench.plan
    levels = plan.floor_conn_users if target.name == "floor" else plan.conn_users
    voice_share = 0.0 if target.name == "floor" else plan.conn_voice_share
    results: dict[str, Any] = {}
    try:
        for users in levels:
            # Steady state: every user already has an agent session (the first turn also
            # starts one, and would wait twice as long), so one quick round goes first.
            bench.sims.agentforce.faults.latency = (0.0, 0.0)
            await closed_phase(
                bench,
                target,
                users,
                warmup=0.0,
                window=0.5,
                voice_share=0.0,
                stagger=0.0,
                first_user=40_000,
            )
            bench.sims.agentforce.faults.latency = (plan.agent_latency, plan.agent_latency)
            phase = await closed_phase(
                bench,
                target,
                users,
                warmup=plan.conn_warmup,
                window=plan.conn_window,
                voice_share=voice_share,
                stagger=plan.agent_latency,
                first_user=40_000,
            )
            bench.curve(
                f"time to text, agent {plan.agent_latency:g} s, {users} users",
                target.name,
                [t.text_at - t.scheduled for t in bench.tracker.turns.values()],
            )
            results[str(users)] = phase
    finally:
        bench.sims.agentforce.faults.latency = (0.0, 0.0)
    return results


PHASE_RUNNERS: dict[str, Callable[[Bench, Target], Any]] = {
    "text": text_phase,
    "voice": voice_phase,
    "saturation": saturation_phase,
    "open_loop": open_loop_phase,
    "connections": connections_phase,
}
# What each server goes through: the floor has no voice; Twilio's webhook path is measured
# for what differs (CPU per turn, connections), Meta's for everything.
TARGET_PHASES = {
    "daemon-meta": PHASES,
    "daemon-twilio": ("text", "voice", "connections"),
    "floor": ("text", "saturation", "open_loop", "connections"),
}


async def measure(bench: Bench, target: Target, phases: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"startup": target.startup}
    out["idle"] = await idle(bench, target)
    for phase in phases:
        if phase not in TARGET_PHASES[target.name]:
            continue
        began = time.monotonic()
        out[phase] = await PHASE_RUNNERS[phase](bench, target)
        print(f"  {target.name} {phase}: {time.monotonic() - began:.0f} s", file=sys.stderr)
    end = proc.usage(target.pid)
    out["memory"] = {
        "idle_rss_mib": out["idle"]["rss_mib"],
        "end_rss_mib": round(end.rss_kib / MIB, 1),
        "peak_rss_mib": round(end.hwm_kib / MIB, 1),
        "threads_end": end.threads,
    }
    out["log"] = log_summary(bytes(target.process.log))
    return out


PROBLEM = re.compile(rb" (WARNING|ERROR|CRITICAL) +([\w.]+):")
OUTCOME = re.compile(rb"outcome=(\w+)")


def log_summary(log: bytes) -> dict[str, Any]:
    """Turn outcomes and warnings per logger in a server's stderr: a phase whose turns
    failed says so here (the floor logs "floor: turn failed")."""
    problems: Counter[str] = Counter()
    for line in log.splitlines():
        if match := PROBLEM.search(line):
            problems[b" ".join(match.groups()).decode()] += 1
        elif line.startswith(b"floor: turn failed"):
            problems["floor turn failed"] += 1
    outcomes = Counter(m.decode() for m in OUTCOME.findall(log))
    return {"outcomes": dict(outcomes), "problems": dict(problems)}


# --------------------------------------------------------------------------- the run


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def dirty() -> bool:
    """Whether the measured code differs from the commit (the results themselves aside)."""
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")
    return bool(changed)


def interpreter_startup() -> dict[str, float]:
    """What any Python process of this venv pays before the daemon's own start-up: a bare
    interpreter, and importing the daemon's modules (best of three each)."""

    def best(code: str) -> float:
        times = []
        for _ in range(3):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
            times.append(time.perf_counter() - began)
        return round(min(times), 3)

    return {
        "python_bare_s": best("pass"),
        "python_import_daemon_s": best("import daemon.__main__, daemon.runtime"),
    }


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    sections: dict[str, dict[str, Any]] = {}
    for item in items:
        name, _, value = item.partition("=")
        section, _, key = name.partition(".")
        if not key or not value:
            raise SystemExit(f"--daemon-config wants SECTION.KEY=JSON, got {item!r}")
        sections.setdefault(section, {})[key] = json.loads(value)
    return sections


async def run(
    plan: Plan, phases: tuple[str, ...], targets: tuple[str, ...], daemon_config: dict[str, Any]
) -> dict[str, Any]:
    began = time.monotonic()
    machine_start = machine_jiffies()
    own_start = proc.own_cpu_s()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-lean-") as scratch:
        async with open_sims() as sims, trio.open_nursery() as background:
            tracker = Tracker("meta", sims)
            bench = Bench(plan, sims, tracker, Path(scratch), daemon_config)
            background.start_soon(tracker.run)
            for name in targets:
                provider = "twilio" if name == "daemon-twilio" else "meta"
                tracker.provider = provider
                spawn = (
                    (lambda env: spawn_floor(bench, env))
                    if name == "floor"
                    else daemon_spawner(bench, provider)
                )
                print(f"{name}:", file=sys.stderr)
                try:
                    async with started(bench, name, provider, spawn) as target:
                        results[name] = await measure(bench, target, phases)
                except Exception as exc:  # one server failing still leaves the others' figures
                    print(f"  {name} failed: {exc!r}", file=sys.stderr)
                    results[name] = {"error": repr(exc)}
            background.cancel_scope.cancel()
            curves = bench.curves
            quiet_left = bench.quiet_left
    machine_end = machine_jiffies()
    ours = (proc.own_cpu_s() - own_start) * proc.CLK_TCK  # the servers: ended children
    busy, total = (machine_end[0] - machine_start[0], machine_end[1] - machine_start[1])
    return {
        "run": {
            "commit": git("rev-parse", "HEAD"),
            "dirty": dirty(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "duration_s": round(time.monotonic() - began, 1),
            "other_cpu_share": round(max(0.0, busy - ours) / total, 3) if total else None,
            "quiet_wait_s": round(plan.quiet_budget - quiet_left, 1),
            "versions": versions(),
            "interpreter": interpreter_startup(),
        },
        "plan": asdict(plan),
        "daemon_config": daemon_config,
        "targets": results,
        "_curves": curves,
    }


def versions() -> dict[str, str]:
    from importlib.metadata import version

    names = ("trio", "hypercorn", "quart", "quart-trio", "httpx", "httpcore", "h11")
    return {name: version(name) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--only", nargs="+", choices=PHASES, help="run these phases only")
    parser.add_argument("--targets", nargs="+", default=["daemon-meta", "daemon-twilio", "floor"])
    parser.add_argument("--quick", action="store_true", help="short windows (a smoke run)")
    parser.add_argument("--daemon-config", action="append", default=[], metavar="S.K=JSON")
    parser.add_argument(
        "--plan", action="append", default=[], metavar="FIELD=JSON", help="change a Plan knob"
    )
    args = parser.parse_args()
    logs.setup("error")
    plan = QUICK if args.quick else Plan()
    for item in args.plan:
        name, _, value = item.partition("=")
        loaded: Any = json.loads(value)
        changes: dict[str, Any] = {name: tuple(loaded) if isinstance(loaded, list) else loaded}
        plan = replace(plan, **changes)
    phases = tuple(args.only or PHASES)
    result = trio.run(run, plan, phases, tuple(args.targets), parse_overrides(args.daemon_config))
    curves = result.pop("_curves")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lean.json").write_text(json.dumps(result, indent=2) + "\n")
    table = report.markdown(result)
    (args.out / "lean.md").write_text(table)
    if not report.plot(curves, args.out / "lean.png"):
        print("no matplotlib: lean.png not drawn (pip install -e '.[bench]')", file=sys.stderr)
    print(table)


if __name__ == "__main__":
    main()
