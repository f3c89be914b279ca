"""Where a server's CPU goes per turn: ``wa-agentd serve`` (or the floor) under load, by py-spy.

    .venv/bin/python -m bench.profile [--out bench/out] [--target daemon-meta]
                                      [--loads text voice saturation] [--seconds 20]
                                      [--rate 250] [--daemon-config SECTION.KEY=JSON ...]

The server runs as its own process against the simulators (as in ``bench.lean``); one text
phase first gives every user an agent session. Then, for each load (``text``: text turns
open-loop at ``TEXT_RATE``/s; ``voice``: voice notes open-loop at ``VOICE_RATE``/s;
``saturation``: a closed loop of 64 users), after a 2 s warm-up, ``py-spy record -p PID
--nonblocking --threads`` samples it for ``--seconds`` (``--nonblocking``: the server is
never paused, at the price of some torn samples, which py-spy counts as errors), while
``/proc/<pid>/task/*/stat`` gives what each thread really used.

Output in ``--out``: ``profile-<load>.raw.gz`` (py-spy's collapsed stacks, "thread (tid):
name;frame;frame count" per line, for flamegraph.pl or speedscope), ``profile.json`` and
``profile.md``: per load, in % of the server's CPU,

- *inclusive* for the suspects the issue named (httpx with what runs beneath it, httpcore,
  its pool planning, ``daemon/http_guard.py``, hypercorn, Quart, SQLite on the worker
  threads, both sides of the thread hops, logging, metrics, JSON), categories overlapping;
- *self* by package of the frame on top (where the CPU really was), and the top frames.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from daemon.observe import logs
from daemon.sim.stack import open_sims

from . import lean, loadgen, proc
from .loadgen import Tracker, Turn, open_loop

TEXT_RATE = 60.0
VOICE_RATE = 10.0
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+):\d+\)$")

PLAN = "_assign_requests_to_connections"
LOOP, WORKERS = "event loop", "worker threads"
Rules = tuple[tuple[str, str], ...]  # (file prefix, function name or "" for any)

# Inclusive categories: a sample counts for one when a frame matches its rules (and it was
# taken on the named kind of thread, if one is named).
SUSPECTS: dict[str, tuple[Rules, str | None]] = {
    "httpx and beneath (httpcore, h11, sockets)": ((("httpx/", ""),), None),
    "httpcore": ((("httpcore/", ""),), None),
    "httpcore pool planning (_assign_requests_to_connections)": (
        (("httpcore/_async/connection_pool.py", "AsyncConnectionPool." + PLAN),),
        None,
    ),
    "daemon/http_guard.py (assign_without_orphans)": ((("daemon/http_guard.py", ""),), None),
    "hypercorn + h11 (server side)": ((("hypercorn/", ""),), None),
    "Quart + werkzeug": ((("quart/", ""), ("quart_trio/", ""), ("werkzeug/", "")), None),
    "daemon/web.py (the webhook route)": ((("daemon/web.py", ""),), None),
    "thread hops, event-loop side (trio.to_thread)": (
        (("trio/_threads.py", ""), ("trio/_core/_thread_cache.py", "")),
        LOOP,
    ),
    "SQLite on the worker threads (store.py, sqlite3)": (
        (("daemon/state/sqlite/", ""), ("sqlite3/", "")),
        WORKERS,
    ),
    "logging": ((("logging/", ""), ("daemon/observe/logs.py", "")), None),
    "metrics (prometheus_client, observe/metrics.py)": (
        (("prometheus_client/", ""), ("daemon/observe/metrics.py", "")),
        None,
    ),
    "json": ((("json/", ""),), None),
}
# Where a thread waits: py-spy (0.4, Python 3.11) does not always see these as idle, and
# counts a waiting worker thread or the loop blocked in epoll as running. Samples whose top
# frame is one of them are left out; what the threads really used comes from /proc.
WAITS = {
    ("EpollIOManager.get_events", "trio/_core/_io_epoll.py"),
    ("WorkerThread._work", "trio/_core/_thread_cache.py"),
}


@dataclass(frozen=True)
class Sample:
    thread: str
    frames: tuple[tuple[str, str], ...]  # (function, file), outermost first
    count: int


def parse(lines: Iterable[str]) -> list[Sample]:
    samples = []
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        head, *rest = stack.split(";")
        thread = head.split(": ", 1)[1] if ": " in head else head
        frames = []
        for text in rest:
            match = FRAME.match(text)
            frames.append((match["func"], match["file"]) if match else (text, ""))
        samples.append(Sample(thread, tuple(frames), int(count)))
    return samples


def package(file: str) -> str:
    """The package a frame's file belongs to: ``httpx``, ``daemon/turn.py``, ``<stdlib>``."""
    if file.startswith("daemon/"):
        return file
    if "/" in file:
        return file.split("/", 1)[0]
    return "<stdlib or builtin>" if file else "<native>"


