"""The webhook builders make Meta's shapes (reference/whatsapp.md §2); the sender signs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from daemon.sim import webhooks as wh

FIXTURES = Path("/work/shared/fixtures/whatsapp-updates")
PHONE_ID = "106540352242922"
META_WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="  # §2.3


def _fixture(name: str, key: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())[key]
    return data


# --------------------------------------------------------------------------- sign / encode


def test_encode_escapes_non_ascii_like_meta() -> None:
    body = wh.encode({"text": "äöå 😮"})
    # §2.1: Meta signs "an escaped unicode version of the payload", lowercase hex digits.
    assert body == b'{"text": "\\u00e4\\u00f6\\u00e5 \\ud83d\\ude2e"}'


def test_sign_matches_an_independent_vector() -> None:
    # Computed with: openssl dgst -sha256 -hmac 'app-secret-123' over the exact bytes.
    body = b'{"text": "\\u00e4\\u00f6\\u00e5 \\ud83d\\ude2e"}'
    expected = "sha256=3d72c8f46396ae2006a31bdf91a5cd4844a181efe91c2ceff056a6c667833740"
    assert wh.sign(body, "app-secret-123") == expected
    assert wh.sign(body, "other-secret") != expected


def test_signature_is_over_the_escaped_bytes_not_a_reserialization() -> None:
    body = wh.encode(wh.envelope(wh.text_message("16505551234", "Grüße"), phone_number_id="1"))
    assert b"Gr\\u00fc\\u00dfe" in body
    reserialized = json.dumps(json.loads(body), ensure_ascii=False).encode()
    assert wh.sign(reserialized, "s") != wh.sign(body, "s")


def test_media_sha256_is_base64() -> None:
    assert wh.media_sha256(b"") == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


# --------------------------------------------------------------------------- shapes


def test_text_envelope_is_metas_documented_shape() -> None:
    item = wh.text_message(
        "16505551234",
        "Does it come in another color?",
        message_id=META_WAMID,
        name="Sheena Nelson",
        timestamp=1749416383,
    )
    body = wh.envelope(item, phone_number_id=PHONE_ID)
    # Verbatim the §2.3 example of reference/whatsapp.md.
    assert body == {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": "106540352242922",
                            },
                            "contacts": [
                                {"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}
                            ],
                            "messages": [
                                {
                                    "from": "16505551234",
                                    "id": META_WAMID,
                                    "timestamp": "1749416383",
                                    "type": "text",
                                    "text": {"body": "Does it come in another color?"},
                                }
                            ],
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }


def test_text_matches_the_pywa_fixture() -> None:
    fixture = _fixture("message", "text")
    contact = fixture["entry"][0]["changes"][0]["value"]["contacts"][0]
    for key in ("user_id", "parent_user_id"):
        contact.pop(key)
    built = wh.envelope(
        wh.text_message(
            "972987654321",
            "Body Text",
            message_id="wamid.xyzxyz",
            name="Test Name",
            timestamp="1697043223",
        ),
        phone_number_id="1122334455667",
        display_phone_number="972123456789",
        waba_id="1234567890987654321",
    )
    assert built == fixture


def test_voice_matches_the_pywa_fixture() -> None:
    fixture = _fixture("message", "voice")
    fixture_value = fixture["entry"][0]["changes"][0]["value"]
    item = wh.voice_message(
        "972987654321",
        "1234567890987654321",
        sha256="m04pFf2ERdaopTyFkGPA0+bX3i+YY2dYgVFwOgDLSDI=",
        message_id="wamid.xyzxyz",
        name="Test Name",
        timestamp=1697043473,
    )
    assert item.message == fixture_value["messages"][0]
    assert item.message["audio"]["voice"] is True
    assert "url" not in item.message["audio"]  # only present since the Nov 2025 roll-out


def test_image_and_reaction_shapes() -> None:
    image = wh.image_message(
        "16505551234", "1003383421387256", sha256="SfIn=", caption="Taj Mahal", url="https://x/y"
    ).message
    assert image["type"] == "image"
    assert image["image"] == {
        "caption": "Taj Mahal",
        "mime_type": "image/jpeg",
        "sha256": "SfIn=",
        "id": "1003383421387256",
        "url": "https://x/y",
    }
    fixture = _fixture("message", "reaction")["entry"][0]["changes"][0]["value"]["messages"][0]
    reaction = wh.reaction_message(
        "972987654321", "wamid.yzxyzx=", "😮", message_id="wamid.xyzxyz", timestamp=1697044456
    ).message
    assert reaction == fixture
    removed = wh.reaction_message("16505551234", "wamid.A", None).message
    assert removed["reaction"] == {"message_id": "wamid.A"}  # §2.5: emoji omitted on removal


def test_timestamps_are_strings_and_ids_unique() -> None:
    a = wh.text_message("16505551234", "a")
    b = wh.text_message("16505551234", "a")
    assert a.id != b.id
    assert a.id.startswith("wamid.")
    assert isinstance(a.message["timestamp"], str)
    assert a.message["timestamp"].isdigit()


def test_plus_sign_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\+"):
        wh.text_message("+16505551234", "hi")
    with pytest.raises(ValueError, match=r"\+"):
        wh.status("wamid.A", "sent", "+16505551234")


def test_business_scoped_user_id() -> None:
    # §2.7: with a username, wa_id and from may be "" and only user_id identifies the user.
    item = wh.text_message("", "hi", user_id="US.13491208655302741918")
    assert item.contact["wa_id"] == ""
    assert item.contact["user_id"] == "US.13491208655302741918"
    assert item.message["from"] == ""
    assert item.message["from_user_id"] == "US.13491208655302741918"


def test_status_shapes() -> None:
    sent = wh.status("wamid.A", "sent", "16505551234", timestamp=1750030073).status
    assert sent["id"] == "wamid.A"
    assert sent["timestamp"] == "1750030073"
    assert sent["recipient_id"] == "16505551234"
    assert sent["pricing"]["category"] == "service"
    assert "conversation" not in sent  # gone from v24.0 on (§2.6)
    assert "pricing" not in wh.status("wamid.A", "read", "16505551234").status
    error = wh.webhook_error(131047, "Re-engagement message", "More than 24 hours ...")
    failed = wh.status("wamid.A", "failed", "16505551234", errors=[error]).status
    assert failed["errors"][0]["code"] == 131047
    assert failed["errors"][0]["error_data"] == {"details": "More than 24 hours ..."}
    with pytest.raises(ValueError, match="errors"):
        wh.status("wamid.A", "failed", "16505551234")


def test_envelope_mixes_messages_and_statuses_in_separate_changes() -> None:
    m1 = wh.text_message("16505551234", "one")
    m2 = wh.text_message("16505551234", "two")
    m3 = wh.text_message("4915112345678", "drei", name="Jo")
    s1 = wh.status("wamid.A", "delivered", "16505551234")
    body = wh.envelope(m1, s1, m2, m3, phone_number_id=PHONE_ID)
    changes = body["entry"][0]["changes"]
    assert len(changes) == 2
    value = changes[0]["value"]
    assert [m["text"]["body"] for m in value["messages"]] == ["one", "two", "drei"]
    assert [c["wa_id"] for c in value["contacts"]] == ["16505551234", "4915112345678"]
    assert "statuses" not in value
    assert changes[1]["value"]["statuses"] == [s1.status]
    assert "contacts" not in changes[1]["value"]
    assert all(c["field"] == "messages" for c in changes)

    split = wh.envelope(m1, m2, phone_number_id=PHONE_ID, change_per_item=True)
    assert len(split["entry"][0]["changes"]) == 2


def test_batch_joins_entries() -> None:
    a = wh.envelope(wh.text_message("1", "a"), phone_number_id=PHONE_ID, waba_id="W1")
    b = wh.envelope(wh.status("wamid.B", "read", "2"), phone_number_id=PHONE_ID, waba_id="W2")
    body = wh.batch(a, b)
    assert body["object"] == "whatsapp_business_account"
    assert [e["id"] for e in body["entry"]] == ["W1", "W2"]
    with pytest.raises(ValueError):
        wh.change(wh.text_message("1", "a"), wh.status("w", "read", "1"), phone_number_id="1")


# --------------------------------------------------------------------------- sender


class _Capture:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, text="ok")


async def test_sender_signs_the_exact_bytes_it_posts() -> None:
    capture = _Capture()
    async with httpx.AsyncClient(transport=httpx.MockTransport(capture)) as client:
        sender = wh.WebhookSender(client, "http://daemon/webhook", "app-secret-123")
        payload = wh.envelope(wh.text_message("16505551234", "äöå"), phone_number_id=PHONE_ID)
        with trio.fail_after(10):
            response = await sender.post(payload)
    assert response.status_code == 200
    (request,) = capture.requests
    assert request.method == "POST"
    assert str(request.url) == "http://daemon/webhook"
    assert request.headers["content-type"] == "application/json"
    assert request.content == wh.encode(payload)
    assert b"\\u00e4\\u00f6\\u00e5" in request.content
    assert request.headers["x-hub-signature-256"] == wh.sign(request.content, "app-secret-123")


async def test_sender_forges_or_omits_the_signature() -> None:
    capture = _Capture()
    async with httpx.AsyncClient(transport=httpx.MockTransport(capture)) as client:
        sender = wh.WebhookSender(client, "http://daemon/webhook", "app-secret-123")
        with trio.fail_after(10):
            await sender.post(b'{"raw": 1}', signature="sha256=00")
            await sender.post({"a": 1}, signature=None, headers={"X-Extra": "1"})
    forged, unsigned = capture.requests
    assert forged.content == b'{"raw": 1}'
    assert forged.headers["x-hub-signature-256"] == "sha256=00"
    assert "x-hub-signature-256" not in unsigned.headers
    assert unsigned.headers["x-extra"] == "1"


async def test_handshake_sends_hub_parameters() -> None:
    capture = _Capture()
    async with httpx.AsyncClient(transport=httpx.MockTransport(capture)) as client:
        sender = wh.WebhookSender(client, "http://daemon/webhook", "s")
        with trio.fail_after(10):
            await sender.handshake("my-token", "1158201444")
            await sender.handshake("my-token", "42", mode=None)
    full, no_mode = capture.requests
    assert full.method == "GET"
    assert dict(full.url.params) == {
        "hub.mode": "subscribe",
        "hub.challenge": "1158201444",
        "hub.verify_token": "my-token",
    }
    assert "hub.mode" not in no_mode.url.params
    assert no_mode.url.params["hub.challenge"] == "42"
