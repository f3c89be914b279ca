"""The Twilio simulator answers like Twilio's WhatsApp API (reference/whatsapp.md §6), over
real HTTP; its webhook sender signs like Twilio does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
import pytest
import trio
from quart import Response, request
from quart_trio import QuartTrio

from daemon.channels.twilio import wire
from daemon.channels.twilio.channel import TwilioChannel
from daemon.channels.twilio.client import TwilioClient
from daemon.channels.twilio.public_media import PublicMedia
from daemon.errors import UpstreamRejected
from daemon.model import Kind, Media, User
from daemon.sim import twilio as twilio_sim
from daemon.sim.audio import speak
from daemon.sim.base import Faults, start_app
from daemon.sim.twilio import TwilioSim, TwilioWebhookSender, webhook_params
from tests.unit.test_twilio_wire import REPEATED, REPEATED_SIGNED, REPEATED_URL

ACCOUNT = "AC" + "2" * 32
TOKEN = "sim-auth-token"
FROM = "whatsapp:+14155238886"
TO = "whatsapp:+15551234567"
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
SID = re.compile(r"(SM|MM)[0-9a-f]{32}")


@pytest.fixture
def sim() -> TwilioSim:
    return TwilioSim(account_sid=ACCOUNT, auth_token=TOKEN)


@pytest.fixture
async def client(sim: TwilioSim, nursery: trio.Nursery) -> AsyncIterator[httpx.AsyncClient]:
    with trio.fail_after(10):
        await sim.start(nursery)
    async with httpx.AsyncClient(base_url=sim.base_url or "", auth=(ACCOUNT, TOKEN)) as c:
        yield c


@dataclass
class Origin:
    """A stand-in for the daemon: serves media files and records webhook posts."""

    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    posts: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    base_url: str = ""


@pytest.fixture
async def origin(nursery: trio.Nursery) -> Origin:
    state = Origin()
    app = QuartTrio(__name__)

    @app.get("/media/<name>")
    async def media(name: str) -> Response:
        if name not in state.files:
            return Response("gone", status=404)
        data, mime = state.files[name]
        return Response(data, content_type=mime)

    @app.post("/hook")
    async def hook() -> Response:
        body = await request.get_data(as_text=False)
        assert isinstance(body, bytes)
        state.posts.append((request.url, dict(request.headers), body))
        return Response(wire.EMPTY_TWIML, content_type="text/xml")

    with trio.fail_after(10):
        state.base_url = await start_app(nursery, app)
    return state


def assert_twilio_error(response: httpx.Response, code: int, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body == {
        "code": code,
        "message": body["message"],
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    assert body["message"]
    return body


# --- Messages API ---------------------------------------------------------------------------


async def test_text_send_answers_201_with_a_message_resource(
    sim: TwilioSim, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        response = await client.post(MESSAGES, data={"From": FROM, "To": TO, "Body": "Hello"})
    assert response.status_code == 201, response.text
    doc = response.json()
    assert SID.fullmatch(doc["sid"]) and doc["sid"].startswith("SM")
    assert doc["account_sid"] == ACCOUNT
    assert (doc["from"], doc["to"], doc["body"]) == (FROM, TO, "Hello")
    assert doc["status"] == "queued"
    assert doc["num_media"] == "0"
    assert doc["uri"] == f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{doc['sid']}.json"
    assert doc["date_created"].endswith("+0000")
    (sent,) = sim.sent
    assert (sent.sid, sent.to, sent.body, sent.media_urls) == (doc["sid"], TO, "Hello", ())
    assert not sent.failed


@pytest.mark.parametrize(
    "auth",
    [None, (ACCOUNT, "wrong-token"), ("AC" + "9" * 32, TOKEN)],
)
async def test_basic_auth_is_required(
    sim: TwilioSim, client: httpx.AsyncClient, auth: tuple[str, str] | None
) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=sim.base_url or "", auth=auth) as other:
            response = await other.post(MESSAGES, data={"From": FROM, "To": TO, "Body": "x"})
    assert_twilio_error(response, 20003, 401)
    assert response.headers["www-authenticate"].startswith("Basic")
    assert sim.sent == []


async def test_bearer_is_not_basic(sim: TwilioSim, client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=sim.base_url or "") as other:
            response = await other.post(
                MESSAGES,
                data={"From": FROM, "To": TO, "Body": "x"},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
    assert_twilio_error(response, 20003, 401)


async def test_another_account_in_the_path_is_not_found(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        response = await client.post(
            f"/2010-04-01/Accounts/AC{'3' * 32}/Messages.json",
            data={"From": FROM, "To": TO, "Body": "x"},
        )
    assert_twilio_error(response, 20404, 404)


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": FROM, "Body": "x"}, 21604),
        ({"From": FROM, "To": "+15551234567", "Body": "x"}, 21211),  # no whatsapp: prefix
        ({"From": FROM, "To": "whatsapp:15551234567", "Body": "x"}, 21211),  # no +
        ({"To": TO, "Body": "x"}, 21603),
        ({"From": "+14155238886", "To": TO, "Body": "x"}, 21212),
        ({"From": "whatsapp:+14155230000", "To": TO, "Body": "x"}, 63007),  # not our sender
        ({"From": FROM, "To": TO}, 21602),
        ({"From": FROM, "To": TO, "Body": ""}, 21602),
        ({"From": FROM, "To": TO, "Body": "x" * 1601}, 21617),
        ({"From": FROM, "To": TO, "MediaUrl": "ftp://host/file.ogg"}, 21620),
        ({"From": FROM, "To": TO, "MediaUrl": "not a url"}, 21620),
    ],
)
async def test_validation_errors_carry_twilio_codes(
    sim: TwilioSim, client: httpx.AsyncClient, form: dict[str, str], code: int
) -> None:
    with trio.fail_after(10):
        response = await client.post(MESSAGES, data=form)
    assert_twilio_error(response, code, 400)
    assert [(r.code, r.http_status) for r in sim.rejected] == [(code, 400)]
    assert sim.sent == []


async def test_body_of_exactly_1600_characters_is_fine(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        response = await client.post(MESSAGES, data={"From": FROM, "To": TO, "Body": "é" * 1600})
    assert response.status_code == 201


async def test_json_bodies_are_not_read(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        response = await client.post(MESSAGES, json={"From": FROM, "To": TO, "Body": "x"})
    assert_twilio_error(response, 21604, 400)


async def test_scripted_failures(sim: TwilioSim, client: httpx.AsyncClient) -> None:
    sim.fail_sends(63016)
    sim.fail_sends(20429, http_status=429)
    form = {"From": FROM, "To": TO, "Body": "x"}
    with trio.fail_after(10):
        first = await client.post(MESSAGES, data=form)
        second = await client.post(MESSAGES, data=form)
        third = await client.post(MESSAGES, data=form)
    body = assert_twilio_error(first, 63016, 400)
    assert "Message Template" in body["message"]
    assert_twilio_error(second, 20429, 429)
    assert third.status_code == 201
    assert [r.code for r in sim.rejected] == [63016, 20429]
    assert len(sim.sent) == 1


async def test_faults_answer_twilio_errors(sim: TwilioSim, client: httpx.AsyncClient) -> None:
    sim.faults.error_rate = 1.0
    with trio.fail_after(10):
        response = await client.post(MESSAGES, data={"From": FROM, "To": TO, "Body": "x"})
    assert_twilio_error(response, 20503, 503)
    assert sim.sent == []


async def test_unknown_route_is_twilio_404(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        response = await client.get("/2010-04-01/Nope.json")
    assert_twilio_error(response, 20404, 404)


# --- MediaUrl fetches -----------------------------------------------------------------------


async def test_media_url_is_fetched_and_recorded(
    sim: TwilioSim, client: httpx.AsyncClient, origin: Origin
) -> None:
    voice = speak("your answer")
    origin.files["voice"] = (voice, "audio/ogg")
    url = f"{origin.base_url}/media/voice"
    with trio.fail_after(10):
        response = await client.post(MESSAGES, data={"From": FROM, "To": TO, "MediaUrl": url})
        assert response.status_code == 201
        assert response.json()["sid"].startswith("MM")
        assert response.json()["num_media"] == "1"
        (sent,) = await sim.wait_sent(1, to="+15551234567")
    assert sent.media == voice
    assert sent.media_content_type == "audio/ogg"
    assert sent.media_error is None
    assert sent.renders_as_voice_note
    assert sent.body is None
    (fetch,) = sim.media_fetches
    assert (fetch.url, fetch.status, fetch.error) == (url, 200, None)


@pytest.mark.parametrize(
    ("name", "files", "error"),
    [
        ("missing", {}, "11200"),
        ("fake", {"fake": (b"not ogg at all", "audio/ogg")}, "63021"),
        ("text", {"text": (b"hello", "text/plain")}, "63021"),
        ("empty", {"empty": (b"", "audio/ogg")}, "63019"),
    ],
)
async def test_media_url_failures_fail_the_message(
    sim: TwilioSim,
    client: httpx.AsyncClient,
    origin: Origin,
    name: str,
    files: dict[str, tuple[bytes, str]],
    error: str,
) -> None:
    origin.files.update(files)
    with trio.fail_after(10):
        response = await client.post(
            MESSAGES, data={"From": FROM, "To": TO, "MediaUrl": f"{origin.base_url}/media/{name}"}
        )
        assert response.status_code == 201  # Twilio accepts first, fails the message later
        (sent,) = await sim.wait_sent(1)
    assert sent.failed
    assert sent.media_error is not None and sent.media_error.startswith(error)
    assert sent.media is None
    assert not sent.renders_as_voice_note


async def test_stereo_ogg_is_sent_but_not_a_voice_note(
    sim: TwilioSim, client: httpx.AsyncClient, origin: Origin
) -> None:
    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48_000, layout="stereo")
        for i in range(5):
            frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
            frame.planes[0].update(bytes(4 * 960))
            frame.sample_rate = 48_000
            frame.pts = i * 960
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    origin.files["stereo"] = (buf.getvalue(), "audio/ogg")
    with trio.fail_after(10):
        await client.post(
            MESSAGES, data={"From": FROM, "To": TO, "MediaUrl": f"{origin.base_url}/media/stereo"}
        )
        (sent,) = await sim.wait_sent(1)
    assert sent.media_error is None
    assert not sent.renders_as_voice_note


# --- user media -----------------------------------------------------------------------------


async def test_user_media_needs_auth_and_redirects_to_the_cdn(
    sim: TwilioSim, client: httpx.AsyncClient
) -> None:
    url = sim.add_user_media(b"OggS-user", "audio/ogg")
    assert re.fullmatch(
        rf"{re.escape(sim.base_url or '')}/2010-04-01/Accounts/{ACCOUNT}/Messages/MM[0-9a-f]{{32}}"
        r"/Media/ME[0-9a-f]{32}",
        url,
    )
    with trio.fail_after(10):
        async with httpx.AsyncClient() as anonymous:
            refused = await anonymous.get(url)
        redirect = await client.get(url)
        assert redirect.status_code == 302
        location = redirect.headers["location"]
        # The CDN is another host than the API (api.twilio.com -> mms.twiliocdn.com).
        cdn_base = (sim.base_url or "").replace("127.0.0.1", "localhost")
        assert location.startswith(f"{cdn_base}/cdn/")
        assert sim.cdn_base_url() == cdn_base
        async with httpx.AsyncClient() as anonymous:
            on_api_host = await anonymous.get(location.replace("localhost", "127.0.0.1"))
            data = await anonymous.get(location)
        # Pre-signed: credentials are not needed, but a client that sends them is recorded.
        with_credentials = await client.get((await client.get(url)).headers["location"])
    assert_twilio_error(refused, 20003, 401)
    assert on_api_host.status_code == 404
    assert data.status_code == 200
    assert data.content == b"OggS-user"
    assert data.headers["content-type"] == "audio/ogg"
    assert with_credentials.status_code == 200
    assert [(d.hop, d.status, d.authorized) for d in sim.media_downloads] == [
        ("api", 401, False),
        ("api", 302, True),
        ("cdn", 404, False),
        ("cdn", 200, False),
        ("api", 302, True),
        ("cdn", 200, True),
    ]


async def test_unknown_user_media_is_not_found(sim: TwilioSim, client: httpx.AsyncClient) -> None:
    url = sim.add_user_media(b"x", "audio/ogg")
    with trio.fail_after(10):
        wrong_media = await client.get(url[:-4] + "0000")
        wrong_cdn = await client.get("/cdn/nope")
    assert_twilio_error(wrong_media, 20404, 404)
    assert wrong_cdn.status_code == 404


async def test_media_not_ready(sim: TwilioSim, client: httpx.AsyncClient) -> None:
    url = sim.add_user_media(b"x", "audio/ogg")
    sim.media_not_ready = 2
    with trio.fail_after(10):
        statuses = [(await client.get(url)).status_code for _ in range(3)]
    assert statuses == [404, 404, 302]
    assert sim.media_not_ready == 0


# --- the daemon's Twilio channel against the simulator ----------------------------------------


async def test_channel_round_trip(
    sim: TwilioSim, client: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    """Text, voice note (fetched back from a stand-in of the daemon's media route), download."""
    store = PublicMedia()
    app = QuartTrio(__name__)

    @app.get("/media/<token>")
    async def media(token: str) -> Response:
        found = store.get(token)
        if found is None:
            return Response("gone", status=404)
        return Response(found[0], content_type=found[1])

    with trio.fail_after(10):
        public = await start_app(nursery, app)
    async with httpx.AsyncClient() as http:
        twilio = TwilioClient(
            http,
            api_url=sim.base_url or "",
            account_sid=ACCOUNT,
            auth_token=TOKEN,
            # the CDN, on the API's port; the API host is allowed as api_url's
            media_hosts=(f"localhost:{httpx.URL(sim.base_url or '').port}",),
            max_media_bytes=1024 * 1024,
        )
        channel = TwilioChannel(twilio, store, auth_token=TOKEN, public_url=public, from_=FROM)
        user = User(key="15551234567", address=TO)
        voice = speak("the answer")
        inbound = sim.add_user_media(b"OggS-question", "audio/ogg")
        with trio.fail_after(10):
            sids = await channel.send_text(user, "a " * 1000)
            await channel.send_voice(user, await channel.prepare_voice(voice))
            got = await channel.fetch_media(Media(id=inbound, mime_type="audio/ogg"))
            sent = await sim.wait_sent(3, to=TO)
    assert len(sids) == 2
    assert [m.sid for m in sent[:2]] == sids
    assert sent[2].media == voice
    assert sent[2].renders_as_voice_note
    assert got == b"OggS-question"
    # Credentials to the API hop only, never to the CDN it redirects to.
    assert [(d.hop, d.authorized) for d in sim.media_downloads] == [("api", True), ("cdn", False)]


async def test_channel_gets_the_mapped_error(sim: TwilioSim, client: httpx.AsyncClient) -> None:
    sim.fail_sends(63016)
    async with httpx.AsyncClient() as http:
        twilio = TwilioClient(
            http,
            api_url=sim.base_url or "",
            account_sid=ACCOUNT,
            auth_token=TOKEN,
            media_hosts=("127.0.0.1",),
            max_media_bytes=1024,
        )
        with trio.fail_after(10), pytest.raises(UpstreamRejected) as caught:
            await twilio.send(wire.message_form(FROM, TO, body="late"))
    assert caught.value.code == "63016"


# --- webhooks -------------------------------------------------------------------------------


def test_webhook_params_look_like_the_captured_body() -> None:
    params = webhook_params(from_wa_id="558282136275", body="Olá", profile_name="Jhonata")
    names = [name for name, _ in params]
    for expected in (
        "SmsMessageSid",
        "NumMedia",
        "ProfileName",
        "SmsSid",
        "WaId",
        "SmsStatus",
        "Body",
        "To",
        "NumSegments",
        "ReferralNumMedia",
        "MessageSid",
        "AccountSid",
        "From",
        "ApiVersion",
    ):
        assert names.count(expected) == 1, expected
    fields = dict(params)
    assert fields["From"] == "whatsapp:+558282136275"
    assert fields["To"] == "whatsapp:+14155238886"
    assert fields["SmsStatus"] == "received"
    assert fields["MessageSid"] == fields["SmsSid"] == fields["SmsMessageSid"]
    assert fields["NumMedia"] == "0"
    voice = dict(webhook_params(from_wa_id="1555", media=("https://m/x", "audio/ogg")))
    assert (voice["NumMedia"], voice["MediaUrl0"], voice["MediaContentType0"]) == (
        "1",
        "https://m/x",
        "audio/ogg",
    )
    assert voice["MessageSid"].startswith("MM")
    with pytest.raises(ValueError):
        webhook_params(from_wa_id="+1555")


async def test_webhook_sender_signs_the_public_url(origin: Origin) -> None:
    public = "https://bot.example.com/hook"
    params = webhook_params(from_wa_id="15551234567", body="Grüße & more")
    async with httpx.AsyncClient() as http:
        sender = TwilioWebhookSender(
            http, f"{origin.base_url}/hook", auth_token=TOKEN, signed_url=public
        )
        with trio.fail_after(10):
            ok = await sender.post(params)
            forged = await sender.post(params, signature="Zm9yZ2Vk")
            unsigned = await sender.post(params, signature=None)
    assert [r.status_code for r in (ok, forged, unsigned)] == [200, 200, 200]
    assert ok.content == wire.EMPTY_TWIML
    (_, h1, body), (_, h2, _), (_, h3, _) = origin.posts
    assert h1["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert wire.parse_form(body) == params
    signature = h1["X-Twilio-Signature"]
    assert wire.verify(TOKEN, "https://bot.example.com", "/hook", wire.parse_form(body), signature)
    assert not wire.verify(TOKEN, origin.base_url, "/hook", params, signature)
    assert h2["X-Twilio-Signature"] == "Zm9yZ2Vk"
    assert "X-Twilio-Signature" not in h3
    (message,) = wire.parse_webhook(wire.parse_form(body)).messages
    assert (message.kind, message.text) == (Kind.TEXT, "Grüße & more")


async def test_webhook_sender_signs_raw_bytes_as_parsed(origin: Origin) -> None:
    async with httpx.AsyncClient() as http:
        sender = TwilioWebhookSender(http, f"{origin.base_url}/hook", auth_token=TOKEN)
        with trio.fail_after(10):
            await sender.post(b"MessageSid=SM1&From=whatsapp%3A%2B1555&Body=a+b")
    ((url, headers, body),) = origin.posts
    assert url == f"{origin.base_url}/hook"
    signature = headers["X-Twilio-Signature"]
    assert wire.verify(TOKEN, origin.base_url, "/hook", wire.parse_form(body), signature)


def test_signer_treats_repeated_names_and_values_like_twilio_python() -> None:
    # The simulator's own HMAC (written apart from channels.twilio.wire) against the vector
    # the wire tests computed by hand: names sorted, the distinct values of a name (a value
    # sent twice counts once) sorted by code point, name + value appended after the URL
    # (twilio-python's sorted(set(values)), twilio-node's new Set(values)).
    by_hand = base64.b64encode(hmac.new(b"12345", REPEATED_SIGNED.encode(), hashlib.sha1).digest())
    assert by_hand.decode() == "Aid8zHPgmEY9ayJRsNV8l7bS//I="
    assert twilio_sim.sign("12345", REPEATED_URL, REPEATED) == by_hand.decode()


def test_user_media_needs_a_started_simulator() -> None:
    sim = TwilioSim(account_sid=ACCOUNT, auth_token=TOKEN, faults=Faults(error_rate=0.5))
    assert sim.faults.error_rate == 0.5
    with pytest.raises(RuntimeError):
        sim.add_user_media(b"x", "audio/ogg")  # not started: no host to name