def _matches(frame: tuple[str, str], rules: Rules) -> bool:
    func, file = frame
    return any(file.startswith(prefix) and (not name or func == name) for prefix, name in rules)


def summarise(
    samples: list[Sample], cpu_split: dict[str, float] | None = None, top: int = 25
) -> dict[str, Any]:
    """Shares in % of the process's CPU. Each kind of thread (the event loop, the workers)
    weighs as much as /proc says it used (``cpu_split``, shares summing to 1), spread over
    its samples off the wait points; without ``cpu_split``, every such sample weighs the
    same."""

    def group(sample: Sample) -> str:
        return LOOP if sample.thread == "MainThread" else WORKERS

    waits: Counter[str] = Counter()
    busy: Counter[str] = Counter()
    for sample in samples:
        waiting = bool(sample.frames) and sample.frames[-1] in WAITS
        (waits if waiting else busy)[group(sample)] += sample.count
    total_busy = sum(busy.values())
    if not total_busy:
        return {"samples": sum(s.count for s in samples), "busy_samples": 0}

    def weight(kind: str) -> float:
        if cpu_split is None:
            return 100 / total_busy
        return 100 * cpu_split.get(kind, 0.0) / busy[kind] if busy[kind] else 0.0

    suspects: defaultdict[str, float] = defaultdict(float)
    selfs: defaultdict[str, float] = defaultdict(float)
    top_self: defaultdict[str, float] = defaultdict(float)
    inclusive: defaultdict[str, float] = defaultdict(float)
    for sample in samples:
        if sample.frames and sample.frames[-1] in WAITS:
            continue
        kind = group(sample)
        w = weight(kind) * sample.count
        for name, (rules, only) in SUSPECTS.items():
            if only in (None, kind) and any(_matches(f, rules) for f in sample.frames):
                suspects[name] += w
        if kind == WORKERS and not any(_matches(f, SUSPECTS[_SQLITE][0]) for f in sample.frames):
            suspects["thread hops, worker side (hand-back, wake-ups)"] += w
        if sample.frames:
            func, file = sample.frames[-1]
            selfs[package(file)] += w
            top_self[f"{func} ({file})"] += w
        for func, file in set(sample.frames):
            inclusive[f"{func} ({file})"] += w

    def rounded(shares: dict[str, float], n: int) -> dict[str, float]:
        ordered = sorted(shares.items(), key=lambda kv: -kv[1])[:n]
        return {k: round(v, 1) for k, v in ordered}

    return {
        "samples": sum(s.count for s in samples),
        "busy_samples": dict(busy),
        "wait_point_samples": dict(waits),
        "cpu_split": {k: round(100 * v, 1) for k, v in (cpu_split or {}).items()},
        "suspects_inclusive": {k: round(suspects[k], 1) for k in suspects_order(suspects)},
        "self_by_package": rounded(selfs, top),
        "top_self_frames": rounded(top_self, top),
        "top_inclusive_frames": {
            k: v
            for k, v in rounded(inclusive, top * 3).items()
            if "trio/_core/_run.py" not in k and "runpy" not in k
        },
    }


_SQLITE = "SQLite on the worker threads (store.py, sqlite3)"


def suspects_order(suspects: dict[str, float]) -> list[str]:
    return [*SUSPECTS, *(k for k in suspects if k not in SUSPECTS)]


CPU_NOTE = (
    "Shares are % of the server's CPU time: /proc gives each thread's CPU over the window "
    "(event loop vs trio's worker threads), py-spy's samples of each kind of thread spread "
    "it over the frames. A thread waiting for the GIL looks busy to py-spy (its frame is "
    "where it stopped: a lock release, a socket call): the `--gil` profile tells them apart."
)
GIL_NOTE = (
    "`--gil`: only the thread holding the GIL is sampled, so shares are % of the time "
    "Python code ran (any thread), without the waits for the GIL; C code that releases the "
    "GIL (SQLite's queries, socket system calls, epoll) is not in them."
)


