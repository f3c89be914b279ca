"""``wa-agentd status`` as a process against a real daemon: the table and the JSON of a daemon
with an open circuit and a deferred turn, of a ready one, and the exit codes when it can't
tell (no token here, a token refused, nobody listening)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from daemon.sim.stack import SECRETS, Stack, open_stack
from daemon.turn import TurnReport

WA_AGENTD = [sys.executable, "-m", "daemon"]
TOKEN = SECRETS["WA_AGENTD_ADMIN_TOKEN"]
ALICE, BOB = "15550000001", "15550000002"
FAQ = {"faq": [{"name": "opening hours", "pattern": "opening hours", "ttl": 86400}]}


def write_config(tmp_path: Path, admin_url: str, *, via: str) -> Path:
    """The operator's config, naming the daemon's admin listener in [admin] bind, or (the
    fallback) in [server] bind with [admin] bind empty."""
    address = admin_url.removeprefix("http://")
    path = tmp_path / "config.toml"
    if via == "admin":
        path.write_text(f'[server]\nbind = "127.0.0.1:1"\n[admin]\nbind = "{address}"\n')
    else:
        path.write_text(f'[server]\nbind = "{address}"\n[admin]\nbind = ""\n')
    return path


async def status_cli(
    config_path: Path, *extra: str, token: str | None = TOKEN
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env.pop("CREDENTIALS_DIRECTORY", None)
    env.pop("WA_AGENTD_CONFIG", None)
    if token is not None:
        env["WA_AGENTD_ADMIN_TOKEN"] = token
    return await trio.run_process(
        [*WA_AGENTD, "status", "--config", str(config_path), *extra],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


@asynccontextmanager
async def whatsapp_down() -> AsyncIterator[Stack]:
    """A daemon whose WhatsApp circuit opened on the first turn, which is now deferred."""
    deferred = trio.Event()

    def seen(report: TurnReport) -> None:
        if report.outcome == "deferred":
            deferred.set()

    # Two failed calls open the breaker, and it stays open for the rest of the test; a
    # deferred turn is tried again only after the test (retry_every).
    breakers = {"window": 4, "min_calls": 2, "open_seconds": 600.0}
    async with open_stack(
        breakers=breakers, inbox={"retry_every": 3600.0}, on_report=seen
    ) as stack:
        stack.graph.fail_sends(130429, count=100)  # "slow down", until the circuit opens
        with trio.fail_after(20):
            await stack.send_text(ALICE, "What are your opening hours?")
            await deferred.wait()
        yield stack


async def test_status_shows_the_open_circuit_and_the_deferred_turn(tmp_path: Path) -> None:
    async with whatsapp_down() as stack:
        cfg = write_config(tmp_path, stack.daemon.admin_url, via="admin")
        with trio.fail_after(30):
            table = await status_cli(cfg)
            as_json = await status_cli(cfg, "--json")
    assert stack.graph.sent == []  # nothing reached the user: the turn waits, deferred

    assert table.returncode == 1, table.stderr.decode()  # running, not ready
    out = table.stdout.decode()
    assert re.search(r"^wa-agentd \S+ at http://\S+: NOT READY: whatsapp circuit open", out, re.M)
    assert re.search(r"^provider\s+meta$", out, re.M)
    assert "0 in flight, 0 queued, 1 deferred" in out
    assert re.search(r"^  whatsapp\s+OPEN\s+\d+\s+\d+%\s+\d+%\s+\d+m\d+s$", out, re.M)
    assert re.search(r"^  agentforce\s+closed\s", out, re.M)
    assert re.search(r"^  turn deferred\s+1\s+\d+s ago", out, re.M)
    assert re.search(r"^  whatsapp circuit_open\s+\d+\s+\d+s ago", out, re.M)

    assert as_json.returncode == 1, as_json.stderr.decode()
    status: dict[str, Any] = json.loads(as_json.stdout)
    assert status["format"] == 1
    assert status["ready"] is False and "whatsapp circuit open" in status["reason"]
    assert status["provider"] == "meta"
    turns = status["turns"]
    assert (turns["in_flight"], turns["queued"], turns["deferred"]) == (0, 0, 1)
    assert turns["lanes"] <= 1  # Alice's lane, idle until [lanes] idle_seconds pass
    whatsapp = status["circuits"]["whatsapp"]
    assert whatsapp["state"] == "open" and 0 < whatsapp["retry_in"] <= 600
    assert status["circuits"]["agentforce"]["state"] == "closed"
    assert set(status["circuits"]) == {"whatsapp", "agentforce", "elevenlabs-stt", "elevenlabs-tts"}
    kinds = {e["kind"]: e for e in status["errors"]}
    assert kinds["turn deferred"]["count"] == 1
    assert "circuit open" in kinds["turn deferred"]["detail"]
    assert 0 < status["uptime_seconds"] < 60


async def test_status_of_a_ready_daemon_exits_zero_and_shows_cache_hits(tmp_path: Path) -> None:
    async with open_stack(cache=FAQ) as stack:
        with trio.fail_after(30):
            await stack.send_text(ALICE, "What are your opening hours?")
            await stack.wait_reports(1)
            await stack.send_text(BOB, "What are your opening hours?")  # the cached answer
            await stack.wait_reports(2)
            # The fallback: [admin] bind empty, the admin routes on [server] bind.
            cfg = write_config(tmp_path, stack.daemon.admin_url, via="server")
            table = await status_cli(cfg)
            # --url wins over the config (which names a port nobody listens on here).
            elsewhere = tmp_path / "elsewhere.toml"
            elsewhere.write_text('[admin]\nbind = "127.0.0.1:1"\n')
            as_json = await status_cli(elsewhere, "--json", "--url", stack.daemon.admin_url)
    assert stack.reports[1].cached == ["answer"]

    assert table.returncode == 0, table.stderr.decode()
    out = table.stdout.decode()
    assert re.search(r"^wa-agentd \S+ at http://\S+: ready$", out, re.M)
    assert re.search(r"^  response\s+1\s+1\s+50%\s+one agent call$", out, re.M)
    assert "last errors\n  none since start" in out

    assert as_json.returncode == 0, as_json.stderr.decode()
    status = json.loads(as_json.stdout)
    assert status["ready"] is True and status["reason"] == "ready"
    assert status["caches"]["response"] == {
        "hits": 1,
        "misses": 1,
        "hit_rate": 0.5,
        "saves": "agent call",
    }
    assert status["errors"] == []


async def test_status_without_an_answer_exits_2_or_3_and_says_why(tmp_path: Path) -> None:
    async with open_stack() as stack:
        cfg = write_config(tmp_path, stack.daemon.admin_url, via="admin")
        with trio.fail_after(30):
            no_token = await status_cli(cfg, token=None)
            wrong = await status_cli(cfg, token="not-the-token")
            with trio.socket.socket() as closed:  # a port nobody listens on
                await closed.bind(("127.0.0.1", 0))
                port = closed.getsockname()[1]
                nobody = await status_cli(cfg, "--url", f"http://127.0.0.1:{port}")
    assert no_token.returncode == 2
    assert b"WA_AGENTD_ADMIN_TOKEN is not set" in no_token.stderr
    assert wrong.returncode == 3
    assert b"status refused: HTTP 401" in wrong.stderr
    assert nobody.returncode == 3
    assert b"cannot reach the daemon" in nobody.stderr
    assert no_token.stdout == wrong.stdout == nobody.stdout == b""
