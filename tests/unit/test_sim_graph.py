"""The Graph simulator answers like the Cloud API (reference/whatsapp.md §4, §5), over real HTTP."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import av
import httpx
import pytest
import trio
import trio.testing

from daemon.sim import graph
from daemon.sim.audio import speak
from daemon.sim.base import Faults
from daemon.sim.graph import GraphSim

TOKEN = "EAAG-test-token"
PHONE_ID = "106540352242922"
USER = "+16505551234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OGG = "audio/ogg; codecs=opus"  # §4.1: base audio/ogg is not supported


@pytest.fixture
def sim() -> GraphSim:
    return GraphSim(access_token=TOKEN, phone_number_id=PHONE_ID)


@pytest.fixture
async def client(sim: GraphSim, nursery: trio.Nursery) -> AsyncIterator[httpx.AsyncClient]:
    with trio.fail_after(10):
        await sim.start(nursery)
    # No client timeout: under the autojump clock a timeout would be virtual time anyway;
    # every test bounds its I/O with fail_after instead.
    async with httpx.AsyncClient(base_url=f"{sim.base_url}/v23.0", headers=AUTH) as c:
        yield c


def text(body: str, to: str = USER, **extra: Any) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": body}} | (
        extra
    )


def assert_graph_error(response: httpx.Response, code: int, status: int = 400) -> str:
    """Check the exact §5.1 error body; return its details."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "code", "error_data", "fbtrace_id"}
    assert error["code"] == code
    assert error["type"] == "OAuthException"
    assert error["message"].startswith(f"(#{code}) ")
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert isinstance(error["fbtrace_id"], str)
    assert error["fbtrace_id"]
    details: str = error["error_data"]["details"]
    return details


def ogg_opus(channels: int = 1) -> bytes:
    if channels == 1:
        return speak("hello there")
    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48_000, layout="stereo")
        for i in range(10):
            frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
            frame.planes[0].update(bytes(4 * 960))
            frame.sample_rate = 48_000
            frame.pts = i * 960
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def amr_nb() -> bytes:
    """An AMR-NB file built by hand (RFC 4867 §5: the magic, then 12.2 kbit/s frames of
    silence): not every PyAV build carries an AMR encoder (the 19.x wheels have none)."""
    return b"#!AMR\n" + (b"\x3c" + bytes(31)) * 50


