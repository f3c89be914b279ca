"""Twilio held to twilio-python, the official client nobody here wrote.

- ``RequestValidator`` signs the webhooks the tests post to the real daemon: the URL with
  its port and without, a query string, repeated names (a value sent twice, and two
  values), and a public URL behind a TLS proxy. The daemon must take every one, and the
  simulator's own signer must agree with twilio-python byte for byte.
- twilio-python's REST client, with ``client.api.base_url`` pointed at the simulator (the
  attribute every twilio-python domain builds its URLs from), sends messages and parses
  the answers and Twilio's error JSON into ``TwilioRestException``.

twilio-python is synchronous (requests): its REST calls run in a worker thread, with an
HTTP timeout of their own (twilio-python's default is none: a silent server would hold the
thread for good).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest
import trio
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import (
    HMAC_SHA256,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
    remove_port,
)
from twilio.rest import Client
from werkzeug.datastructures import MultiDict

from daemon.channels.twilio import wire
from daemon.channels.twilio.channel import TwilioChannel
from daemon.sim import audio
from daemon.sim import twilio as twilio_sim
from daemon.sim.stack import SECRETS, TWILIO_ACCOUNT_SID, TWILIO_FROM, Stack, open_stack
from daemon.sim.twilio import TwilioSim, TwilioWebhookSender, webhook_params
from tests.contract.threads import in_thread, raised

TOKEN = SECRETS["TWILIO_AUTH_TOKEN"]
USER = "16505551234"
HTTP_TIMEOUT = 10.0  # seconds, per request of twilio-python's client


def rest_client(token: str, base_url: str) -> Client:
    """twilio-python's REST client on ``base_url``, with an HTTP timeout."""
    client = Client(TWILIO_ACCOUNT_SID, token, http_client=TwilioHttpClient(timeout=HTTP_TIMEOUT))
    client.api.base_url = base_url  # where every api.twilio.com URL is built from
    return client


def close(client: Client) -> None:
    session = getattr(client.http_client, "session", None)
    if session is not None:
        session.close()


def official_signature(url: str, params: list[tuple[str, str]]) -> str:
    """X-Twilio-Signature as twilio-python computes it (a MultiDict keeps repeated names,
    as the frameworks twilio-python supports hand them over)."""
    validator = RequestValidator(TOKEN)
    signature: str = validator.compute_signature(url, MultiDict(params))
    assert validator.validate(url, MultiDict(params), signature)
    return signature


def _without_port(url: str) -> str:
    return str(remove_port(urlsplit(url)))


def _with_query(url: str, query: str) -> str:
    return urlunsplit(urlsplit(url)._replace(query=query))


