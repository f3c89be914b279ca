"""Where media may be downloaded from: the defaults, and what they match (whatsapp.md §4, §6)."""

from __future__ import annotations

import httpx
import pytest

from daemon.channels.media import host_allowed
from daemon.channels.meta.settings import WhatsAppConfig
from daemon.channels.twilio.settings import TwilioConfig


def test_defaults_do_not_pin_a_single_host() -> None:
    # §4 gotchas: documented URLs are on lookaside.fbsbx.com, but do not pin a single host.
    assert WhatsAppConfig().media_hosts == ("lookaside.fbsbx.com", "*.fbsbx.com", "*.fbcdn.net")
    # Twilio 302s every attachment from api.twilio.com to its CDN (mms.twiliocdn.com, ...).
    assert TwilioConfig().media_hosts == ("api.twilio.com", "*.twiliocdn.com")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1", True),
        ("https://scontent.whatsapp.fbsbx.com/v/t62/x", True),
        ("https://mmg.whatsapp.fbcdn.net/d/f/x.enc", True),
        ("https://fbcdn.net/x", False),  # "*." matches subdomains only
        ("https://fbcdn.net.evil.example/x", False),
        ("https://evilfbsbx.com/x", False),
        ("https://graph.facebook.com/v23.0/123", False),  # allowed by the client as graph_url's
    ],
)
def test_meta_defaults_match(url: str, allowed: bool) -> None:
    assert host_allowed(httpx.URL(url), WhatsAppConfig().media_hosts) is allowed


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1", True),
        ("https://mms.twiliocdn.com/AC1/abc?Expires=1&Signature=x", True),
        ("https://media.twiliocdn.com/abc", True),
        ("https://twiliocdn.com/abc", False),
        ("https://mms.twiliocdn.com.evil.example/abc", False),
        ("https://api.twilio.com.evil.example/x", False),
    ],
)
def test_twilio_defaults_match(url: str, allowed: bool) -> None:
    assert host_allowed(httpx.URL(url), TwilioConfig().media_hosts) is allowed