def encoded(container: str, codec: str, rate: int = 48_000) -> bytes:
    """A short mono silence in ``container`` / ``codec``."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        samples = stream.codec_context.frame_size or 1024
        fmt = stream.codec_context.format.name
        for i in range(10):
            frame = av.AudioFrame(format=fmt, layout="mono", samples=samples)
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.sample_rate = rate
            frame.pts = i * samples
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def adts_aac() -> bytes:
    return encoded("adts", "aac")


async def upload(
    client: httpx.AsyncClient,
    data: bytes,
    mime: str | None = OGG,
    file_type: str | None = None,
    product: str | None = "whatsapp",
) -> httpx.Response:
    form = {}
    if product is not None:
        form["messaging_product"] = product
    if mime is not None:
        form["type"] = mime
    part_type = file_type or mime or "application/octet-stream"
    return await client.post(
        f"/{PHONE_ID}/media", data=form, files={"file": ("voice.ogg", data, part_type)}
    )


# --------------------------------------------------------------------------- auth and routing


async def test_every_route_needs_the_bearer_token(sim: GraphSim, client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        responses = [
            await client.post(
                f"/{PHONE_ID}/messages", json=text("hi"), headers={"Authorization": ""}
            ),
            await client.post(
                f"/{PHONE_ID}/messages", json=text("hi"), headers={"Authorization": "Bearer no"}
            ),
            await client.post(f"/{PHONE_ID}/media", headers={"Authorization": "Bearer"}),
            await client.get("/12345", headers={"Authorization": f"Basic {TOKEN}"}),
            await client.delete("/12345", headers={"Authorization": TOKEN}),
        ]
    for response in responses:
        assert_graph_error(response, 190, status=401)
    assert sim.sent == []


async def test_version_must_look_like_graphs(sim: GraphSim, client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        bad = await client.post(f"{sim.base_url}/latest/{PHONE_ID}/messages", json=text("hi"))
        good = await client.post(f"{sim.base_url}/v25.0/{PHONE_ID}/messages", json=text("hi"))
    assert "latest" in assert_graph_error(bad, 100)
    assert good.status_code == 200


async def test_unknown_routes_answer_graph_errors_not_html(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        response = await client.put(f"/{PHONE_ID}/messages", json=text("hi"))
        deep = await client.get("/a/b/c/d")
    assert_graph_error(response, 100)
    assert_graph_error(deep, 100)


async def test_unknown_phone_number_id(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        response = await client.post("/999/messages", json=text("hi"))
    assert "999" in assert_graph_error(response, 100)


# --------------------------------------------------------------------------- send text


async def test_send_text_answers_the_documented_shape(
    sim: GraphSim, client: httpx.AsyncClient
) -> None:
    payload = text("Hello", recipient_type="individual")
    payload["text"]["preview_url"] = True
    with trio.fail_after(10):
        response = await client.post(f"/{PHONE_ID}/messages", json=payload)
    assert response.status_code == 200
    body = response.json()
    wamid = body["messages"][0]["id"]
    assert body == {
        "messaging_product": "whatsapp",
        "contacts": [{"input": USER, "wa_id": "16505551234"}],
        "messages": [{"id": wamid}],
    }
    assert wamid.startswith("wamid.")
    (sent,) = sim.sent
    assert (sent.wamid, sent.to, sent.type, sent.text) == (wamid, USER, "text", "Hello")
    assert sent.preview_url is True
    assert sent.payload == payload


async def test_text_length_limit(sim: GraphSim, client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        at_limit = await client.post(f"/{PHONE_ID}/messages", json=text("é" * 4096))
        over = await client.post(f"/{PHONE_ID}/messages", json=text("x" * 4097))
        empty = await client.post(f"/{PHONE_ID}/messages", json=text(""))
    assert at_limit.status_code == 200
    assert "text['body']" in assert_graph_error(over, 100)
    assert "text['body']" in assert_graph_error(empty, 100)
    assert len(sim.sent) == 1
    assert [r.code for r in sim.rejected] == [100, 100]


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (text("hi", to="1650"), "to"),  # too short for a phone number
        (text("hi", to="+0650555123"), "to"),  # no country code starts with 0
        (text("hi", to=""), "to"),
        (text("hi", recipient_type="group"), "recipient_type"),
        (text("hi", audio={"id": "1"}), "audio"),  # a key of another type
        (text("hi", messaging_product="sms"), "messaging_product"),
        ({"messaging_product": "whatsapp", "to": USER, "type": "image", "image": {}}, "image"),
        ({"messaging_product": "whatsapp", "to": USER, "text": {"body": "x"}}, "type"),
        ({"messaging_product": "whatsapp", "to": USER, "type": "text"}, "text"),
        ({"messaging_product": "whatsapp", "to": USER, "type": "text", "text": "x"}, "text"),
        (text("hi") | {"text": {"body": "hi", "preview_url": "yes"}}, "preview_url"),
        (text("hi") | {"text": {"body": "hi", "bold": True}}, "bold"),
    ],
)
async def test_send_rejects_bad_parameters(
    sim: GraphSim, client: httpx.AsyncClient, payload: dict[str, Any], needle: str
) -> None:
    with trio.fail_after(10):
        response = await client.post(f"/{PHONE_ID}/messages", json=payload)
    assert needle in assert_graph_error(response, 100)
    assert sim.sent == []


BSUID = "US.13491208655302741918"


def to_bsuid(body: str) -> dict[str, Any]:
    """A text to a username user: ``recipient`` instead of ``to`` (§2.7, pywa 4.x)."""
    payload = text(body)
    del payload["to"]
    return payload | {"recipient": BSUID}


async def test_send_to_a_business_scoped_user_id(sim: GraphSim, client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        in_recipient = await client.post(f"/{PHONE_ID}/messages", json=to_bsuid("hi"))
        in_to = await client.post(f"/{PHONE_ID}/messages", json=text("hi", to=BSUID))
    for response in (in_recipient, in_to):
        assert response.status_code == 200, response.text
        assert response.json()["contacts"] == [{"input": BSUID, "user_id": BSUID}]
    assert [(m.to, m.addressed_by) for m in sim.sent] == [(BSUID, "recipient"), (BSUID, "to")]


@pytest.mark.parametrize(
    "payload",
    [
        to_bsuid("hi") | {"to": USER},  # both
        {k: v for k, v in text("hi").items() if k != "to"},  # neither
        to_bsuid("hi") | {"recipient": USER},  # a phone number is not a BSUID
        to_bsuid("hi") | {"recipient": ""},
        to_bsuid("hi") | {"recipient": 42},
    ],
)
async def test_exactly_one_of_to_and_recipient(
    sim: GraphSim, client: httpx.AsyncClient, payload: dict[str, Any]
) -> None:
    with trio.fail_after(10):
        response = await client.post(f"/{PHONE_ID}/messages", json=payload)
    assert "recipient" in assert_graph_error(response, 100)
    assert sim.sent == []


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"messaging_product": "whatsapp", ', "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"null", "application/json"),
        (b'{"messaging_product": "whatsapp"}', "text/plain"),
        (b"messaging_product=whatsapp&to=%2B1", "application/x-www-form-urlencoded"),
    ],
)
async def test_malformed_bodies_are_400_not_500(
    client: httpx.AsyncClient, content: bytes, content_type: str
) -> None:
    with trio.fail_after(10):
        response = await client.post(
            f"/{PHONE_ID}/messages", content=content, headers={"Content-Type": content_type}
        )
    assert_graph_error(response, 100)


# --------------------------------------------------------------------------- read / typing


async def test_mark_read_and_typing_indicator(sim: GraphSim, client: httpx.AsyncClient) -> None:
    read = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.A"}
    typing = read | {"message_id": "wamid.B", "typing_indicator": {"type": "text"}}
    with trio.fail_after(10):
        first = await client.post(f"/{PHONE_ID}/messages", json=read)
        second = await client.post(f"/{PHONE_ID}/messages", json=typing)
        bad_kind = await client.post(
            f"/{PHONE_ID}/messages", json=read | {"typing_indicator": {"type": "audio"}}
        )
        bad_status = await client.post(f"/{PHONE_ID}/messages", json=read | {"status": "seen"})
        no_id = await client.post(
            f"/{PHONE_ID}/messages", json={"messaging_product": "whatsapp", "status": "read"}
        )
    assert first.json() == {"success": True}
    assert second.json() == {"success": True}
    assert "typing_indicator" in assert_graph_error(bad_kind, 100)
    assert_graph_error(bad_status, 100)
    assert "message_id" in assert_graph_error(no_id, 100)
    assert [(r.message_id, r.typing) for r in sim.reads] == [("wamid.A", False), ("wamid.B", True)]
    assert sim.sent == []


# --------------------------------------------------------------------------- upload and audio


async def test_upload_real_ogg_opus_and_send_it_as_voice_note(
    sim: GraphSim, client: httpx.AsyncClient
) -> None:
    clip = ogg_opus()
    with trio.fail_after(10):
        uploaded = await upload(client, clip)
        media_id = uploaded.json()["id"]
        response = await client.post(
            f"/{PHONE_ID}/messages",
            json={
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": USER,
                "type": "audio",
                "audio": {"id": media_id, "voice": True},
            },
        )
    assert uploaded.status_code == 200
    assert uploaded.json() == {"id": media_id}
    assert media_id.isdigit()
    (record,) = sim.uploads
    assert (record.media_id, record.mime_type, record.data) == (media_id, OGG, clip)
    assert response.status_code == 200, response.text
    (sent,) = sim.sent
    assert (sent.type, sent.media_id, sent.voice, sent.audio) == ("audio", media_id, True, clip)
    assert sent.mime_type == OGG
    assert sent.renders_as_voice_note is True


async def test_voice_note_rendering_flag(
    sim: GraphSim, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(10):
        ogg_id = (await upload(client, ogg_opus(), mime="audio/ogg; codecs=opus")).json()["id"]
        aac_id = (await upload(client, adts_aac(), mime="audio/aac")).json()["id"]

        async def send(media_id: str, voice: bool) -> None:
            audio = {"id": media_id, "voice": voice}
            body = {"messaging_product": "whatsapp", "to": USER, "type": "audio", "audio": audio}
            response = await client.post(f"/{PHONE_ID}/messages", json=body)
            assert response.status_code == 200, response.text

        await send(ogg_id, voice=False)  # plain audio: not a voice note
        await send(aac_id, voice=True)  # §9: accepted, but would not render as PTT
        monkeypatch.setattr(graph, "VOICE_NOTE_LIMIT", 100)  # §4.2: over 512 KB, no play icon
        await send(ogg_id, voice=True)
    assert [m.renders_as_voice_note for m in sim.sent] == [False, False, False]
    assert sim.sent[1].mime_type == "audio/aac"


@pytest.mark.parametrize(
    ("make", "mime"),
    [
        (ogg_opus, OGG),
        (ogg_opus, "audio/ogg;codecs=opus"),  # spacing and case are not the point
        (ogg_opus, 'Audio/OGG; codecs="opus"'),
        (adts_aac, "audio/aac"),
        (lambda: encoded("mp3", "libmp3lame"), "audio/mpeg"),
        (amr_nb, "audio/amr"),
        (lambda: encoded("mp4", "aac"), "audio/mp4"),
    ],
)
async def test_upload_takes_every_documented_audio_type(
    sim: GraphSim, client: httpx.AsyncClient, make: Callable[[], bytes], mime: str
) -> None:
    # §4.1: AAC, AMR, MP3, MP4 audio, and Ogg named with its Opus codec.
    data = make()
    with trio.fail_after(10):
        response = await upload(client, data, mime=mime)
    assert response.status_code == 200, response.text
    (record,) = sim.uploads
    assert (record.mime_type, record.file_content_type, record.data) == (mime, mime, data)


async def test_upload_refuses_base_audio_ogg(sim: GraphSim, client: httpx.AsyncClient) -> None:
    # §4.1: "OPUS codecs only; base audio/ogg not supported". Graph's own answer names the
    # form it wants; the daemon's upload must use it in the field and on the file part.
    with trio.fail_after(10):
        base = await upload(client, ogg_opus(), mime="audio/ogg")
        base_part = await upload(client, ogg_opus(), mime=OGG, file_type="audio/ogg")
    assert "Please use one of audio/ogg; codecs=opus" in assert_graph_error(base, 131053, 400)
    assert "does not match" in assert_graph_error(base_part, 131053, 400)
    assert sim.uploads == [] and sim.media == {}


@pytest.mark.parametrize(
    ("data", "mime", "file_type"),
    [
        (os.urandom(4000), OGG, None),  # not audio at all
        (b"", OGG, None),
        (ogg_opus(), "audio/opus", "audio/opus"),  # §4.1: refused literal MIME
        (ogg_opus(), "audio/ogg; codecs=vorbis", OGG),
        (ogg_opus(channels=2), OGG, None),  # §4.1: "mono input only"
        (ogg_opus(), "audio/mpeg", None),  # MIME does not match the bytes
        (ogg_opus(), OGG, "audio/mpeg"),  # file part disagrees with `type`
        (ogg_opus(), "image/jpeg", None),
        (adts_aac(), OGG, None),
    ],
)
async def test_upload_refuses_wrong_media_with_131053(
    sim: GraphSim, client: httpx.AsyncClient, data: bytes, mime: str, file_type: str | None
) -> None:
    with trio.fail_after(10):
        response = await upload(client, data, mime=mime, file_type=file_type)
    assert_graph_error(response, 131053)
    assert sim.uploads == []
    assert sim.media == {}


async def test_upload_size_limit(client: httpx.AsyncClient) -> None:
    too_big = ogg_opus() + bytes(16 * 1024 * 1024)
    with trio.fail_after(10):
        response = await upload(client, too_big)
    assert "large" in assert_graph_error(response, 131053)


async def test_upload_missing_fields_are_100(client: httpx.AsyncClient) -> None:
    clip = ogg_opus()
    with trio.fail_after(10):
        no_type = await upload(client, clip, mime=None, file_type=OGG)
        no_product = await upload(client, clip, product=None)
        no_file = await client.post(
            f"/{PHONE_ID}/media",
            data={"messaging_product": "whatsapp", "type": OGG},
            files={"media": ("v.ogg", clip, OGG)},  # wrong field name
        )
        not_multipart = await client.post(f"/{PHONE_ID}/media", json={"type": OGG})
        wrong_number = await client.post(
            "/999/media",
            data={"messaging_product": "whatsapp", "type": OGG},
            files={"file": ("v.ogg", clip, OGG)},
        )
    assert "type" in assert_graph_error(no_type, 100)
    assert "messaging_product" in assert_graph_error(no_product, 100)
    assert "file" in assert_graph_error(no_file, 100)
    assert_graph_error(not_multipart, 100)
    assert_graph_error(wrong_number, 100)


async def test_audio_send_needs_a_live_uploaded_media_id(
    sim: GraphSim, client: httpx.AsyncClient
) -> None:
    def audio(spec: dict[str, Any]) -> dict[str, Any]:
        return {"messaging_product": "whatsapp", "to": USER, "type": "audio", "audio": spec}

    user_media = sim.add_user_media(ogg_opus(), "audio/ogg; codecs=opus")
    with trio.fail_after(10):
        media_id = (await upload(client, ogg_opus())).json()["id"]
        deleted = await client.delete(f"/{media_id}")
        responses = [
            await client.post(f"/{PHONE_ID}/messages", json=audio(spec))
            for spec in (
                {"id": "123456", "voice": True},
                {"id": media_id, "voice": True},  # deleted
                {"id": user_media},  # the user's media is not the business's to send
                {"id": 123},
                {"id": media_id, "link": "https://x/y.ogg"},
                {"link": "ftp://x/y.ogg"},
                {"link": "https://x/y.ogg", "voice": "yes"},
            )
        ]
        link = await client.post(
            f"/{PHONE_ID}/messages", json=audio({"link": "https://cdn.example/v.ogg"})
        )
    assert deleted.json() == {"success": True}
    for response in responses:
        assert "audio" in assert_graph_error(response, 100)
    assert link.status_code == 200
    (sent,) = sim.sent
    assert (sent.link, sent.audio, sent.renders_as_voice_note) == (
        "https://cdn.example/v.ogg",
        None,
        False,
    )


# --------------------------------------------------------------------------- media download


async def test_user_media_url_and_download(sim: GraphSim, client: httpx.AsyncClient) -> None:
    clip = ogg_opus()
    media_id = sim.add_user_media(clip, "audio/ogg; codecs=opus")
    with trio.fail_after(10):
        info = await client.get(f"/{media_id}")
        url = info.json()["url"]
        download = await client.get(url)
        anonymous = await client.get(url, headers={"Authorization": ""})
        tampered = await client.get(url.replace("hash=", "hash=x"))
        on_api_host = await client.get(url.replace("localhost", "127.0.0.1"))
        unknown = await client.get("/424242")
        other_number = await client.get(f"/{media_id}", params={"phone_number_id": "999"})
    assert info.status_code == 200
    body = info.json()
    assert body == {
        "messaging_product": "whatsapp",
        "url": url,
        "mime_type": "audio/ogg; codecs=opus",
        "sha256": hashlib.sha256(clip).hexdigest(),
        "file_size": len(clip),
        "id": media_id,
    }
    # §4: the media URL is on another host than the API (lookaside vs graph): same port here.
    media_base = (sim.base_url or "").replace("127.0.0.1", "localhost")
    assert url.startswith(f"{media_base}/whatsapp_business/attachments/?mid=")
    assert sim.media_base_url() == media_base
    assert "&ext=" in url
    assert "&hash=" in url
    assert download.status_code == 200
    assert download.content == clip
    assert download.headers["content-type"] == "audio/ogg; codecs=opus"
    assert_graph_error(anonymous, 190, status=401)
    assert tampered.status_code == 404
    assert on_api_host.status_code == 404  # the bytes are only on the media host
    assert [(d.host, d.status) for d in sim.downloads] == [
        ("localhost", 200),
        ("localhost", 404),
        ("127.0.0.1", 404),
    ]
    assert_graph_error(unknown, 100)
    assert_graph_error(other_number, 100)


async def test_user_media_lookup_naming_a_number_is_refused(
    sim: GraphSim, client: httpx.AsyncClient
) -> None:
    # §4: phone_number_id only matches the number media was uploaded on; a user's voice note
    # was uploaded on none, so Graph refuses the lookup that names ours (chatwoot#13319).
    media_id = sim.add_user_media(ogg_opus(), OGG)
    with trio.fail_after(10):
        ours = await client.get(f"/{media_id}", params={"phone_number_id": PHONE_ID})
        plain = await client.get(f"/{media_id}")
    details = assert_graph_error(ours, 100)
    assert ours.json()["error"]["message"] == (
        "(#100) Param phone_number_id is not a valid whatsapp business phone number id ID"
    )
    assert details == graph.USER_MEDIA_NUMBER_ERROR
    assert plain.status_code == 200


async def test_own_upload_lookup_may_name_its_number(
    sim: GraphSim, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        upload = await client.post(
            f"/{PHONE_ID}/media",
            data={"messaging_product": "whatsapp", "type": OGG},
            files={"file": ("voice.ogg", ogg_opus(), OGG)},
        )
        media_id = upload.json()["id"]
        ours = await client.get(f"/{media_id}", params={"phone_number_id": PHONE_ID})
        other = await client.get(f"/{media_id}", params={"phone_number_id": "999"})
        plain = await client.get(f"/{media_id}")
    assert (ours.status_code, plain.status_code) == (200, 200)
    assert_graph_error(other, 100)


@pytest.mark.parametrize("to", ["+16505551234", "16505551234"])
async def test_to_takes_the_number_with_or_without_plus(
    sim: GraphSim, client: httpx.AsyncClient, to: str
) -> None:
    # pywa replies to the bare wa_id digits a webhook carries; Graph takes both (§5).
    with trio.fail_after(10):
        response = await client.post(f"/{PHONE_ID}/messages", json=text("hi", to=to))
    assert response.status_code == 200, response.text
    assert response.json()["contacts"] == [{"input": to, "wa_id": "16505551234"}]
    assert [m.to for m in sim.sent] == [to]


async def test_media_url_expires_after_five_minutes(
    autojump_clock: trio.testing.MockClock, sim: GraphSim, client: httpx.AsyncClient
) -> None:
    # Media on the numeric loopback here: resolving "localhost" runs getaddrinfo in a worker
    # thread, which the autojump clock takes for idle time and jumps over (to fail_after).
    sim.media_host = "127.0.0.1"
    media_id = sim.add_user_media(b"\x89PNG fake", "image/png")
    with trio.fail_after(10):
        url = (await client.get(f"/{media_id}")).json()["url"]
    await trio.sleep(299)
    with trio.fail_after(10):
        fresh = await client.get(url)
    await trio.sleep(2)
    with trio.fail_after(10):
        stale = await client.get(url)
        again = (await client.get(f"/{media_id}")).json()["url"]
        renewed = await client.get(again)
    assert fresh.status_code == 200
    assert fresh.content == b"\x89PNG fake"
    assert stale.status_code == 404
    assert again != url
    assert renewed.status_code == 200


async def test_media_ids_expire_with_the_sim_clock(nursery: trio.Nursery) -> None:
    now = [0.0]
    sim = GraphSim(access_token=TOKEN, phone_number_id=PHONE_ID, clock=lambda: now[0])
    with trio.fail_after(10):
        await sim.start(nursery)
    user_media = sim.add_user_media(b"x", "image/jpeg")
    async with httpx.AsyncClient(base_url=f"{sim.base_url}/v23.0", headers=AUTH) as client:
        with trio.fail_after(10):
            uploaded = (await upload(client, ogg_opus())).json()["id"]
            now[0] = 7 * 86400 - 1
            user_alive = await client.get(f"/{user_media}")
            now[0] = 7 * 86400  # §4: webhook media ids live 7 days
            user_gone = await client.get(f"/{user_media}")
            upload_alive = await client.get(f"/{uploaded}")
            now[0] = 30 * 86400  # §4: uploads live 30 days
            upload_gone = await client.get(f"/{uploaded}")
            send = await client.post(
                f"/{PHONE_ID}/messages",
                json={
                    "messaging_product": "whatsapp",
                    "to": USER,
                    "type": "audio",
                    "audio": {"id": uploaded},
                },
            )
    assert user_alive.status_code == 200
    assert_graph_error(user_gone, 100)
    assert upload_alive.status_code == 200
    assert_graph_error(upload_gone, 100)
    assert_graph_error(send, 100)


async def test_delete_kills_issued_urls(sim: GraphSim, client: httpx.AsyncClient) -> None:
    media_id = sim.add_user_media(b"bytes", "audio/mpeg")
    with trio.fail_after(10):
        url = (await client.get(f"/{media_id}")).json()["url"]
        deleted = await client.delete(f"/{media_id}")
        again = await client.delete(f"/{media_id}")
        download = await client.get(url)
    assert deleted.json() == {"success": True}
    assert_graph_error(again, 100)
    assert download.status_code == 404


# --------------------------------------------------------------------------- failures


async def test_scripted_send_failures(sim: GraphSim, client: httpx.AsyncClient) -> None:
    sim.fail_sends(131056, count=2)
    sim.fail_sends(190, http_status=401)
    read = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.A"}
    with trio.fail_after(10):
        marked = await client.post(f"/{PHONE_ID}/messages", json=read)
        invalid = await client.post(f"/{PHONE_ID}/messages", json=text("x" * 5000))
        results = [await client.post(f"/{PHONE_ID}/messages", json=text("hi")) for _ in range(4)]
    assert marked.status_code == 200  # read receipts do not consume scripted failures
    assert_graph_error(invalid, 100)  # nor do sends that are invalid anyway
    pair = assert_graph_error(results[0], 131056)
    assert "same recipient" in pair
    assert results[0].json()["error"]["message"].startswith("(#131056) ")
    assert_graph_error(results[1], 131056)
    assert_graph_error(results[2], 190, status=401)
    assert results[3].status_code == 200
    assert len(sim.sent) == 1
    assert [r.code for r in sim.rejected] == [100, 131056, 131056, 190]


async def test_fault_errors_are_temporary_graph_errors(
    sim: GraphSim, client: httpx.AsyncClient
) -> None:
    sim.faults.error_rate = 1.0
    with trio.fail_after(10):
        unavailable = await client.post(f"/{PHONE_ID}/messages", json=text("hi"))
        sim.faults.error_status = 500
        server_error = await client.get("/123")
    assert_graph_error(unavailable, 2, status=503)
    assert_graph_error(server_error, 1, status=500)
    assert sim.sent == []


async def test_faults_given_to_the_constructor_apply(nursery: trio.Nursery) -> None:
    sim = GraphSim(access_token=TOKEN, phone_number_id=PHONE_ID, faults=Faults(error_rate=1.0))
    with trio.fail_after(10):
        base = await sim.start(nursery)
        async with httpx.AsyncClient(headers=AUTH) as client:
            response = await client.post(f"{base}/v23.0/{PHONE_ID}/messages", json=text("hi"))
    assert_graph_error(response, 2, status=503)


# --------------------------------------------------------------------------- waiting


async def test_wait_sent_wakes_on_matching_sends(sim: GraphSim, client: httpx.AsyncClient) -> None:
    got: dict[str, list[graph.SentMessage]] = {}

    async def wait(name: str, count: int, to: str | None) -> None:
        got[name] = await sim.wait_sent(count, to=to)

    other = "+4915112345678"
    with trio.fail_after(10):
        async with trio.open_nursery() as waiters:
            waiters.start_soon(wait, "two_to_user", 2, "16505551234")
            waiters.start_soon(wait, "any_three", 3, None)
            await trio.testing.wait_all_tasks_blocked()
            assert got == {}
            for to in (USER, other, USER):
                response = await client.post(f"/{PHONE_ID}/messages", json=text("hi", to=to))
                assert response.status_code == 200
        already = await sim.wait_sent(1, to=other)
    assert [m.to for m in got["two_to_user"]] == [USER, USER]
    assert [m.to for m in got["any_three"]] == [USER, other, USER]
    assert [m.to for m in already] == [other]


async def test_reset_forgets_records(sim: GraphSim, client: httpx.AsyncClient) -> None:
    sim.fail_sends(131056)
    with trio.fail_after(10):
        await client.post(f"/{PHONE_ID}/messages", json=text("hi"))
        await client.post(f"/{PHONE_ID}/messages", json=text("hi"))
    assert len(sim.sent) == 1
    sim.fail_sends(131056)
    sim.reset()
    with trio.fail_after(10):
        response = await client.post(f"/{PHONE_ID}/messages", json=text("hi"))
    assert response.status_code == 200
    assert len(sim.sent) == 1
    assert sim.rejected == []