# name -> (query appended to the webhook URL, extra form fields, how Twilio wrote the URL)
CASES: dict[str, tuple[str, list[tuple[str, str]], Callable[[str], str]]] = {
    "url with its port": ("", [], lambda url: url),
    "url without its port": ("", [], _without_port),
    "query string": ("src=wa&k=a%2Fb&n=Jos%C3%A9", [], lambda url: url),
    "a value sent twice": ("", [("Foo", "a"), ("Foo", "a")], lambda url: url),
    "two values of a name": ("", [("Foo", "b"), ("Foo", "a")], lambda url: url),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_the_daemon_takes_what_request_validator_signs(case: str) -> None:
    query, extra, as_twilio_wrote_it = CASES[case]
    async with open_stack(provider="twilio") as stack:
        params = webhook_params(from_wa_id=USER, body="What are your opening hours?", extra=extra)
        called = _with_query(stack.signed_url, query)
        signed = as_twilio_wrote_it(called)
        signature = official_signature(signed, params)
        # The simulator's signer (written apart from the daemon's) agrees with twilio-python.
        assert twilio_sim.sign(TOKEN, signed, params) == signature
        sender = TwilioWebhookSender(
            stack.client, _with_query(stack.daemon.webhook_url, query), auth_token=TOKEN
        )
        with trio.fail_after(20):
            response = await sender.post(params, signature=signature)
            assert response.status_code == 200, response.text
            (report,) = await stack.wait_reports(1)
    assert report.outcome == "answered"


async def test_behind_a_proxy_the_public_url_is_what_request_validator_signs() -> None:
    public = "https://bot.example.com:8443"
    async with open_stack(provider="twilio", twilio={"public_url": public}) as stack:
        params = webhook_params(from_wa_id=USER, body="Do you ship to Canada?")
        sender = TwilioWebhookSender(stack.client, stack.daemon.webhook_url, auth_token=TOKEN)
        with trio.fail_after(20):
            as_seen = official_signature(stack.daemon.webhook_url, params)
            refused = await sender.post(params, signature=as_seen)
            for url in (f"{public}/webhook", "https://bot.example.com/webhook"):
                ok = await sender.post(params, signature=official_signature(url, params))
                assert ok.status_code == 200, (url, ok.text)
            await stack.wait_reports(1)  # the second post is the same message: a duplicate
    assert refused.status_code == 401
    assert stack.daemon.web.stats.messages == {"accepted": 1, "duplicate": 1}


async def test_a_signature_request_validator_made_for_other_params_is_refused(
    either_twilio: Stack,
) -> None:
    stack = either_twilio
    params = webhook_params(from_wa_id=USER, body="hi")
    other = official_signature(stack.signed_url, [*params, ("Foo", "a")])
    with trio.fail_after(20):
        response = await stack.twilio_sender.post(params, signature=other)
    assert response.status_code == 401
    assert stack.agentforce.received == []


# ------------------------------------------------- SharedKey signatures (HMAC-SHA256, beta)

SHARED_KEY = "sharedkey-secret-0123456789abcdef"
SETTINGS = "key=webhooks_sharedkey_0123456789abcdef0123456789abcdef,algorithm=HMAC_SHA256"


@pytest.mark.parametrize("case", sorted(CASES))
def test_shared_key_signatures_are_computed_as_request_validator_does(case: str) -> None:
    # Twilio's Webhooks Rules (Public Beta) sign with a SharedKey's secret and HMAC-SHA256
    # and say so in X-Twilio-Webhooks-Signature-Settings; twilio-python 9.13 validates it.
    query, extra, as_twilio_wrote_it = CASES[case]
    url = as_twilio_wrote_it(_with_query("https://bot.example.com:8443/webhook", query))
    params = webhook_params(from_wa_id=USER, body="hi", extra=extra)
    validator = RequestValidator(SHARED_KEY)
    official = validator.compute_signature(url, MultiDict(params), HMAC_SHA256)
    assert validator.validate(url, MultiDict(params), official, HMAC_SHA256)
    assert wire.signature(SHARED_KEY, url, params, algorithm=wire.HMAC_SHA256) == official
    origin, target = url.split("/webhook", 1)
    target = "/webhook" + target
    assert wire.verify(SHARED_KEY, origin, target, params, official, algorithm=wire.HMAC_SHA256)
    assert not wire.verify(SHARED_KEY, origin, target, params, official)  # not a SHA-1 one
    assert wire.signature_well_formed(official, algorithm=wire.HMAC_SHA256)
    assert not wire.signature_well_formed(official)  # 32 bytes, not 20


@pytest.mark.parametrize(
    "header",
    [
        SETTINGS,
        "algorithm=HMAC_SHA256,key=webhooks_sharedkey_x",
        " key = k , algorithm = HMAC_SHA256 ",
        "key=webhooks_sharedkey_x",  # no algorithm: the legacy one
        "key=k,algorithm=HMAC_SHA512",  # one nobody supports yet: refused
    ],
)
def test_the_settings_header_is_read_as_twilio_python_reads_it(header: str) -> None:
    settings = wire.signature_settings(header)
    assert settings is not None
    assert settings.algorithm == get_signature_algorithm(header).upper()
    assert SIGNATURE_SETTINGS_HEADER.lower() == wire.SIGNATURE_SETTINGS_HEADER
    assert wire.signature_settings(None) is None and wire.signature_settings(" ") is None
    url, params = "https://bot.example.com/webhook", [("Body", "hi")]
    if settings.algorithm == "HMAC_SHA512":  # as twilio-python: verifies nothing
        good = RequestValidator(SHARED_KEY).compute_signature(url, MultiDict(params), HMAC_SHA256)
        assert not RequestValidator(SHARED_KEY).validate(
            url, MultiDict(params), good, "HMAC_SHA512"
        )
        assert not wire.verify(SHARED_KEY, url, "", params, good, algorithm=settings.algorithm)
        assert not wire.signature_well_formed(good, algorithm=settings.algorithm)


async def test_the_daemon_refuses_a_shared_key_signed_webhook_it_cannot_check() -> None:
    # The daemon takes only the Auth Token's signature for now (README "Providers"): the
    # SharedKey's secret has no place in the config yet. Such a webhook is refused before its
    # body is read (a SHA-256 signature is no well-formed SHA-1 one), never taken.
    async with open_stack(provider="twilio") as stack:
        params = webhook_params(from_wa_id=USER, body="hi")
        signed = RequestValidator(SHARED_KEY).compute_signature(
            stack.signed_url, MultiDict(params), HMAC_SHA256
        )
        with trio.fail_after(20):
            response = await stack.client.post(
                stack.daemon.webhook_url,
                content=urlencode(params),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": signed,
                    SIGNATURE_SETTINGS_HEADER: SETTINGS,
                },
            )
    assert response.status_code == 401
    assert stack.daemon.web.stats.webhooks == {"unsigned": 1}
    assert stack.agentforce.received == []


