from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable, Sequence
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP

import httpx
import pytest
import trio

from daemon.cache.media_ids import MediaIds
from daemon.channels.base import Channel, WebhookRequest
from daemon.channels.media import host_allowed
from daemon.channels.meta.channel import MetaChannel
from daemon.channels.meta.client import GraphClient
from daemon.channels.meta.wire import read_payload, text_payload, voice_payload
from daemon.errors import Reason, UpstreamError, UpstreamRejected, UpstreamUnavailable
from daemon.model import Inbound, Kind, Media, User

GRAPH = "https://graph.test/v23.0"
PNID = "106540352242922"
TOKEN = "EAAG-secret-token"
BEARER = f"Bearer {TOKEN}"
MEDIA_HOST = "lookaside.fbsbx.com"
MEDIA_URL = f"https://{MEDIA_HOST}/whatsapp_business/attachments/?mid=1&hash=x"

Handler = Callable[[httpx.Request], httpx.Response]


def make_graph(
    handler: Handler,
    *,
    media_hosts: Sequence[str] = (MEDIA_HOST,),
    max_media_bytes: int = 1024,
    graph_url: str = GRAPH + "/",
) -> tuple[GraphClient, list[httpx.Request], httpx.AsyncClient]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return handler(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(record))
    graph = GraphClient(
        http,
        graph_url=graph_url,
        phone_number_id=PNID,
        access_token=TOKEN,
        media_hosts=media_hosts,
        max_media_bytes=max_media_bytes,
    )
    return graph, seen, http


def sent_json(request: httpx.Request) -> object:
    return json.loads(request.content)


def graph_error(code: int) -> httpx.Response:
    body = {"error": {"message": f"(#{code}) x", "type": "OAuthException", "code": code}}
    return httpx.Response(400, json=body)


# --- post_message -----------------------------------------------------------------------------


async def test_send_text_posts_the_exact_payload() -> None:
    graph, seen, http = make_graph(
        lambda r: httpx.Response(200, json={"messages": [{"id": "wamid.NEW"}]})
    )
    async with http:
        with trio.fail_after(10):
            wamid = await graph.post_message(text_payload("+16505551234", "Hello ünïcode"))
    assert wamid == "wamid.NEW"
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == f"{GRAPH}/{PNID}/messages"
    assert request.headers["authorization"] == BEARER
    assert request.headers["content-type"] == "application/json"
    assert sent_json(request) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+16505551234",
        "type": "text",
        "text": {"preview_url": False, "body": "Hello ünïcode"},
    }


async def test_read_receipt_returns_empty_id() -> None:
    graph, seen, http = make_graph(lambda r: httpx.Response(200, json={"success": True}))
    async with http:
        with trio.fail_after(10):
            assert await graph.post_message(read_payload("wamid.IN", typing=True)) == ""
    assert sent_json(seen[0]) == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.IN",
        "typing_indicator": {"type": "text"},
    }


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, json={"messages": []}),
        httpx.Response(200, json={"success": False}),
        httpx.Response(200, text="ok"),
        httpx.Response(200, json=[1]),
    ],
)
async def test_send_with_a_malformed_answer_is_rejected(response: httpx.Response) -> None:
    graph, _, http = make_graph(lambda r: response)
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected):
            await graph.post_message(text_payload("+1", "x"))


@pytest.mark.parametrize(
    ("response", "cls", "code"),
    [
        (graph_error(131056), UpstreamUnavailable, "131056"),
        (graph_error(130429), UpstreamUnavailable, "130429"),
        (graph_error(131047), UpstreamRejected, "131047"),
        (graph_error(190), UpstreamRejected, "190"),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), UpstreamUnavailable, None),
    ],
)
async def test_graph_errors_are_mapped_by_code(
    response: httpx.Response, cls: type[Exception], code: str | None
) -> None:
    graph, _, http = make_graph(lambda r: response)
    async with http:
        with trio.fail_after(10), pytest.raises(cls) as caught:
            await graph.post_message(text_payload("+1", "x"))
    assert isinstance(caught.value, UpstreamRejected | UpstreamUnavailable)
    assert caught.value.code == code and caught.value.upstream == "whatsapp"