def markdown(result: dict[str, Any]) -> str:
    run = result["run"]
    lines = [
        "# bench.profile",
        "",
        f"`{result['target']}` at commit `{run['commit']}`"
        f"{' (dirty tree)' if run['dirty'] else ''}, {run['date']}; "
        f"py-spy {run['py_spy']} at {run['rate']} Hz, {run['mode']} --threads, "
        f"{run['seconds']} s per load.",
        "",
        GIL_NOTE if "--gil" in run["mode"] else CPU_NOTE,
        "",
        "Inclusive: the share with that frame on the stack (categories overlap). Self: the "
        "frame on top. Samples whose top frame is a wait point (`EpollIOManager.get_events`, "
        "`WorkerThread._work`: py-spy counts some waiting threads as running) are left out.",
        "",
    ]
    for load, data in result["loads"].items():
        s = data["summary"]
        lines += [
            f"## {load}: {data['describe']}",
            "",
            f"{s['samples']} samples ({data['errors']} torn, "
            f"{sum(s['wait_point_samples'].values())} at wait points); {data['turns_per_s']} "
            f"turns/s, CPU {data['cpu_util']:.2f} of a core, {data['cpu_ms_per_turn']} ms per turn "
            f"(others used {data['other_cpu_share']} of the machine); CPU by thread: "
            + ", ".join(f"{k} {round(100 * v, 1)} %" for k, v in data["cpu_split"].items()),
            "",
            "| inclusive: CPU with a frame in … on the stack | % |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v} |" for k, v in s["suspects_inclusive"].items()]
        lines += ["", "| self: package of the frame on top | % |", "|---|---|"]
        lines += [f"| `{k}` | {v} |" for k, v in list(s["self_by_package"].items())[:15]]
        lines += ["", "| top frames (self) | % |", "|---|---|"]
        lines += [f"| `{k}` | {v} |" for k, v in list(s["top_self_frames"].items())[:20]]
        lines += ["", "| top frames (inclusive, scheduler frames left out) | % |", "|---|---|"]
        lines += [f"| `{k}` | {v} |" for k, v in list(s["top_inclusive_frames"].items())[:40]]
        lines.append("")
    return "\n".join(lines)


