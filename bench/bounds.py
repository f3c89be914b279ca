"""What each bounded map of the daemon holds when it is full, at the shipped config.toml bounds.

    .venv/bin/python -m bench.bounds [--config config.toml] [--out bench/out]

The README's memory bound is the sum of these plus the interpreter's own baseline (the soak's
idle RSS) plus what the turns in flight hold. Each map is built with the daemon's own class,
filled to its configured bound with entries of a realistic size (stated next to each), and
measured with tracemalloc: the Python heap it added, keys, values and container overhead
included. Entry sizes are assumptions, not measurements of traffic; they are printed so that
an operator with longer answers or voice notes can scale the numbers.

Output: a table on stdout and ``<out>/bounds.json``. Not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import gc
import json
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing

from daemon import config
from daemon.agentforce.sessions import AgentSession, SessionStore
from daemon.cache.audio import AudioCache
from daemon.cache.media_ids import MediaIds
from daemon.cache.response import PendingContext, ResponseCache
from daemon.cache.stt import TranscriptCache
from daemon.channels.twilio.public_media import PublicMedia
from daemon.channels.twilio.settings import TwilioConfig
from daemon.config import Settings
from daemon.lanes import Lanes
from daemon.language_memory import LanguageMemory
from daemon.limits import Limit, MemoryUserLimits
from daemon.model import AgentMessage, AgentReply, Inbound, Kind, Transcript, User
from daemon.state.memory import MemoryDeferred

OUT = Path(__file__).resolve().parent / "out"
MIB = 1024 * 1024

# Realistic entry sizes (assumptions; see the module docstring).
ANSWER_CHARS = 1000  # an agent answer: a few sentences, some Markdown
QUESTION_CHARS = 80
TRANSCRIPT_CHARS = 120  # a 10-20 s voice note
VOICE_NOTE_BYTES = 40_000  # a spoken answer, ~10 s of Opus at 32 kbit/s
MESSAGE_TEXT_CHARS = 200  # an inbound text waiting in a lane


def measure(build: Callable[[], object]) -> tuple[int, object]:
    """Heap bytes ``build()`` leaves allocated (its result kept alive until measured)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before, kept


def text(n: int, chars: int) -> str:
    """A distinct text of ``chars`` characters (distinct strings: no sharing flatters)."""
    head = f"{n:08d} "
    return head + "x" * (chars - len(head))


def sessions(s: Settings) -> object:
    store = SessionStore(s.agentforce.max_sessions, s.agentforce.session_idle, clock=lambda: 0.0)
    for n in range(s.agentforce.max_sessions):
        store.put(f"1555{n:07d}", AgentSession(str(uuid.uuid4()), 3, 0.0, 0.0))
    return store


def pending(s: Settings) -> object:
    context = PendingContext(
        max_users=s.agentforce.max_sessions, ttl=s.agentforce.session_idle, clock=lambda: 0.0
    )
    for n in range(s.agentforce.max_sessions):
        context.remember(f"u:{n:010x}", text(n, QUESTION_CHARS), text(n, ANSWER_CHARS))
    return context


def responses(s: Settings) -> object:
    # Three maps of response_entries each: confirmed answers, candidates waiting for their
    # confirmations, and keys found volatile. All three full is the worst case.
    cache = ResponseCache(
        max_entries=s.cache.response_entries, default_ttl=3600.0, clock=lambda: 0.0
    )
    for n in range(s.cache.response_entries):
        reply = AgentReply((AgentMessage("Inform", text(n, ANSWER_CHARS)),))
        cache.record(f"answer {text(n, QUESTION_CHARS)}", "u:a", reply, trusted=True)
        cache.record(f"candidate {text(n, QUESTION_CHARS)}", "u:a", reply)
        # Two users, two answers: the key is marked volatile (answers differ per user).
        other = AgentReply((AgentMessage("Inform", text(n + 1, ANSWER_CHARS)),))
        cache.record(f"volatile {text(n, QUESTION_CHARS)}", "u:a", reply)
        cache.record(f"volatile {text(n, QUESTION_CHARS)}", "u:b", other)
    return cache


