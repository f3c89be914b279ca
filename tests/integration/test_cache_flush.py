"""``wa-agentd cache flush`` as a process against a running daemon, and the admin route's
refusals: 401 for a wrong token, 403 when no admin token is configured at all."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import trio

from daemon import config, runtime
from daemon.sim.stack import SECRETS, Stack, open_sims, open_stack

WA_AGENTD = [sys.executable, "-m", "daemon"]
FAQ = {"faq": [{"name": "opening hours", "pattern": "opening hours", "ttl": 86400}]}
QUESTION = "What are your opening hours?"
ALICE, BOB = "15550000001", "15550000002"
TOKEN = SECRETS["WA_AGENTD_ADMIN_TOKEN"]


def write_config(tmp_path: Path, admin_url: str) -> Path:
    """The operator's config: the CLI finds the daemon's admin routes at [admin] bind."""
    path = tmp_path / "config.toml"
    path.write_text(f'[admin]\nbind = "{admin_url.removeprefix("http://")}"\n')
    return path


async def flush_cli(
    config_path: Path, token: str | None, *extra: str
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env.pop("CREDENTIALS_DIRECTORY", None)
    if token is not None:
        env["WA_AGENTD_ADMIN_TOKEN"] = token
    return await trio.run_process(
        [*WA_AGENTD, "cache", "flush", "--config", str(config_path), *extra],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def ask_by_voice(stack: Stack, user: str, n: int) -> None:
    await stack.send_voice(user, QUESTION)
    await stack.wait_reports(n)


async def test_cache_flush_empties_the_running_daemons_caches(tmp_path: Path) -> None:
    async with open_stack(cache=FAQ) as stack:
        cfg = write_config(tmp_path, stack.daemon.admin_url)
        with trio.fail_after(30):
            await ask_by_voice(stack, ALICE, 1)
            result = await flush_cli(cfg, TOKEN)
            assert result.returncode == 0, result.stderr.decode()
            out = result.stdout.decode()
            for cache in ("responses", "audio", "media_ids", "transcripts"):
                assert f"'{cache}': 1" in out
            # The same voice note again: with the caches full, nothing would be called.
            await ask_by_voice(stack, BOB, 2)
    assert stack.reports[1].cached == []
    assert len(stack.agentforce.received) == 2
    assert len(stack.elevenlabs.stt_requests) == 2
    assert len(stack.elevenlabs.tts_requests) == 2
    assert len(stack.graph.uploads) == 2


async def test_cache_flush_refused_leaves_the_caches_alone(tmp_path: Path) -> None:
    async with open_stack(cache=FAQ) as stack:
        cfg = write_config(tmp_path, stack.daemon.admin_url)
        with trio.fail_after(30):
            await ask_by_voice(stack, ALICE, 1)
            wrong = await flush_cli(cfg, "not-the-token")
            unset = await flush_cli(cfg, None)
            with trio.socket.socket() as closed:  # a port nobody listens on
                await closed.bind(("127.0.0.1", 0))
                port = closed.getsockname()[1]
                unreachable = await flush_cli(cfg, TOKEN, "--url", f"http://127.0.0.1:{port}")
            await ask_by_voice(stack, BOB, 2)
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr.decode()
    assert unset.returncode == 2 and "WA_AGENTD_ADMIN_TOKEN is not set" in unset.stderr.decode()
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr.decode()
    assert wrong.stdout == unset.stdout == unreachable.stdout == b""
    assert stack.reports[1].cached == ["transcript", "answer", "voice"]  # nothing was flushed
    assert len(stack.graph.uploads) == 1


@asynccontextmanager
async def daemon_without_admin_token(tmp_path: Path) -> AsyncIterator[runtime.Running]:
    env = {k: v for k, v in SECRETS.items() if k != "WA_AGENTD_ADMIN_TOKEN"}
    async with open_sims() as sims, trio.open_nursery() as nursery:
        sections = sims.sections(
            server={"bind": "127.0.0.1:0"},
            state={"dir": str(tmp_path / "state")},
            cache={"dir": str(tmp_path / "cache")},
        )
        settings = config.parse(sections, env=env)
        running: runtime.Running = await nursery.start(
            lambda task_status: runtime.run(settings, handle_signals=False, task_status=task_status)
        )
        try:
            yield running
        finally:
            running.stop.set()


async def test_admin_routes_are_off_without_an_admin_token(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with daemon_without_admin_token(tmp_path) as daemon:
            url = daemon.admin_url + "/admin/cache/flush"
            async with httpx.AsyncClient() as client:
                # 403, not 401: no token would be right, so none is asked for.
                for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
                    response = await client.post(url, headers=headers)
                    assert response.status_code == 403
                    assert "WA_AGENTD_ADMIN_TOKEN" in response.text
            result = await flush_cli(write_config(tmp_path, daemon.admin_url), TOKEN)
    assert result.returncode == 1 and "HTTP 403" in result.stderr.decode()
