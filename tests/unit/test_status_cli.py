"""``wa-agentd status``'s pure parts: where it asks, how it prints, what the caches saved."""

from __future__ import annotations

from typing import Any

import pytest

from daemon import config
from daemon.observe.snapshot import cache_rates
from daemon.status import _duration, admin_url, render

NOW = 1_800_000_000.0


def status_document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": 1,
        "version": "0.1.0",
        "provider": "twilio",
        "ready": True,
        "reason": "ready",
        "started_at": NOW - 8040,
        "uptime_seconds": 8040,
        "turns": {"in_flight": 3, "queued": 12, "deferred": 0, "lanes": 14},
        "bounds": {"queue_size": 1000, "max_lanes": 10000, "max_concurrent_turns": 64},
        "circuits": {
            "agentforce": {
                "state": "half_open",
                "calls": 0,
                "failure_rate": 0.0,
                "slow_call_rate": 0.0,
                "retry_in": 0.0,
            },
            "whatsapp": {
                "state": "closed",
                "calls": 20,
                "failure_rate": 0.05,
                "slow_call_rate": 0.0,
                "retry_in": 0.0,
            },
        },
        "caches": cache_rates({"response_hit": 30, "response_miss": 10, "audio_hit": 0}),
        "errors": [
            {
                "kind": "turn timeout",
                "count": 2,
                "last_at": NOW - 75,
                "detail": "turn deadline 120s\nand a second line",
            }
        ],
    }
    doc.update(changes)
    return doc


def test_the_table() -> None:
    assert render(status_document(), "http://127.0.0.1:9464", now=NOW) == (
        "wa-agentd 0.1.0 at http://127.0.0.1:9464: ready\n"
        "\n"
        "up since    2027-01-15 05:46:00 UTC (up 2h14m)\n"
        "provider    twilio\n"
        "turns       3 in flight, 12 queued, 0 deferred, 14 users with a lane\n"
        "bounds      queue 1000, lanes 10000, concurrent turns 64\n"
        "\n"
        "circuits\n"
        "  upstream    state      calls  failed  slow  retry in\n"
        "  agentforce  HALF_OPEN      0      0%    0%\n"
        "  whatsapp    closed        20      5%    0%\n"
        "\n"
        "caches\n"
        "  cache     hits  misses  hit rate  a hit saves\n"
        "  response    30      10       75%  one agent call\n"
        "  audio        0       0         -  one text-to-speech call\n"
        "\n"
        "last errors\n"
        "  kind          count       last  detail\n"
        "  turn timeout      2  1m15s ago  turn deadline 120s and a second line\n"
    )


def test_not_ready_says_why_on_the_first_line() -> None:
    doc = status_document(ready=False, reason="draining; whatsapp circuit open", errors=[])
    out = render(doc, "http://x", now=NOW)
    assert out.startswith(
        "wa-agentd 0.1.0 at http://x: NOT READY: draining; whatsapp circuit open\n"
    )
    assert out.endswith("last errors\n  none since start\n")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (42.9, "42s"), (598, "9m58s"), (8040, "2h14m"), (3 * 86400 + 4 * 3600, "3d4h")],
)
def test_durations_have_two_units_at_most(seconds: float, shown: str) -> None:
    assert _duration(seconds) == shown


@pytest.mark.parametrize(
    ("sections", "url"),
    [
        ({"admin": {"bind": "127.0.0.1:9464"}}, "http://127.0.0.1:9464"),
        ({"server": {"bind": "127.0.0.1:8080"}, "admin": {"bind": ""}}, "http://127.0.0.1:8080"),
        ({"server": {"bind": "0.0.0.0:8080"}, "admin": {"bind": ""}}, "http://127.0.0.1:8080"),
        ({"admin": {"bind": "[::]:9464"}}, "http://[::1]:9464"),
        ({"admin": {"bind": "[::1]:9464"}}, "http://[::1]:9464"),
    ],
)
def test_the_admin_url_comes_from_admin_bind_else_server_bind(
    sections: dict[str, dict[str, str]], url: str
) -> None:
    assert admin_url(config.parse(sections, env={})) == url


def test_cache_rates_skip_caches_that_are_off_and_have_no_rate_before_a_lookup() -> None:
    rates = cache_rates(
        {"audio_hit": 0, "audio_miss": 0, "transcript_hit": 3, "transcript_miss": 1}
    )
    assert rates == {
        "transcript": {"hits": 3, "misses": 1, "hit_rate": 0.75, "saves": "speech-to-text call"},
        "audio": {"hits": 0, "misses": 0, "hit_rate": None, "saves": "text-to-speech call"},
    }
