"""TwilioClient and TwilioChannel over httpx.MockTransport (reference/whatsapp.md §6)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Sequence
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
import trio
import trio.testing

from daemon.channels.base import Channel, WebhookRequest
from daemon.channels.twilio import wire
from daemon.channels.twilio.channel import PUBLIC_MEDIA_PATH, TwilioChannel
from daemon.channels.twilio.client import TwilioClient
from daemon.channels.twilio.public_media import PublicMedia
from daemon.channels.twilio.settings import TwilioConfig
from daemon.errors import UpstreamRejected, UpstreamUnavailable
from daemon.model import Inbound, Kind, Media, User

API = "https://api.twilio.com"
ACCOUNT = "AC" + "1" * 32
TOKEN = "auth-token-secret"
BASIC = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
MESSAGES_URL = f"{API}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
MEDIA_URL = f"{API}/2010-04-01/Accounts/{ACCOUNT}/Messages/MM1/Media/ME1"
CDN_URL = "https://media.twiliocdn.com/abc/def"
FROM = "whatsapp:+14155238886"
USER = User(key="15551234567", address="whatsapp:+15551234567")

Handler = Callable[[httpx.Request], httpx.Response]


def make_client(
    handler: Handler,
    *,
    api_url: str = API,
    media_hosts: Sequence[str] = ("api.twilio.com", "media.twiliocdn.com"),
    max_media_bytes: int = 1024,
) -> tuple[TwilioClient, list[httpx.Request], httpx.AsyncClient]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return handler(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(record))
    client = TwilioClient(
        http,
        api_url=api_url,
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        media_hosts=media_hosts,
        max_media_bytes=max_media_bytes,
    )
    return client, seen, http


def created(sid: str = "SM" + "f" * 32) -> httpx.Response:
    return httpx.Response(201, json={"sid": sid, "status": "queued", "account_sid": ACCOUNT})


def twilio_error(code: int, status: int) -> httpx.Response:
    body = {
        "code": code,
        "message": "refused",
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return httpx.Response(status, json=body)


def form_of(request: httpx.Request) -> list[tuple[str, str]]:
    return parse_qsl(request.content.decode(), keep_blank_values=True, strict_parsing=True)


# --- send -----------------------------------------------------------------------------------


async def test_send_posts_the_exact_form_with_basic_auth() -> None:
    client, seen, http = make_client(lambda r: created("SM" + "a" * 32))
    form = wire.message_form(FROM, USER.address, body="Olá & bye")
    async with http:
        with trio.fail_after(10):
            sid = await client.send(form)
    assert sid == "SM" + "a" * 32
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == MESSAGES_URL
    assert request.headers["authorization"] == BASIC
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form_of(request) == [
        ("From", "whatsapp:+14155238886"),
        ("To", "whatsapp:+15551234567"),
        ("Body", "Olá & bye"),
    ]
    assert request.content == urlencode(form).encode()


async def test_send_accepts_200_too() -> None:
    client, _, http = make_client(lambda r: httpx.Response(200, json={"sid": "SMx"}))
    async with http:
        with trio.fail_after(10):
            assert await client.send([("To", "x")]) == "SMx"


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(201, json={"status": "queued"}),
        httpx.Response(201, json={"sid": ""}),
        httpx.Response(201, text="ok"),
        httpx.Response(201, json=["SM1"]),
        httpx.Response(202, json={"sid": "SM1"}),
        httpx.Response(302, headers={"location": "https://elsewhere.test/"}),
    ],
)
async def test_send_with_a_malformed_answer_is_rejected(response: httpx.Response) -> None:
    client, _, http = make_client(lambda r: response)
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected):
            await client.send([("To", "x")])


@pytest.mark.parametrize(
    ("response", "cls", "code"),
    [
        (twilio_error(63016, 400), UpstreamRejected, "63016"),
        (twilio_error(21211, 400), UpstreamRejected, "21211"),
        (twilio_error(20003, 401), UpstreamRejected, "20003"),
        (twilio_error(20429, 429), UpstreamUnavailable, "20429"),
        (twilio_error(63018, 400), UpstreamUnavailable, "63018"),
        (httpx.Response(503, text="<html>down</html>"), UpstreamUnavailable, None),
    ],
)
async def test_send_errors_are_mapped(
    response: httpx.Response, cls: type[Exception], code: str | None
) -> None:
    client, _, http = make_client(lambda r: response)
    async with http:
        with trio.fail_after(10), pytest.raises(cls) as caught:
            await client.send([("To", "x")])
    assert getattr(caught.value, "code", None) == code
    assert getattr(caught.value, "upstream", None) == "twilio"


async def test_transport_error_is_unavailable() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client, _, http = make_client(boom)
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamUnavailable):
            await client.send([("To", "x")])


# --- download -------------------------------------------------------------------------------


def api_then_cdn(request: httpx.Request) -> httpx.Response:
    if request.url.host == "api.twilio.com":
        return httpx.Response(302, headers={"location": CDN_URL})
    if str(request.url) == CDN_URL:
        return httpx.Response(200, content=b"OggS-voice", headers={"content-type": "audio/ogg"})
    return httpx.Response(500)


async def test_download_sends_credentials_to_twilio_only_not_to_the_cdn() -> None:
    client, seen, http = make_client(api_then_cdn)
    async with http:
        with trio.fail_after(10):
            assert await client.download(MEDIA_URL) == b"OggS-voice"
    api, cdn = seen
    assert str(api.url) == MEDIA_URL
    assert api.headers["authorization"] == BASIC
    assert str(cdn.url) == CDN_URL
    assert "authorization" not in cdn.headers
    assert cdn.headers["user-agent"].startswith("wa-agentd/")


async def test_download_refuses_a_redirect_to_a_foreign_host() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "https://evil.example/steal"})

    client, seen, http = make_client(handler)
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected, match="not allowed"):
            await client.download(MEDIA_URL)
    assert [r.url.host for r in seen] == ["api.twilio.com"]  # evil.example never contacted


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
        "https://api.twilio.com.evil.example/x",
        "http://api.twilio.com/x",  # plain http would expose the credentials
        f"https://{ACCOUNT}:{TOKEN}@api.twilio.com/x",
        "ftp://api.twilio.com/x",
        "not a url at all",
    ],
)
async def test_download_refuses_urls_off_the_media_hosts(url: str) -> None:
    client, seen, http = make_client(api_then_cdn)
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected):
            await client.download(url)
    assert seen == []


async def test_credentials_go_to_the_configured_api_host() -> None:
    """The simulator: plain http on loopback, configured as api_url."""
    base = "http://127.0.0.1:8931"

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/2010-04-01/"):
            return httpx.Response(302, headers={"location": "/cdn/tok"})
        return httpx.Response(200, content=b"bytes")

    client, seen, http = make_client(handler, api_url=base, media_hosts=("127.0.0.1",))
    async with http:
        with trio.fail_after(10):
            assert await client.download(f"{base}/2010-04-01/Accounts/AC1/Messages/MM/Media/ME")
    assert seen[0].headers["authorization"] == BASIC
    assert str(seen[1].url) == f"{base}/cdn/tok"


@pytest.mark.parametrize(
    "cdn", ["https://mms.twiliocdn.com/AC1/abc?sig=x", "https://media.twiliocdn.com/abc"]
)
async def test_default_media_hosts_follow_the_redirect_to_any_twilio_cdn(cdn: str) -> None:
    # Twilio 302s every attachment to its CDN, under more than one name: *.twiliocdn.com.
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.twilio.com":
            return httpx.Response(302, headers={"location": cdn})
        return httpx.Response(200, content=b"OggS")

    client, seen, http = make_client(handler, media_hosts=TwilioConfig().media_hosts)
    async with http:
        with trio.fail_after(10):
            assert await client.download(MEDIA_URL) == b"OggS"
    api, hop = seen
    assert api.headers["authorization"] == BASIC
    assert str(hop.url) == cdn and "authorization" not in hop.headers


async def test_credentials_go_to_api_url_only() -> None:
    # A simulator (or any non-Twilio api_url): its own host is a media host without being
    # listed, and it alone gets the credentials; api.twilio.com, though a listed media host,
    # does not get this configuration's credentials.
    base = "http://127.0.0.1:8931"
    client, seen, http = make_client(
        lambda r: httpx.Response(200, content=b"x"), api_url=base, media_hosts=("api.twilio.com",)
    )
    async with http:
        with trio.fail_after(10):
            await client.download(f"{base}/2010-04-01/Accounts/AC1/Messages/MM/Media/ME")
            await client.download(MEDIA_URL)
    assert [(r.url.host, "authorization" in r.headers) for r in seen] == [
        ("127.0.0.1", True),
        ("api.twilio.com", False),
    ]


async def test_a_twilio_edge_api_url_also_authenticates_api_twilio_com() -> None:
    edge = "https://api.dublin.ie1.twilio.com"

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.dublin.ie1.twilio.com":
            return httpx.Response(200, content=b"OggS-edge")
        return api_then_cdn(request)

    client, seen, http = make_client(handler, api_url=edge)
    async with http:
        with trio.fail_after(10):
            assert await client.download(MEDIA_URL) == b"OggS-voice"
            media = await client.download(f"{edge}/2010-04-01/Accounts/AC1/Messages/MM/Media/ME")
            assert media == b"OggS-edge"
    assert [(r.url.host, "authorization" in r.headers) for r in seen] == [
        ("api.twilio.com", True),
        ("media.twiliocdn.com", False),
        ("api.dublin.ie1.twilio.com", True),
    ]


async def test_download_gives_up_after_three_redirects() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": CDN_URL})

    client, seen, http = make_client(handler)
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected, match="redirects"):
            await client.download(MEDIA_URL)
    assert len(seen) == 4


async def test_download_retries_while_media_is_not_ready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    answers = iter([httpx.Response(404, json={"code": 20404}), httpx.Response(404)])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.twilio.com":
            return next(answers, httpx.Response(302, headers={"location": CDN_URL}))
        return api_then_cdn(request)

    client, seen, http = make_client(handler)
    async with http:
        with trio.fail_after(10):
            start = trio.current_time()
            assert await client.download(MEDIA_URL) == b"OggS-voice"
            elapsed = trio.current_time() - start
    assert elapsed == pytest.approx(0.5 + 1.0)
    assert [r.url.host for r in seen] == [
        "api.twilio.com",
        "api.twilio.com",
        "api.twilio.com",
        "media.twiliocdn.com",
    ]


async def test_download_404_forever_is_rejected(autojump_clock: trio.testing.MockClock) -> None:
    client, seen, http = make_client(lambda r: httpx.Response(404))
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected) as caught:
            start = trio.current_time()
            await client.download(MEDIA_URL)
    assert caught.value.status == 404
    assert trio.current_time() - start == pytest.approx(3.5)
    assert len(seen) == 4


@pytest.mark.parametrize(
    ("response", "cls"),
    [
        (twilio_error(20003, 401), UpstreamRejected),
        (twilio_error(20500, 500), UpstreamUnavailable),
        (httpx.Response(403, text="AccessDenied"), UpstreamRejected),
        (httpx.Response(204), UpstreamRejected),
    ],
)
async def test_download_errors(response: httpx.Response, cls: type[Exception]) -> None:
    client, seen, http = make_client(lambda r: response)
    async with http:
        with trio.fail_after(10), pytest.raises(cls):
            await client.download(MEDIA_URL)
    assert len(seen) == 1  # only a 404 is retried


async def test_download_size_cap_declared() -> None:
    client, _, http = make_client(
        lambda r: httpx.Response(200, content=b"x" * 10, headers={"content-length": "5000"}),
        max_media_bytes=100,
    )
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected, match="too large"):
            await client.download(MEDIA_URL)


@pytest.mark.filterwarnings("ignore:Async generator 'httpx.:ResourceWarning")
async def test_download_size_cap_streamed() -> None:
    async def chunks() -> object:
        for _ in range(10):
            yield b"x" * 50

    client, _, http = make_client(
        lambda r: httpx.Response(200, content=chunks()),  # type: ignore[arg-type]
        max_media_bytes=100,
    )
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected, match="too large"):
            await client.download(MEDIA_URL)


async def test_download_exactly_at_the_cap_is_fine() -> None:
    client, _, http = make_client(
        lambda r: httpx.Response(200, content=b"x" * 100), max_media_bytes=100
    )
    async with http:
        with trio.fail_after(10):
            assert len(await client.download(MEDIA_URL)) == 100


# --- TwilioChannel --------------------------------------------------------------------------

PUBLIC = "https://bot.example.com"


def make_channel(
    handler: Handler, media: PublicMedia | None = None
) -> tuple[TwilioChannel, list[httpx.Request], httpx.AsyncClient, PublicMedia]:
    client, seen, http = make_client(handler)
    store = media or PublicMedia(clock=lambda: 0.0)
    channel = TwilioChannel(client, store, auth_token=TOKEN, public_url=PUBLIC + "/", from_=FROM)
    return channel, seen, http, store


def test_channel_satisfies_the_protocol() -> None:
    channel, _, _, _ = make_channel(lambda r: httpx.Response(500))
    as_protocol: Channel = channel
    assert (as_protocol.name, as_protocol.text_limit) == ("twilio", 1600)
    assert channel.accepted() == (
        b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>',
        "text/xml",
    )
    assert channel.handshake({"hub.mode": "subscribe", "hub.challenge": "1"}) is None
    assert channel.media_url_for("tok") == f"{PUBLIC}{PUBLIC_MEDIA_PATH}tok"


BODY = (
    b"SmsMessageSid=SM1&NumMedia=0&WaId=15551234567&SmsStatus=received&Body=Hi+there"
    b"&To=whatsapp%3A%2B14155238886&MessageSid=SM1&AccountSid=AC1"
    b"&From=whatsapp%3A%2B15551234567&ApiVersion=2010-04-01"
)


def hand_signature(url: str) -> str:
    data = (
        url
        + "AccountSidAC1"
        + "ApiVersion2010-04-01"
        + "BodyHi there"
        + "Fromwhatsapp:+15551234567"
        + "MessageSidSM1"
        + "NumMedia0"
        + "SmsMessageSidSM1"
        + "SmsStatusreceived"
        + "Towhatsapp:+14155238886"
        + "WaId15551234567"
    )
    return base64.b64encode(hmac.new(TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()


def webhook(
    signature: str | None,
    body: bytes = BODY,
    *,
    origin: str = "http://127.0.0.1:8080",
    target: str = "/webhook?tenant=a",
) -> WebhookRequest:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["x-twilio-signature"] = signature
    # Behind the TLS proxy the daemon sees its own loopback URL, not the public one.
    return WebhookRequest(origin=origin, target=target, headers=headers, query={}, body=body)


def test_channel_verifies_against_the_public_url() -> None:
    channel, _, _, _ = make_channel(lambda r: httpx.Response(500))
    assert channel.verify(webhook(hand_signature(f"{PUBLIC}/webhook?tenant=a")))
    assert channel.verify(webhook(hand_signature(f"{PUBLIC}:443/webhook?tenant=a")))
    # Signed over what the daemon sees, not over what Twilio called: refused.
    assert not channel.verify(webhook(hand_signature("http://127.0.0.1:8080/webhook?tenant=a")))
    assert not channel.verify(webhook(hand_signature(f"{PUBLIC}/webhook")))
    assert not channel.verify(webhook(None))
    assert not channel.verify(webhook("", BODY))
    tampered = BODY.replace(b"Hi+there", b"Hi+therE")
    assert not channel.verify(webhook(hand_signature(f"{PUBLIC}/webhook?tenant=a"), tampered))
    assert not channel.verify(webhook("x", b"\xff\xfe"))


def test_channel_signs_the_raw_target_whatever_the_host_header_says() -> None:
    # A Host header is the client's to write. Glued to the path and parsed again, a "/" or
    # "?" in it would move what the signature covers: "bot.example.com/evil" would turn a
    # request for /webhook into one Twilio signed for /evil/webhook. The public URL plus the
    # raw target is what is checked; the Host plays no part.
    channel, _, _, _ = make_channel(lambda r: httpx.Response(500))
    sneaky = {"origin": "http://bot.example.com/evil?x=", "target": "/webhook?tenant=a"}
    assert channel.verify(webhook(hand_signature(f"{PUBLIC}/webhook?tenant=a"), **sneaky))
    assert not channel.verify(webhook(hand_signature(f"{PUBLIC}/evil/webhook?tenant=a"), **sneaky))
    assert not channel.verify(
        webhook(hand_signature(f"{PUBLIC}/evil?x=/webhook?tenant=a"), **sneaky)
    )


def test_channel_without_public_url_signs_what_it_saw() -> None:
    client, _, _ = make_client(lambda r: httpx.Response(500))
    channel = TwilioChannel(
        client, PublicMedia(clock=lambda: 0.0), auth_token=TOKEN, public_url="", from_=FROM
    )
    seen = "http://127.0.0.1:8080/webhook?tenant=a"
    assert channel.verify(webhook(hand_signature(seen)))
    assert channel.verify(webhook(hand_signature("http://127.0.0.1/webhook?tenant=a")))
    assert not channel.verify(webhook(hand_signature(f"{PUBLIC}/webhook?tenant=a")))


def test_channel_parse() -> None:
    channel, _, _, _ = make_channel(lambda r: httpx.Response(500))
    (message,) = channel.parse(webhook(None)).messages
    assert message.message_id == "SM1"
    assert message.text == "Hi there"
    assert message.user == USER


async def test_channel_acknowledge_calls_nothing() -> None:
    channel, seen, http, _ = make_channel(lambda r: httpx.Response(500))
    async with http:
        with trio.fail_after(10):
            await channel.acknowledge(Inbound("SM1", USER, Kind.TEXT, text="hi"))
    assert seen == []


async def test_channel_send_text_splits_in_order() -> None:
    count = iter(range(1, 100))
    channel, seen, http, _ = make_channel(lambda r: created(f"SM{next(count)}"))
    text = ("word " * 300).strip() + "\n\n" + ("second " * 200).strip()
    async with http:
        with trio.fail_after(10):
            sids = await channel.send_text(USER, text)
    assert sids == ["SM1", "SM2"]
    bodies = [dict(form_of(r))["Body"] for r in seen]
    assert all(len(b) <= 1600 for b in bodies)
    assert bodies[0].startswith("word") and bodies[1].startswith("second")
    for request in seen:
        form = dict(form_of(request))
        assert form["From"] == FROM
        assert form["To"] == USER.address
        assert "MediaUrl" not in form


async def test_channel_send_voice_serves_the_bytes_at_a_public_url() -> None:
    channel, seen, http, media = make_channel(lambda r: created("MM" + "b" * 32))
    async with http:
        with trio.fail_after(10):
            note = await channel.prepare_voice(b"OggS-answer")
            assert seen == []  # served from our URL: nothing to call yet
            sid = await channel.send_voice(USER, note)
    assert sid == "MM" + "b" * 32
    (request,) = seen
    form = form_of(request)
    assert [name for name, _ in form] == ["From", "To", "MediaUrl"]  # no Body
    url = dict(form)["MediaUrl"]
    assert url.startswith(f"{PUBLIC}/media/")
    token = url.removeprefix(f"{PUBLIC}/media/")
    assert media.get(token) == (b"OggS-answer", "audio/ogg")


async def test_channel_send_voice_refused_forgets_the_media() -> None:
    channel, _, http, media = make_channel(lambda r: twilio_error(63016, 400))
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected):
            await channel.send_voice(USER, await channel.prepare_voice(b"OggS-answer"))
    assert len(media) == 0


async def test_channel_fetch_media_downloads_the_media_url() -> None:
    channel, seen, http, _ = make_channel(api_then_cdn)
    async with http:
        with trio.fail_after(10):
            data = await channel.fetch_media(Media(id=MEDIA_URL, mime_type="audio/ogg"))
    assert data == b"OggS-voice"
    assert [str(r.url) for r in seen] == [MEDIA_URL, CDN_URL]
