"""What daemon/web.py relies on to name the webhook's origin: Werkzeug's validated Host.

The signed URL is the origin (``[twilio] public_url``, else scheme + ``request.host``) plus
the raw request target, never re-parsed from one string (daemon/channels/base.py). When the
origin comes from the request, a Host header with characters no host has must not reach it:
Werkzeug validates it from 3.1.7 and answers "" from 3.1.8, the floor pinned in
pyproject.toml. These tests fail on an older Werkzeug.
"""

from __future__ import annotations

import pytest
from werkzeug.sansio.utils import get_host


@pytest.mark.parametrize(
    "host",
    ["bot.example.com/evil", "bot.example.com?x=", "bot.example.com#f", "a@bot.example.com", ""],
)
def test_a_host_no_host_can_be_is_empty(host: str) -> None:
    assert get_host("https", host) == ""


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("bot.example.com", "bot.example.com"),
        ("bot.example.com:8443", "bot.example.com:8443"),
        ("bot.example.com:443", "bot.example.com"),  # the default port is dropped
        ("[::1]:8080", "[::1]:8080"),
    ],
)
def test_a_real_host_is_kept(host: str, expected: str) -> None:
    assert get_host("https", host) == expected