def cpu_split(
    pid: int, before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """The event loop's and the worker threads' shares of the CPU used between two readings
    (a thread that ended in between is missing from ``after``: its last seconds are lost)."""
    used: defaultdict[str, float] = defaultdict(float)
    for tid, (_, cpu) in after.items():
        used[LOOP if tid == pid else WORKERS] += cpu - before.get(tid, ("", 0.0))[1]
    total = sum(used.values())
    return {k: v / total for k, v in used.items()} if total else {}


Drive = Callable[[float, float], Awaitable[list[Turn]]]  # (start, until) -> the turns sent


async def profile_load(
    bench: lean.Bench,
    target: lean.Target,
    drive: Drive,
    seconds: float,
    rate: int,
    raw: Path,
    gil: bool,
) -> dict[str, Any]:
    """Run ``drive`` for a warm-up plus ``seconds``; py-spy samples the server meanwhile."""
    bench.tracker.forget()
    await target.pool.warm(16)
    start = trio.current_time() + 0.2
    warmup = 2.0
    sent: list[Turn] = []

    async def load() -> None:
        sent.extend(await drive(start, start + warmup + seconds + 0.5))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(load)
        await trio.sleep_until(start + warmup)
        first = bench.snapshot(target)
        threads_before = proc.thread_cpu(target.pid)
        spy = await trio.run_process(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "-p",
                str(target.pid),
                "--nonblocking",
                *(["--gil"] if gil else []),
                "--threads",
                "--rate",
                str(rate),
                "--duration",
                str(int(seconds)),
                "--format",
                "raw",
                "-o",
                str(raw),
            ],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        threads_after = proc.thread_cpu(target.pid)
        last = bench.snapshot(target)
    await lean.drain(bench, sent)
    inside = [t for t in sent if first.at <= t.scheduled < last.at]
    figures = lean.window_figures(bench, target, inside, first, last)
    errors = re.search(rb"Errors: (\d+)", spy.stdout + spy.stderr)
    return {
        "cpu_util": figures["cpu_util"],
        "cpu_ms_per_turn": figures["cpu_ms_per_turn"],
        "turns_per_s": figures["turns_per_s"],
        "other_cpu_share": figures["other_cpu_share"],
        "cpu_split": cpu_split(target.pid, threads_before, threads_after),
        "errors": int(errors.group(1)) if errors else None,
        "py_spy_exit": spy.returncode,
    }


def loads(bench: lean.Bench, target: lean.Target) -> dict[str, tuple[str, Drive]]:
    """The loads to profile under: open loops of text and of voice notes, and saturation."""

    async def text(start: float, until: float) -> list[Turn]:
        users = lean.open_loop_users(bench.plan)
        count = int(TEXT_RATE * (until - start))
        turns = [
            bench.tracker.add(target.hooks.text(lean.user_id(i % users))) for i in range(count)
        ]
        await open_loop(target.pool.post, turns, TEXT_RATE, start)
        return turns

    async def voice(start: float, until: float) -> list[Turn]:
        keys = [loadgen.new_key() for _ in range(int(VOICE_RATE * (until - start)))]
        audio = await lean.recordings(keys)
        users = max(1, int(VOICE_RATE * 2))
        turns = [
            bench.tracker.add(target.hooks.voice(lean.user_id(10_000 + i % users), k, audio[k]))
            for i, k in enumerate(keys)
        ]
        await open_loop(target.pool.post, turns, VOICE_RATE, start)
        return turns

    async def saturation(start: float, until: float) -> list[Turn]:
        sent: list[Turn] = []

        def maker(user: str) -> Callable[[], Turn]:
            def next_turn() -> Turn:
                sent.append(target.hooks.text(user))
                return sent[-1]

            return next_turn

        async with trio.open_nursery() as nursery:
            for n in range(bench.plan.saturation_users):
                nursery.start_soon(
                    lean.partial_user,
                    target,
                    bench.tracker,
                    maker(lean.user_id(30_000 + n)),
                    start,
                    until,
                )
        return sent

    return {
        "text": (f"text turns, open loop at {TEXT_RATE:g}/s", text),
        "voice": (f"voice notes, open loop at {VOICE_RATE:g}/s", voice),
        "saturation": (
            f"text turns, closed loop of {bench.plan.saturation_users} users (saturation)",
            saturation,
        ),
    }


async def run(
    out: Path,
    target_name: str,
    chosen: list[str],
    seconds: float,
    sample_rate: int,
    config: dict[str, Any],
    gil: bool,
) -> dict[str, Any]:
    result: dict[str, Any] = {"target": target_name, "loads": {}}
    provider = "twilio" if target_name == "daemon-twilio" else "meta"
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as scratch:
        async with open_sims() as sims, trio.open_nursery() as background:
            tracker = Tracker(provider, sims)
            bench = lean.Bench(lean.Plan(), sims, tracker, Path(scratch), config)
            background.start_soon(tracker.run)
            spawn = (
                (lambda env: lean.spawn_floor(bench, env))
                if target_name == "floor"
                else lean.daemon_spawner(bench, provider)
            )
            async with lean.started(bench, target_name, provider, spawn) as target:
                # Every user of the loads gets its agent session first (not profiled).
                await lean.text_phase(bench, target)
                for name, (describe, drive) in loads(bench, target).items():
                    if name not in chosen:
                        continue
                    raw = Path(scratch) / f"{name}.raw"
                    got = await profile_load(bench, target, drive, seconds, sample_rate, raw, gil)
                    text = raw.read_text() if raw.exists() else ""
                    stem = f"profile{'-gil' if gil else ''}-{name}"
                    (out / f"{stem}.raw.gz").write_bytes(gzip.compress(text.encode()))
                    # With --gil only the thread holding the GIL is sampled: each sample is
                    # Python running, whichever thread; no split by thread to weigh with.
                    summary = summarise(parse(text.splitlines()), None if gil else got["cpu_split"])
                    result["loads"][name] = {"describe": describe, **got, "summary": summary}
            background.cancel_scope.cancel()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=lean.ROOT / "bench" / "out")
    parser.add_argument("--target", default="daemon-meta", choices=lean.TARGET_PHASES)
    parser.add_argument("--loads", nargs="+", default=["text", "voice", "saturation"])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument(
        "--gil", action="store_true", help="sample only the thread holding the GIL (py-spy --gil)"
    )
    parser.add_argument("--daemon-config", action="append", default=[], metavar="S.K=JSON")
    args = parser.parse_args()
    logs.setup("error")
    args.out.mkdir(parents=True, exist_ok=True)
    config = lean.parse_overrides(args.daemon_config)
    result = trio.run(
        run, args.out, args.target, args.loads, args.seconds, args.rate, config, args.gil
    )
    from importlib.metadata import version

    result["run"] = {
        "commit": lean.git("rev-parse", "HEAD"),
        "dirty": lean.dirty(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "py_spy": version("py-spy"),
        "mode": "--nonblocking --gil" if args.gil else "--nonblocking",
        "rate": args.rate,
        "seconds": args.seconds,
        "daemon_config": config,
    }
    stem = "profile-gil" if args.gil else "profile"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / f"{stem}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