@pytest.mark.parametrize(
    ("payload", "code", "reason"),
    [
        # Graph's "no such object" (100) on a send by media id: that upload is gone.
        (voice_payload("+1", "media-1"), 100, Reason.MEDIA_GONE),
        (voice_payload("+1", "media-1"), 131053, Reason.MEDIA_GONE),
        # The same codes on a text mean what they say: no upload would help.
        (text_payload("+1", "x"), 100, None),
        (text_payload("+1", "x"), 131053, None),
        (voice_payload("+1", "media-1"), 131047, Reason.RECIPIENT),
        (text_payload("+1", "x"), 131056, Reason.USER_BUSY),
    ],
)
async def test_send_errors_carry_their_reason(
    payload: dict[str, object], code: int, reason: str | None
) -> None:
    graph, _, http = make_graph(lambda r: graph_error(code))
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamError) as caught:
            await graph.post_message(payload)
    assert (caught.value.code, caught.value.reason) == (str(code), reason)


async def test_media_url_of_a_gone_media_id_is_media_gone() -> None:
    graph, _, http = make_graph(lambda r: graph_error(100))
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected) as caught:
            await graph.media_url("1908647269898587")
    assert caught.value.reason == Reason.MEDIA_GONE


async def test_transport_error_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    graph, _, http = make_graph(refuse)
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamUnavailable):
            await graph.post_message(text_payload("+1", "x"))


# --- media URL and upload ---------------------------------------------------------------------


async def test_media_url() -> None:
    answer = {
        "messaging_product": "whatsapp",
        "url": MEDIA_URL,
        "mime_type": "audio/ogg",
        "sha256": "abc",
        "file_size": "123",
        "id": "1908647269898587",
    }
    graph, seen, http = make_graph(lambda r: httpx.Response(200, json=answer))
    async with http:
        with trio.fail_after(10):
            assert await graph.media_url("1908647269898587") == (MEDIA_URL, "audio/ogg")
    (request,) = seen
    assert request.method == "GET"
    assert request.url.path == "/v23.0/1908647269898587"
    assert "phone_number_id" not in request.url.params  # refused for users' media (§4)
    assert request.headers["authorization"] == BEARER


async def test_media_url_without_url_is_rejected() -> None:
    graph, seen, http = make_graph(lambda r: httpx.Response(200, json={"id": "1"}))
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected):
            await graph.media_url("../../me")
    assert seen[0].url.raw_path == b"/v23.0/..%2F..%2Fme"  # an id never becomes a path


def form_parts(request: httpx.Request) -> dict[str, EmailMessage]:
    head = b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n"
    message = BytesParser(policy=HTTP).parsebytes(head + request.content)
    assert isinstance(message, EmailMessage) and message.is_multipart()
    parts: dict[str, EmailMessage] = {}
    for part in message.iter_parts():
        assert isinstance(part, EmailMessage)
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str)
        parts[name] = part
    return parts


def payload(part: EmailMessage) -> bytes:
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return data


async def test_upload_is_multipart() -> None:
    graph, seen, http = make_graph(lambda r: httpx.Response(200, json={"id": "1013859600285441"}))
    async with http:
        with trio.fail_after(10):
            assert await graph.upload(b"OggS\x00fake") == "1013859600285441"
    (request,) = seen
    assert str(request.url) == f"{GRAPH}/{PNID}/media"
    assert request.headers["authorization"] == BEARER
    parts = form_parts(request)
    assert set(parts) == {"messaging_product", "type", "file"}
    assert payload(parts["messaging_product"]) == b"whatsapp"
    # §4.1: base audio/ogg is not supported; the field and the file part name Opus alike.
    assert payload(parts["type"]) == b"audio/ogg; codecs=opus"
    assert payload(parts["file"]) == b"OggS\x00fake"
    assert parts["file"].get_filename() == "voice.ogg"
    # Byte for byte (the email parser would re-quote the parameter).
    assert b"\r\nContent-Type: audio/ogg; codecs=opus\r\n" in request.content