@pytest.fixture
async def either_twilio() -> AsyncIterator[Stack]:
    async with open_stack(provider="twilio") as stack:
        yield stack


# --------------------------------------------------------------------------- the REST client


@pytest.fixture
async def twilio(nursery: trio.Nursery) -> TwilioSim:
    sim = TwilioSim(account_sid=TWILIO_ACCOUNT_SID, auth_token=TOKEN, whatsapp_from=TWILIO_FROM)
    with trio.fail_after(10):
        await sim.start(nursery)
    return sim


@pytest.fixture
def rest(twilio: TwilioSim) -> Iterator[Client]:
    assert twilio.base_url is not None
    client = rest_client(TOKEN, twilio.base_url)
    assert client.http_client.timeout == HTTP_TIMEOUT
    yield client
    close(client)


async def rest_error(fn: Callable[[], Any]) -> TwilioRestException:
    return await raised(TwilioRestException, fn)


async def test_twilio_python_sends_a_message_and_parses_the_resource(
    rest: Client, twilio: TwilioSim
) -> None:
    to = f"whatsapp:+{USER}"
    message = await in_thread(
        lambda: rest.messages.create(from_=TWILIO_FROM, to=to, body="Hello from twilio-python")
    )
    (sent,) = twilio.sent
    assert message.sid == sent.sid and message.sid.startswith("SM")
    assert (message.to, message.from_, message.body) == (to, TWILIO_FROM, sent.body)
    assert message.status == "queued" and message.direction == "outbound-api"
    assert message.date_created is not None  # RFC 2822, parsed by twilio-python
    assert message.account_sid == TWILIO_ACCOUNT_SID
    assert sent.form == [("To", to), ("From", TWILIO_FROM), ("Body", "Hello from twilio-python")]


@pytest.mark.parametrize(
    ("to", "body", "code", "status"),
    [
        (f"whatsapp:{USER}", "hi", 21211, 400),  # no '+': not a WhatsApp address
        (f"whatsapp:+{USER}", "x" * 1601, 21617, 400),  # over the 1600 characters
    ],
)
async def test_twilio_python_parses_refusals(
    rest: Client, twilio: TwilioSim, to: str, body: str, code: int, status: int
) -> None:
    error = await rest_error(lambda: rest.messages.create(from_=TWILIO_FROM, to=to, body=body))
    assert (error.code, error.status) == (code, status)
    assert error.msg.startswith("Unable to create record: ")
    assert twilio.sent == []


async def test_twilio_python_parses_scripted_failures_and_bad_credentials(
    rest: Client, twilio: TwilioSim
) -> None:
    twilio.fail_sends(63016)  # outside the 24 h window
    window = await rest_error(
        lambda: rest.messages.create(from_=TWILIO_FROM, to=f"whatsapp:+{USER}", body="late")
    )
    assert (window.code, window.status) == (63016, 400)
    stranger = rest_client("not-the-token", rest.api.base_url)
    try:
        denied = await rest_error(
            lambda: stranger.messages.create(from_=TWILIO_FROM, to=f"whatsapp:+{USER}", body="x")
        )
    finally:
        close(stranger)
    assert (denied.code, denied.status) == (20003, 401)


async def test_twilio_python_sends_a_voice_note_by_media_url_as_the_daemon_does() -> None:
    # The daemon's voice-note path: the Ogg/Opus clip in its PublicMedia, served on the
    # public listener, and a send with MediaUrl and no Body; Twilio fetches the URL itself.
    async with open_stack(provider="twilio") as stack:
        channel = stack.daemon.web.channel
        assert isinstance(channel, TwilioChannel)
        clip = audio.speak("Your order ships tomorrow.")
        note = await channel.prepare_voice(clip)  # into the provider's PublicMedia
        url = channel.media_url_for(note.ref)
        to = f"whatsapp:+{USER}"
        assert stack.twilio.base_url is not None
        rest = rest_client(TOKEN, stack.twilio.base_url)
        try:
            message = await in_thread(
                lambda: rest.messages.create(from_=TWILIO_FROM, to=to, media_url=[url])
            )
        finally:
            close(rest)
        with trio.fail_after(20):
            (sent,) = await stack.twilio.wait_sent(1, to=to)
    # twilio-python parsed the answer: a media message, queued, nothing in its body.
    assert message.sid == sent.sid and message.sid.startswith("MM")
    assert (message.num_media, message.body, message.status) == ("1", "", "queued")
    # What it sent is what the daemon sends for a voice note (the order aside).
    ours = wire.message_form(TWILIO_FROM, to, media_url=url)
    assert sorted(sent.form) == sorted(ours)
    # The simulator fetched the daemon's URL and got the clip as a voice note.
    assert sent.media == clip and sent.renders_as_voice_note and not sent.failed