def transcripts(s: Settings) -> object:
    cache = TranscriptCache(
        max_entries=s.cache.transcripts, ttl=s.cache.transcript_ttl, clock=lambda: 0.0
    )
    for n in range(s.cache.transcripts):
        cache.put(f"{n:064x}", Transcript(text(n, TRANSCRIPT_CHARS), "en"))
    return cache


def media_ids(s: Settings) -> object:
    cache = MediaIds(max_entries=s.cache.media_ids, ttl=s.cache.media_id_ttl, clock=lambda: 0.0)
    for n in range(s.cache.media_ids):
        cache.put(f"{n:064x}", "106540352242922", f"{1_000_000_000_000_000 + n}")
    return cache


def audio_memory(s: Settings) -> object:
    cache = AudioCache(max_bytes=s.cache.audio_memory_bytes)

    async def fill() -> None:
        for n in range(s.cache.audio_memory_bytes // VOICE_NOTE_BYTES + 10):
            await cache.put(f"{n:064x}", b"OggS" + bytes(VOICE_NOTE_BYTES - 4))

    trio.run(fill)
    return cache


def audio_disk_index(s: Settings) -> object:
    # The disk tier's bytes are on disk; its index (key -> size) is in memory.
    index = {f"{n:064x}": VOICE_NOTE_BYTES for n in range(s.cache.audio_disk_bytes // 40_000)}
    return dict(sorted(index.items()))


def public_media(s: Settings) -> object:
    twilio = s.section(TwilioConfig)
    media = PublicMedia(
        ttl=twilio.media_ttl, max_bytes=twilio.media_memory_bytes, clock=lambda: 0.0
    )
    for _ in range(twilio.media_memory_bytes // VOICE_NOTE_BYTES + 10):
        media.put(b"OggS" + bytes(VOICE_NOTE_BYTES - 4), "audio/ogg")
    return media


def remembered_users(s: Settings) -> object:
    # The two per-user maps of [lanes] remembered_users, both full: each user's last
    # language (the turn's), and one deferred message id each (the lanes'; the worst case:
    # WhatsApp refusing sends to every one of them).
    n_users, ttl = s.lanes.remembered_users, s.lanes.remembered_ttl
    languages = LanguageMemory(max_users=n_users, ttl=ttl, clock=lambda: 0.0)
    deferred = MemoryDeferred(max_users=n_users)

    async def fill() -> None:
        for n in range(n_users):
            user = f"1555{n:07d}"
            await languages.remember(user, "ar")
            await deferred.add(user, f"wamid.{n:032x}")

    trio.run(fill)
    return languages, deferred


def user_limits(s: Settings) -> object:
    # Every user seen today with every count in use: a bucket, turns, both daily allowances
    # spent from, and one notice given (the worst case of one record).
    limits = MemoryUserLimits(s.limits, clock=lambda: 0.0, wall=lambda: 1_800_000_000.0)

    async def fill() -> None:
        for n in range(s.limits.users):
            user = f"1555{n:07d}"
            await limits.admit(user)
            await limits.spend(user, Limit.DAILY_STT_SECONDS, 12.5)
            await limits.spend(user, Limit.DAILY_TTS_CHARACTERS, 400)
            await limits.first_notice(user, "budget_agent")

    trio.run(fill)
    return limits


def lanes(s: Settings) -> object:
    """max_lanes lanes (idle, within idle_seconds of their last message), then queue_size
    messages waiting behind max_concurrent_turns turns that hang: the lanes' worst case.
    Measured inside trio: each lane is a task and a channel."""
    result: dict[str, int] = {}
    cfg = s.lanes

    async def main() -> None:
        hang = trio.Event()
        release = trio.Event()

        async def handler(message: Inbound) -> None:
            if hang.is_set():
                await release.wait()

        def message(n: int, user: int) -> Inbound:
            who = User(f"1555{user:07d}", f"+1555{user:07d}")
            return Inbound(f"wamid.{n:032x}", who, Kind.TEXT, text=text(n, MESSAGE_TEXT_CHARS))

        async with Lanes.open(
            handler,
            max_lanes=cfg.max_lanes,
            max_pending=cfg.max_pending,
            queue_size=s.server.queue_size,
            idle_seconds=cfg.idle_seconds,
            max_concurrent_turns=cfg.max_concurrent_turns,
        ) as all_lanes:
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            for n in range(cfg.max_lanes):  # every lane once: they stay, idle
                all_lanes.submit(message(n, n))
                if all_lanes.queued >= s.server.queue_size // 2:
                    await trio.testing.wait_all_tasks_blocked()
            await trio.testing.wait_all_tasks_blocked()
            hang.set()
            n = cfg.max_lanes
            for user in range(cfg.max_lanes):  # then turns hang and the queue fills
                while all_lanes.queued < s.server.queue_size:
                    try:
                        all_lanes.submit(message(n, user))
                    except Exception:  # this lane is full (max_pending): the next one
                        break
                    n += 1
                await trio.testing.wait_all_tasks_blocked()
                if all_lanes.queued >= s.server.queue_size:
                    break
            gc.collect()
            result["bytes"] = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            release.set()
            all_lanes.cancel()

    trio.run(main)
    return result


MAPS: dict[str, tuple[Callable[[Settings], object], Callable[[Settings], str]]] = {
    "agent sessions": (sessions, lambda s: f"{s.agentforce.max_sessions} sessions"),
    "pending context": (
        pending,
        lambda s: f"{s.agentforce.max_sessions} users x {ANSWER_CHARS}-char answer",
    ),
    "response cache": (
        responses,
        lambda s: f"3 x {s.cache.response_entries} entries x {ANSWER_CHARS}-char answer",
    ),
    "transcripts": (
        transcripts,
        lambda s: f"{s.cache.transcripts} x {TRANSCRIPT_CHARS} chars",
    ),
    "media ids": (media_ids, lambda s: f"{s.cache.media_ids} ids"),
    "audio cache (memory)": (
        audio_memory,
        lambda s: f"{s.cache.audio_memory_bytes // MIB} MiB of {VOICE_NOTE_BYTES // 1000} kB",
    ),
    "audio cache (disk index)": (
        audio_disk_index,
        lambda s: f"{s.cache.audio_disk_bytes // MIB} MiB on disk / {VOICE_NOTE_BYTES // 1000} kB",
    ),
    "remembered users": (
        remembered_users,
        lambda s: f"{s.lanes.remembered_users} users: a language, a deferred message id",
    ),
    "per-user limits": (
        user_limits,
        lambda s: f"{s.limits.users} users: a bucket, today's counts, a notice",
    ),
    "lanes": (
        lanes,
        lambda s: f"{s.lanes.max_lanes} lanes, {s.server.queue_size} messages waiting",
    ),
    "public media (twilio only)": (
        public_media,
        lambda s: (
            f"{s.section(TwilioConfig).media_memory_bytes // MIB} MiB of "
            f"{VOICE_NOTE_BYTES // 1000} kB"
        ),
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="directory for bounds.json")
    parser.add_argument("--config", help="measure these bounds (default: the shipped defaults)")
    args = parser.parse_args()
    # The built-in defaults are what config.toml ships (a unit test keeps them equal).
    settings = config.load(args.config, env={}) if args.config else Settings()
    rows: dict[str, dict[str, Any]] = {}
    for name, (build, what) in MAPS.items():
        size, kept = measure(lambda build=build: build(settings))  # type: ignore[misc]
        if isinstance(kept, dict) and "bytes" in kept and len(kept) == 1:
            size = kept["bytes"]  # measured inside its own trio run
        rows[name] = {"mib": round(size / MIB, 1), "filled_with": what(settings)}
        del kept
    total = sum(r["mib"] for r in rows.values())
    # Each provider leaves one map empty: Meta serves no public media, and Twilio takes media
    # by URL, so it never reuses an upload's media id.
    meta_total = round(total - rows["public media (twilio only)"]["mib"], 1)
    twilio_total = round(total - rows["media ids"]["mib"], 1)
    width = max(len(n) for n in rows)
    for name, row in rows.items():
        print(f"{name:<{width}}  {row['mib']:7.1f} MiB   {row['filled_with']}")
    print(f"{'sum (meta)':<{width}}  {meta_total:7.1f} MiB")
    print(f"{'sum (twilio)':<{width}}  {twilio_total:7.1f} MiB")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"maps": rows, "sum_meta_mib": meta_total, "sum_twilio_mib": twilio_total}
    (args.out / "bounds.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