# --- download ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "hosts", "allowed"),
    [
        ("https://lookaside.fbsbx.com/x", ["lookaside.fbsbx.com"], True),
        ("https://LOOKASIDE.fbsbx.com./x", ["lookaside.fbsbx.com"], True),
        # the port counts: an entry without one allows the scheme's default only
        ("https://lookaside.fbsbx.com:8443/x", ["lookaside.fbsbx.com"], False),
        ("https://lookaside.fbsbx.com:443/x", ["lookaside.fbsbx.com"], True),
        ("https://lookaside.fbsbx.com:8443/x", ["lookaside.fbsbx.com:8443"], True),
        ("https://lookaside.fbsbx.com/x", ["lookaside.fbsbx.com:8443"], False),
        ("https://a.fbsbx.com:8443/x", ["*.fbsbx.com"], False),
        ("https://a.fbsbx.com:8443/x", ["*.fbsbx.com:8443"], True),
        ("http://[::1]:9000/m", ["[::1]:9000"], True),
        ("http://[::1]:9001/m", ["[::1]:9000"], False),
        ("https://a.lookaside.fbsbx.com/x", ["lookaside.fbsbx.com"], False),
        ("https://evilfbsbx.com/x", ["*.fbsbx.com"], False),
        ("https://fbsbx.com/x", ["*.fbsbx.com"], False),
        ("https://a.b.fbsbx.com/x", ["*.fbsbx.com"], True),
        ("https://lookaside.fbsbx.com.evil.com/x", ["lookaside.fbsbx.com"], False),
        ("https://lookaside.fbsbx.com@evil.com/x", ["lookaside.fbsbx.com"], False),
        ("https://evil.com/?lookaside.fbsbx.com", ["lookaside.fbsbx.com"], False),
        ("http://127.0.0.1:9000/m", ["127.0.0.1"], False),
        ("http://127.0.0.1:9000/m", ["127.0.0.1:9000"], True),
        ("https://lookaside.fbsbx.com/x", [], False),
        ("https://lookaside.fbsbx.com/x", [""], False),
    ],
)
def test_host_allowed(url: str, hosts: list[str], allowed: bool) -> None:
    assert host_allowed(httpx.URL(url), hosts) is allowed


async def test_download_sends_bearer_and_user_agent_to_allowed_host() -> None:
    graph, seen, http = make_graph(lambda r: httpx.Response(200, content=b"OggS-audio"))
    async with http:
        with trio.fail_after(10):
            assert await graph.download(MEDIA_URL) == b"OggS-audio"
    (request,) = seen
    assert str(request.url) == MEDIA_URL
    assert request.headers["authorization"] == BEARER
    assert request.headers["user-agent"].startswith("wa-agentd/")


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/steal",
        "https://evilfbsbx.com/x",
        f"https://{MEDIA_HOST}.evil.example/x",
        f"https://{MEDIA_HOST}@evil.example/x",
        f"https://user:pw@{MEDIA_HOST}/x",
        f"http://{MEDIA_HOST}/plain",  # plain http to a real host would expose the token
        f"ftp://{MEDIA_HOST}/x",
        "file:///etc/passwd",
        "not a url at all",
        "",
    ],
)
async def test_download_never_sends_the_token_elsewhere(url: str) -> None:
    graph, seen, http = make_graph(lambda r: httpx.Response(200, content=b"x"))
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected):
            await graph.download(url)
    assert seen == []  # no request at all, so no token either


async def test_plain_http_on_loopback_for_the_simulator() -> None:
    graph, seen, http = make_graph(
        lambda r: httpx.Response(200, content=b"audio"),
        media_hosts=["127.0.0.1"],
        graph_url="http://127.0.0.1:8999/v23.0",
    )
    async with http:
        with trio.fail_after(10):
            assert await graph.download("http://127.0.0.1:8999/media/abc?sig=1") == b"audio"
    assert seen[0].headers["authorization"] == BEARER


async def test_media_on_graph_urls_own_host_is_allowed() -> None:
    # The token goes to graph_url's host on every call already; media there is allowed even
    # when media_hosts does not name it. Other hosts still need media_hosts.
    graph, seen, http = make_graph(lambda r: httpx.Response(200, content=b"audio"))
    async with http:
        with trio.fail_after(10):
            assert await graph.download("https://graph.test/media/abc") == b"audio"
            with pytest.raises(UpstreamRejected, match="not allowed"):
                await graph.download("https://other.test/media/abc")
    assert [r.url.host for r in seen] == ["graph.test"]
    assert seen[0].headers["authorization"] == BEARER


