"""``wa-agentd status``: what the running daemon is doing, from ``GET /admin/status``.

Where: ``--url``, else the admin listener of the config (``[admin] bind``, or ``[server]
bind`` when that is empty, as the daemon itself decides). The route needs the admin token
(``WA_AGENTD_ADMIN_TOKEN``, from the environment or ``$CREDENTIALS_DIRECTORY`` like every
secret), because it shows upstream error texts.

Prints a table for a terminal, or with ``--json`` the document as the daemon sent it
(daemon/observe/snapshot.py describes it). Exit codes, for scripts and health checks:

    0  ready
    1  running but not ready (draining, a circuit open, the store not writable, ...)
    2  the config or the token is missing or wrong here (nothing was asked)
    3  no status: the daemon did not answer, refused the token, or sent something else
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import httpx

from daemon import config

READY, NOT_READY, LOCAL_ERROR, NO_STATUS = 0, 1, 2, 3
TIMEOUT = 10.0


class NoStatus(Exception):
    """The daemon could not be asked, or its answer was not a status."""


def admin_url(settings: config.Settings) -> str:
    """The admin listener's base URL: [admin] bind, else [server] bind. A wildcard bind is
    asked on loopback (the daemon listens there too)."""
    bind = settings.admin.bind or settings.server.bind
    host, _, port = bind.rpartition(":")
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}.get(host, host)
    return f"http://{host}:{port}"


def fetch(url: str, token: str, *, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The status document, or ``NoStatus`` saying why not."""
    try:
        response = httpx.get(
            f"{url.rstrip('/')}/admin/status",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise NoStatus(f"cannot reach the daemon at {url}: {exc}") from None
    if response.status_code != 200:
        raise NoStatus(f"status refused: HTTP {response.status_code} {response.text.strip()}")
    try:
        document = response.json()
    except ValueError:
        raise NoStatus(f"not a status document from {url}") from None
    if not isinstance(document, dict) or "ready" not in document:
        raise NoStatus(f"not a status document from {url}")
    return document


def run(settings: config.Settings, *, url: str | None, as_json: bool, out: TextIO) -> int:
    token = settings.secrets.get("WA_AGENTD_ADMIN_TOKEN")
    if not token:
        print(
            "wa-agentd: WA_AGENTD_ADMIN_TOKEN is not set (on a systemd host: "
            "CREDENTIALS_DIRECTORY=/etc/credstore/wa-agentd wa-agentd status ...)",
            file=sys.stderr,
        )
        return LOCAL_ERROR
    where = url or admin_url(settings)
    try:
        document = fetch(where, token)
    except NoStatus as exc:
        print(f"wa-agentd: {exc}", file=sys.stderr)
        return NO_STATUS
    if as_json:
        json.dump(document, out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        out.write(render(document, where))
    return READY if document.get("ready") is True else NOT_READY


# -- the table ------------------------------------------------------------------------------


def render(status: Mapping[str, Any], url: str, *, now: float | None = None) -> str:
    """The status as a plain-text table, for an 80-column terminal."""
    now = datetime.datetime.now(datetime.UTC).timestamp() if now is None else now
    verdict = "ready" if status.get("ready") else f"NOT READY: {status.get('reason', '?')}"
    started = float(status.get("started_at", now))
    turns: Mapping[str, Any] = status.get("turns", {})
    bounds: Mapping[str, Any] = status.get("bounds", {})
    lines = [
        f"wa-agentd {status.get('version', '?')} at {url}: {verdict}",
        "",
        _pair("up since", f"{_when(started)} (up {_duration(now - started)})"),
        _pair("provider", str(status.get("provider", "?"))),
        _pair(
            "turns",
            f"{turns.get('in_flight', 0)} in flight, {turns.get('queued', 0)} queued, "
            f"{turns.get('deferred', 0)} deferred, {turns.get('lanes', 0)} users with a lane",
        ),
        _pair(
            "bounds",
            f"queue {bounds.get('queue_size', '?')}, lanes {bounds.get('max_lanes', '?')}, "
            f"concurrent turns {bounds.get('max_concurrent_turns', '?')}",
        ),
        "",
        "circuits",
        *_table(
            ("upstream", "state", "calls", "failed", "slow", "retry in"),
            [
                (
                    name,
                    c["state"].upper() if c["state"] != "closed" else "closed",
                    str(c["calls"]),
                    _percent(c["failure_rate"]),
                    _percent(c["slow_call_rate"]),
                    _duration(c["retry_in"]) if c["retry_in"] > 0 else "",
                )
                for name, c in status.get("circuits", {}).items()
            ],
            right=(2, 3, 4, 5),
        ),
        "",
        "caches",
        *_table(
            ("cache", "hits", "misses", "hit rate", "a hit saves"),
            [
                (
                    name,
                    str(c["hits"]),
                    str(c["misses"]),
                    "-" if c["hit_rate"] is None else _percent(c["hit_rate"]),
                    f"one {c['saves']}",
                )
                for name, c in status.get("caches", {}).items()
            ],
            right=(1, 2, 3),
        ),
        "",
        "last errors",
    ]
    errors: Sequence[Mapping[str, Any]] = status.get("errors", [])
    if errors:
        lines += _table(
            ("kind", "count", "last", "detail"),
            [
                (
                    e["kind"],
                    str(e["count"]),
                    f"{_duration(now - e['last_at'])} ago",
                    _clip(e["detail"], 40),
                )
                for e in errors
            ],
            right=(1, 2),
        )
    else:
        lines.append("  none since start")
    return "\n".join(lines) + "\n"


def _pair(name: str, value: str) -> str:
    return f"{name:<12}{value}"


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[int] = ()
) -> list[str]:
    if not rows:
        return ["  none"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return ("  " + "  ".join(parts)).rstrip()

    return [line(header), *(line(r) for r in rows)]


def _percent(share: float) -> str:
    return f"{100 * share:.0f}%"


def _when(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    """``42s``, ``9m58s``, ``2h14m``, ``3d4h``: two units at most, rounded down."""
    s = max(0, int(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{s}s"
    return f"{s}s"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())  # one line, whatever the error text held
    return text if len(text) <= width else text[: width - 1] + "…"