async def test_download_follows_redirects_to_allowed_hosts_only() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/first":
            return httpx.Response(302, headers={"location": "/second"})
        if request.url.path == "/second":
            return httpx.Response(307, headers={"location": "https://cdn.fbsbx.com/final"})
        if request.url.host == "cdn.fbsbx.com":
            return httpx.Response(301, headers={"location": "https://evil.example/x"})
        return httpx.Response(200, content=b"media")

    graph, seen, http = make_graph(handler, media_hosts=[MEDIA_HOST, "*.fbsbx.com"])
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected):
            await graph.download(f"https://{MEDIA_HOST}/first")
    assert [str(r.url) for r in seen] == [
        f"https://{MEDIA_HOST}/first",
        f"https://{MEDIA_HOST}/second",
        "https://cdn.fbsbx.com/final",
    ]
    assert all(r.headers["authorization"] == BEARER for r in seen)
    assert all(r.url.host != "evil.example" for r in seen)


async def test_download_redirect_ok_and_limited() -> None:
    hops: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        n = int(request.url.params.get("n", "0"))
        hops.append(n)
        if n < int(request.url.params.get("upto", "0")):
            return httpx.Response(
                302, headers={"location": f"?n={n + 1}&upto={request.url.params['upto']}"}
            )
        return httpx.Response(200, content=b"done")

    graph, _, http = make_graph(handler)
    async with http:
        with trio.fail_after(10):
            assert await graph.download(f"https://{MEDIA_HOST}/m?n=0&upto=3") == b"done"
            with pytest.raises(UpstreamRejected, match="redirects"):
                await graph.download(f"https://{MEDIA_HOST}/m?n=0&upto=4")
    assert hops == [0, 1, 2, 3, 0, 1, 2, 3]


async def test_download_size_cap_declared() -> None:
    graph, _, http = make_graph(lambda r: httpx.Response(200, content=b"x" * 2000))
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected, match="too large"):
            await graph.download(MEDIA_URL)


# Aborting an httpx stream early leaves httpx's inner async generators to trio's finalizer,
# which warns (encode/httpx#3686); the abort is the point of this test.
@pytest.mark.filterwarnings("ignore:Async generator 'httpx.:ResourceWarning")
async def test_download_size_cap_streamed() -> None:
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"x" * 100

    graph, _, http = make_graph(lambda r: httpx.Response(200, content=endless()))
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected, match="too large"):
            await graph.download(MEDIA_URL)
    assert 10 <= pulled <= 12  # stopped just past 1024 bytes


async def test_download_exactly_at_the_cap_is_fine() -> None:
    graph, _, http = make_graph(lambda r: httpx.Response(200, content=b"x" * 1024))
    async with http:
        with trio.fail_after(10):
            assert len(await graph.download(MEDIA_URL)) == 1024


@pytest.mark.parametrize(
    ("response", "cls", "status"),
    [
        (httpx.Response(404, text="Not Found"), UpstreamRejected, 404),
        (
            httpx.Response(401, json={"error": {"code": 190, "message": "expired"}}),
            UpstreamRejected,
            401,
        ),
        (httpx.Response(503, text="busy"), UpstreamUnavailable, 503),
        (httpx.Response(302), UpstreamRejected, 302),  # a redirect without Location
        (httpx.Response(204), UpstreamRejected, 204),
    ],
)
async def test_download_errors(response: httpx.Response, cls: type[Exception], status: int) -> None:
    graph, _, http = make_graph(lambda r: response)
    async with http:
        with trio.fail_after(10), pytest.raises(cls) as caught:
            await graph.download(MEDIA_URL)
    assert isinstance(caught.value, UpstreamRejected | UpstreamUnavailable)
    assert caught.value.status == status


# --- MetaChannel ------------------------------------------------------------------------------

SECRET = "app-secret"
USER = User(key="US.1", address="+16505551234")


def make_channel(
    handler: Handler, **kwargs: bool
) -> tuple[MetaChannel, list[httpx.Request], httpx.AsyncClient]:
    graph, seen, http = make_graph(handler)
    channel = MetaChannel(
        graph, app_secret=SECRET, verify_token="vt", phone_number_id=PNID, **kwargs
    )
    return channel, seen, http


def test_channel_satisfies_the_protocol() -> None:
    channel, _, _ = make_channel(lambda r: httpx.Response(200))
    as_protocol: Channel = channel
    assert (as_protocol.name, as_protocol.text_limit) == ("meta", 4096)
    assert channel.accepted() == (b"", "text/plain")
    query = {"hub.mode": "subscribe", "hub.verify_token": "vt", "hub.challenge": "42"}
    assert channel.handshake(query) == "42"


def _webhook(number: str) -> bytes:
    doc = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"phone_number_id": number},
                            "messages": [
                                {
                                    "from": "16505551234",
                                    "id": "wamid.1",
                                    "timestamp": "1",
                                    "type": "text",
                                    "text": {"body": "Grüße"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(doc).encode()


@pytest.mark.parametrize(("own_only", "expected"), [(True, 0), (False, 1)])
def test_channel_verify_and_parse(own_only: bool, expected: int) -> None:
    channel, _, _ = make_channel(lambda r: httpx.Response(200), only_own_number=own_only)
    body = _webhook("someone-else")
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = WebhookRequest(
        origin="https://bot.test",
        target="/webhook",
        headers={"x-hub-signature-256": signature, "content-type": "application/json"},
        query={},
        body=body,
    )
    unsigned = WebhookRequest(request.origin, request.target, {}, {}, body)
    ours = WebhookRequest(request.origin, request.target, {}, {}, _webhook(PNID))
    assert channel.verify(request)
    assert not channel.verify(unsigned)
    assert len(channel.parse(request).messages) == expected
    assert len(channel.parse(ours).messages) == 1


async def test_channel_acknowledge_is_one_read_and_typing_call() -> None:
    channel, seen, http = make_channel(lambda r: httpx.Response(200, json={"success": True}))
    message = Inbound(message_id="wamid.IN", user=USER, kind=Kind.TEXT, text="hi")
    async with http:
        with trio.fail_after(10):
            await channel.acknowledge(message)
    assert [sent_json(r) for r in seen] == [read_payload("wamid.IN", typing=True)]


async def test_channel_send_text_splits_in_order() -> None:
    counter = iter(range(100))

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"messages": [{"id": f"wamid.{next(counter)}"}]})

    channel, seen, http = make_channel(handler)
    first, second = "A" * 3000 + ".", "B" * 3000 + "."
    async with http:
        with trio.fail_after(10):
            ids = await channel.send_text(USER, f"{first}\n\n{second}")
    assert ids == ["wamid.0", "wamid.1"]
    assert [sent_json(r) for r in seen] == [
        text_payload(USER.address, first),
        text_payload(USER.address, second),
    ]


async def test_channel_prepare_voice_uploads_then_send_voice_sends_the_media_id() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/media"):
            return httpx.Response(200, json={"id": "media-9"})
        return httpx.Response(200, json={"messages": [{"id": "wamid.V"}]})

    channel, seen, http = make_channel(handler)
    async with http:
        with trio.fail_after(10):
            note = await channel.prepare_voice(b"OggS...")
            assert note.ref == "media-9" and len(seen) == 1  # uploaded, nothing sent yet
            assert await channel.send_voice(USER, note) == "wamid.V"
    assert [r.url.path for r in seen] == [f"/v23.0/{PNID}/media", f"/v23.0/{PNID}/messages"]
    parts = form_parts(seen[0])
    assert payload(parts["type"]) == b"audio/ogg; codecs=opus"
    assert b"\r\nContent-Type: audio/ogg; codecs=opus\r\n" in seen[0].content
    assert sent_json(seen[1]) == voice_payload(USER.address, "media-9")


def channel_with_cached_media(
    handler: Handler,
) -> tuple[MetaChannel, MediaIds, list[httpx.Request], httpx.AsyncClient]:
    graph, seen, http = make_graph(handler)
    ids = MediaIds(max_entries=10)
    ids.put("audio-key", PNID, "old-media")
    channel = MetaChannel(
        graph,
        app_secret=SECRET,
        verify_token="vt",
        phone_number_id=PNID,
        media_ids=ids,
    )
    return channel, ids, seen, http


async def test_channel_send_voice_uploads_again_when_the_cached_media_is_gone() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/media"):
            return httpx.Response(200, json={"id": "new-media"})
        if sent_json(request) == voice_payload(USER.address, "old-media"):
            return graph_error(100)  # Graph no longer knows the upload
        return httpx.Response(200, json={"messages": [{"id": "wamid.V"}]})

    channel, ids, seen, http = channel_with_cached_media(handler)
    async with http:
        with trio.fail_after(10):
            note = await channel.prepare_voice(b"OggS", audio_key="audio-key")
            assert note.ref == "old-media" and seen == []  # reused: no upload
            assert await channel.send_voice(USER, note) == "wamid.V"
    assert [r.url.path.rsplit("/", 1)[1] for r in seen] == ["messages", "media", "messages"]
    assert sent_json(seen[2]) == voice_payload(USER.address, "new-media")
    assert ids.get("audio-key", PNID) == "new-media"


async def test_channel_send_voice_keeps_the_cached_media_when_the_user_is_the_problem() -> None:
    channel, ids, seen, http = channel_with_cached_media(lambda r: graph_error(131047))
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected) as caught:
            note = await channel.prepare_voice(b"OggS", audio_key="audio-key")
            await channel.send_voice(USER, note)
    assert caught.value.reason == Reason.RECIPIENT
    assert len(seen) == 1  # no upload: a new media id would not reach the user either
    assert ids.get("audio-key", PNID) == "old-media"


async def test_channel_fetch_media_refetches_an_expired_url_once() -> None:
    urls = iter([f"https://{MEDIA_HOST}/old", f"https://{MEDIA_HOST}/new"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "graph.test":
            return httpx.Response(200, json={"url": next(urls), "mime_type": "audio/ogg"})
        if request.url.path == "/old":
            return httpx.Response(404)
        return httpx.Response(200, content=b"fresh audio")

    channel, seen, http = make_channel(handler)
    media = Media(id="m1", mime_type="audio/ogg", voice=True)
    async with http:
        with trio.fail_after(10):
            assert await channel.fetch_media(media) == b"fresh audio"
    assert [r.url.path for r in seen] == ["/v23.0/m1", "/old", "/v23.0/m1", "/new"]


@pytest.mark.parametrize("own_only", [True, False])
async def test_the_media_lookup_never_names_our_number(own_only: bool) -> None:
    # Graph answers a lookup naming phone_number_id only for media uploaded on that number;
    # every voice note a user sends would be refused (reference/whatsapp.md §4). Whether we
    # answer only our own number is the webhook filter's business, not the lookup's.
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "graph.test":
            return httpx.Response(200, json={"url": MEDIA_URL, "mime_type": "audio/ogg"})
        return httpx.Response(200, content=b"audio")

    channel, seen, http = make_channel(handler, only_own_number=own_only)
    async with http:
        with trio.fail_after(10):
            await channel.fetch_media(Media(id="m1", mime_type="audio/ogg"))
    assert seen[0].url.path == "/v23.0/m1"
    assert dict(seen[0].url.params) == {}


async def test_channel_fetch_media_gives_up_after_the_second_404() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "graph.test":
            return httpx.Response(200, json={"url": MEDIA_URL, "mime_type": "audio/ogg"})
        return httpx.Response(404)

    channel, seen, http = make_channel(handler)
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected):
            await channel.fetch_media(Media(id="m1", mime_type="audio/ogg"))
    assert len(seen) == 4


async def test_channel_fetch_media_does_not_retry_other_refusals() -> None:
    graph_answer = {"url": "https://evil.example/x", "mime_type": "audio/ogg"}
    channel, seen, http = make_channel(lambda r: httpx.Response(200, json=graph_answer))
    async with http:
        with trio.fail_after(10), pytest.raises(UpstreamRejected):
            await channel.fetch_media(Media(id="m1", mime_type="audio/ogg"))
    assert [r.url.host for r in seen] == ["graph.test"]
