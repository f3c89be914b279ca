from __future__ import annotations

import copy
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from daemon.channels.base import BadWebhook
from daemon.channels.meta.wire import (
    handshake,
    parse_graph_error,
    parse_webhook,
    read_payload,
    text_payload,
    verify_signature,
    voice_payload,
)
from daemon.errors import Reason, UpstreamRejected, UpstreamUnavailable
from daemon.model import Batch, Kind, Media, User

# Real-shaped payloads from the pywa project (MIT, tests/fixtures/whatsapp-updates/LICENSE-pywa).
FIXTURES = Path(__file__).parent.parent / "fixtures" / "whatsapp-updates"

US_ID = "US.13491208655302741918"
PHONE = "972987654321"


def fixtures() -> dict[str, dict[str, Any]]:
    """Every fixture as "file/name" -> full webhook body."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(FIXTURES.glob("*.json")):
        for name, body in json.loads(path.read_text()).items():
            found[f"{path.stem}/{name}"] = body
    return found


def parse(body: dict[str, Any], *, own: str | None = None) -> Batch:
    return parse_webhook(json.dumps(body).encode(), phone_number_id=own)


def envelope(*values: dict[str, Any], field: str = "messages") -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "102290129340398", "changes": [{"value": v, "field": field} for v in values]}
        ],
    }


def value(
    *messages: dict[str, Any],
    contacts: list[dict[str, Any]] | None = None,
    number: str = "106540352242922",
) -> dict[str, Any]:
    v: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": number},
        "messages": list(messages),
    }
    if contacts is not None:
        v["contacts"] = contacts
    return v


def text_message(
    wamid: str = "wamid.1", sender: str = "16505551234", body: str = "hi"
) -> dict[str, Any]:
    return {
        "from": sender,
        "id": wamid,
        "timestamp": "1749416383",
        "type": "text",
        "text": {"body": body},
    }


# --- fixtures ---------------------------------------------------------------------------------

# name -> (kind, text) for messages, or the ignored reason, or the status counted.
EXPECTED: dict[str, tuple[str, Any]] = {
    "message/text": ("message", (Kind.TEXT, "Body Text")),
    "message/image": ("message", (Kind.UNSUPPORTED, "")),
    "message/media_with_url": ("message", (Kind.UNSUPPORTED, "")),
    "message/video": ("message", (Kind.UNSUPPORTED, "")),
    "message/document": ("message", (Kind.UNSUPPORTED, "")),
    "message/audio": ("message", (Kind.VOICE, "")),
    "message/voice": ("message", (Kind.VOICE, "")),
    "message/static_sticker": ("message", (Kind.UNSUPPORTED, "")),
    "message/animated_sticker": ("message", (Kind.UNSUPPORTED, "")),
    "message/reaction": ("ignored", "reaction"),
    "message/unreaction_empty": ("ignored", "reaction"),
    "message/unreaction_no_emoji": ("ignored", "reaction"),
    "message/current_location": ("message", (Kind.UNSUPPORTED, "")),
    "message/chosen_location": ("message", (Kind.UNSUPPORTED, "")),
    "message/contacts": ("message", (Kind.UNSUPPORTED, "")),
    "message/order": ("message", (Kind.UNSUPPORTED, "")),
    "message/unsupported": ("message", (Kind.UNSUPPORTED, "")),
    "message/unsupported_with_type": ("message", (Kind.UNSUPPORTED, "")),
    "message/reply": ("message", (Kind.TEXT, "replied text")),
    "message/forwarded": ("message", (Kind.TEXT, "forwarded text")),
    "message/forwarded_many_times": ("message", (Kind.TEXT, "text forwarded many times")),
    "message/interactive_message_with_err": ("message", (Kind.UNSUPPORTED, "")),
    "message/referral": ("message", (Kind.TEXT, "BODY")),
    "message_status/sent": ("status", "sent"),
    "message_status/delivered": ("status", "delivered"),
    "message_status/read": ("status", "read"),
    "message_status/played": ("status", "played"),
    "message_status/failed": ("status", "failed"),
    "message_status/with_tracker": ("status", "sent"),
    "message_status/group": ("status", "read"),
    "callback_button/button": ("message", (Kind.TEXT, "title")),
    "callback_button/quick_reply": ("message", (Kind.TEXT, "title")),
    "callback_button/quick_reply_without_context": ("message", (Kind.TEXT, "title")),
    "callback_selection/callback": ("message", (Kind.TEXT, "title")),
    "callback_selection/description": ("message", (Kind.TEXT, "title\ndescription")),
    "system/phone_number_change": ("ignored", "system"),
    "system/identity_change": ("ignored", "system"),
    "edited_message/image": ("ignored", "edit"),
    "deleted_message/revoke": ("ignored", "revoke"),
}


def test_every_fixture_is_expected() -> None:
    assert set(fixtures()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_maps_to_expected(name: str) -> None:
    what, expected = EXPECTED[name]
    batch = parse(fixtures()[name])
    if what == "message":
        assert len(batch.messages) == 1 and not batch.ignored and not batch.statuses
        message = batch.messages[0]
        assert (message.kind, message.text) == expected
        assert message.message_id and message.timestamp > 0 and message.channel_ref
    elif what == "ignored":
        assert batch.ignored == {expected: 1} and not batch.messages
    else:
        assert batch.statuses == {expected: 1} and not batch.messages


def test_text_fixture_in_detail() -> None:
    (message,) = parse(fixtures()["message/text"]).messages
    assert message.message_id == "wamid.xyzxyz"
    assert message.user == User(key=US_ID, address=f"+{PHONE}")
    assert message.original_type == "text"
    assert message.timestamp == 1697043223
    assert message.channel_ref == "1122334455667"
    assert message.media is None


def test_voice_fixtures_carry_media() -> None:
    (voice,) = parse(fixtures()["message/voice"]).messages
    assert voice.media == Media(
        id="1234567890987654321",
        mime_type="audio/ogg; codecs=opus",
        sha256="m04pFf2ERdaopTyFkGPA0+bX3i+YY2dYgVFwOgDLSDI=",
        voice=True,
    )
    (audio,) = parse(fixtures()["message/audio"]).messages
    assert audio.media is not None and audio.media.voice is False


def test_unsupported_keeps_original_type_and_errors() -> None:
    (image,) = parse(fixtures()["message/image"]).messages
    assert image.original_type == "image" and image.media is None
    batch = parse(fixtures()["message/unsupported"])
    assert batch.errors == ["message error 131051"]
    batch = parse(fixtures()["message/interactive_message_with_err"])
    assert batch.messages[0].original_type == "interactive"
    assert batch.errors == ["value error 131000"]


def test_failed_status_reports_its_codes() -> None:
    batch = parse(fixtures()["message_status/failed"])
    assert batch.errors == ["status failed 130472"]


def test_user_key_prefers_bsuid() -> None:
    for name in ("callback_button/quick_reply_without_context", "callback_selection/callback"):
        (message,) = parse(fixtures()[name]).messages
        assert message.user == User(key=US_ID, address=f"+{PHONE}")


# --- batching and routing ---------------------------------------------------------------------


def test_every_entry_change_and_message_is_read() -> None:
    body: dict[str, Any] = {"object": "whatsapp_business_account", "entry": []}
    for e in range(2):
        changes = []
        for c in range(2):
            msgs = [text_message(f"wamid.{e}{c}{m}", body=f"{e}{c}{m}") for m in range(2)]
            changes.append({"field": "messages", "value": value(*msgs)})
        body["entry"].append({"id": str(e), "changes": changes})
    batch = parse(body)
    assert [m.message_id for m in batch.messages] == [
        f"wamid.{e}{c}{m}" for e in range(2) for c in range(2) for m in range(2)
    ]
    assert [m.text for m in batch.messages] == [
        "000",
        "001",
        "010",
        "011",
        "100",
        "101",
        "110",
        "111",
    ]


def test_messages_and_statuses_together() -> None:
    v = value(text_message())
    v["statuses"] = [
        {"id": "wamid.a", "status": "delivered", "timestamp": "1", "recipient_id": "1"},
        {"id": "wamid.b", "status": "delivered", "timestamp": "1", "recipient_id": "1"},
        {
            "id": "wamid.c",
            "status": "failed",
            "timestamp": "1",
            "recipient_id": "1",
            "errors": [{"code": 131047, "title": "Re-engagement message"}],
        },
    ]
    batch = parse(envelope(v))
    assert len(batch.messages) == 1
    assert batch.statuses == {"delivered": 2, "failed": 1}
    assert batch.errors == ["status failed 131047"]


def test_other_fields_are_counted_not_parsed() -> None:
    body = envelope({"anything": ["goes"]}, field="account_update")
    body["entry"][0]["changes"].append({"field": "message_template_status_update"})
    batch = parse(body)
    assert batch.ignored == {"field:account_update": 1, "field:message_template_status_update": 1}


def test_an_unknown_field_is_counted_as_other_so_metric_labels_stay_bounded() -> None:
    body = envelope({"x": 1}, field="made_up_" + "x" * 500)
    body["entry"][0]["changes"].append({"field": "another_invention"})
    assert parse(body).ignored == {"field:other": 2}


def test_other_number_is_ignored_when_asked() -> None:
    v = value(text_message("wamid.1"), text_message("wamid.2"), number="999")
    v["statuses"] = [{"id": "wamid.x", "status": "sent", "timestamp": "1"}]
    v["errors"] = [{"code": 130429}]
    mine = value(text_message("wamid.3"), number="106540352242922")
    batch = parse(envelope(v, mine), own="106540352242922")
    assert [m.message_id for m in batch.messages] == ["wamid.3"]
    assert batch.ignored == {"other_number": 3}
    assert not batch.statuses and not batch.errors
    assert len(parse(envelope(v, mine), own=None).messages) == 3


def test_value_level_errors() -> None:
    v = value()
    v["errors"] = [{"code": 130429, "title": "Rate limit hit"}, {"title": "no code"}]
    assert parse(envelope(v)).errors == ["value error 130429", "value error unknown"]


def test_empty_delivery_is_an_empty_batch() -> None:
    assert parse({"object": "whatsapp_business_account", "entry": []}) == Batch()


# --- message types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "kind", "text"),
    [
        (
            {
                "type": "interactive",
                "interactive": {"type": "button_reply", "button_reply": {"id": "x"}},
            },
            Kind.UNSUPPORTED,
            "",
        ),
        ({"type": "button", "button": {"payload": "Unsubscribe"}}, Kind.TEXT, "Unsubscribe"),
        ({"type": "text", "text": {}}, Kind.UNSUPPORTED, ""),
        (
            {"type": "text", "text": {"body": "hi"}, "errors": [{"code": 131051}]},
            Kind.UNSUPPORTED,
            "",
        ),
        ({"type": "audio", "audio": {"mime_type": "audio/ogg"}}, Kind.UNSUPPORTED, ""),
        ({"type": "hologram", "hologram": {}}, Kind.UNSUPPORTED, ""),
        ({"type": "unsupported", "unsupported": {"type": "poll"}}, Kind.UNSUPPORTED, ""),
    ],
)
def test_message_kinds(message: dict[str, Any], kind: Kind, text: str) -> None:
    full = {"from": "16505551234", "id": "wamid.1", "timestamp": "1", **message}
    (inbound,) = parse(envelope(value(full))).messages
    assert (inbound.kind, inbound.text, inbound.original_type) == (kind, text, message["type"])


@pytest.mark.parametrize("kind", ["reaction", "system", "request_welcome", "edit", "revoke"])
def test_no_answer_types(kind: str) -> None:
    full = {"from": "16505551234", "id": "wamid.1", "timestamp": "1", "type": kind, kind: {}}
    assert parse(envelope(value(full))).ignored == {kind: 1}


@pytest.mark.parametrize(
    ("reply_type", "reply"),
    [
        # The user allowed (or declined) the business's calls: pywa's CallPermissionUpdate.
        ("call_permission_reply", {"response": "accept", "response_source": "user_action"}),
        # The user submitted a WhatsApp Flow form: pywa's FlowCompletion.
        ("nfm_reply", {"name": "flow", "body": "Sent", "response_json": '{"flow_token":"t"}'}),
    ],
)
def test_interactive_replies_that_are_no_question_are_ignored_and_counted(
    reply_type: str, reply: dict[str, Any]
) -> None:
    interactive = {"type": reply_type, reply_type: reply}
    full = {
        "from": "16505551234",
        "id": "wamid.1",
        "timestamp": "1",
        "type": "interactive",
        "interactive": interactive,
    }
    batch = parse(envelope(value(full)))
    assert batch.messages == []  # no "unsupported" reply
    assert batch.ignored == {reply_type: 1}


def test_edit_reported_as_unsupported_is_ignored() -> None:
    # The shape of Meta's own "unsupported" example (reference/whatsapp.md §2.5).
    full = {
        "from": "16505551234",
        "id": "wamid.1",
        "timestamp": "1750090702",
        "type": "unsupported",
        "errors": [{"code": 131051, "title": "Message type unknown"}],
        "unsupported": {"type": "edit"},
    }
    assert parse(envelope(value(full))).ignored == {"edit": 1}


# --- identity (§2.7) --------------------------------------------------------------------------


def contact(wa_id: str, user_id: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"profile": {"name": "Sheena"}, "wa_id": wa_id}
    if user_id is not None:
        c["user_id"] = user_id
    return c


@pytest.mark.parametrize(
    ("message", "contacts", "user"),
    [
        # Phone only, the classic shape.
        ({"from": "16505551234"}, [contact("16505551234")], User("16505551234", "+16505551234")),
        ({"from": "16505551234"}, None, User("16505551234", "+16505551234")),
        # BSUID on the contact.
        ({"from": "16505551234"}, [contact("16505551234", "US.1")], User("US.1", "+16505551234")),
        # BSUID on the message only.
        ({"from": "16505551234", "from_user_id": "US.2"}, None, User("US.2", "+16505551234")),
        # Username user: no phone anywhere, only the contact's user_id.
        ({"from": ""}, [contact("", "US.3")], User("US.3", "US.3")),
        ({"from": "", "from_user_id": "US.4"}, [contact("", "US.4")], User("US.4", "US.4")),
        ({"from_user_id": "US.5"}, None, User("US.5", "US.5")),
        # Empty user_id is no user_id.
        (
            {"from": "16505551234"},
            [contact("16505551234", "")],
            User("16505551234", "+16505551234"),
        ),
        # The contact is matched to the message, not taken blindly.
        (
            {"from": "222"},
            [contact("111", "US.111"), contact("222", "US.222")],
            User("US.222", "+222"),
        ),
    ],
)
def test_identity(
    message: dict[str, Any], contacts: list[dict[str, Any]] | None, user: User
) -> None:
    full = {"id": "wamid.1", "timestamp": "1", "type": "text", "text": {"body": "x"}, **message}
    (inbound,) = parse(envelope(value(full, contacts=contacts))).messages
    assert inbound.user == user


def test_message_without_any_identity_is_ignored() -> None:
    full = {"from": "", "id": "wamid.1", "timestamp": "1", "type": "text", "text": {"body": "x"}}
    assert parse(envelope(value(full))).ignored == {"no_user": 1}


# --- malformed deliveries ---------------------------------------------------------------------


def _without(body: dict[str, Any], *path: str | int) -> dict[str, Any]:
    body = copy.deepcopy(body)
    node: Any = body
    for step in path[:-1]:
        node = node[step]
    del node[path[-1]]
    return body


def _with(body: dict[str, Any], value_: Any, *path: str | int) -> dict[str, Any]:
    body = copy.deepcopy(body)
    node: Any = body
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value_
    return body


GOOD = envelope(value(text_message()))
MSG = ("entry", 0, "changes", 0, "value", "messages", 0)

MALFORMED: dict[str, bytes] = {
    "not json": b"{nope",
    "not utf-8": b'{"object": "\xff"}',
    "empty body": b"",
    "json array": b"[]",
    "json string": b'"whatsapp_business_account"',
    "deeply nested": b"[" * 100_000 + b"]" * 100_000,
    "wrong object": json.dumps(_with(GOOD, "page", "object")).encode(),
    "no object": json.dumps(_without(GOOD, "object")).encode(),
    "no entry": json.dumps(_without(GOOD, "entry")).encode(),
    "entry not a list": json.dumps(_with(GOOD, {}, "entry")).encode(),
    "entry item not an object": json.dumps(_with(GOOD, ["x"], "entry")).encode(),
    "no changes": json.dumps(_without(GOOD, "entry", 0, "changes")).encode(),
    "changes not a list": json.dumps(_with(GOOD, "x", "entry", 0, "changes")).encode(),
    "no field": json.dumps(_without(GOOD, "entry", 0, "changes", 0, "field")).encode(),
    "no value": json.dumps(_without(GOOD, "entry", 0, "changes", 0, "value")).encode(),
    "value not an object": json.dumps(_with(GOOD, [], "entry", 0, "changes", 0, "value")).encode(),
    "metadata not an object": json.dumps(
        _with(GOOD, "x", "entry", 0, "changes", 0, "value", "metadata")
    ).encode(),
    "messages not a list": json.dumps(
        _with(GOOD, {}, "entry", 0, "changes", 0, "value", "messages")
    ).encode(),
    "statuses not a list": json.dumps(
        _with(GOOD, {}, "entry", 0, "changes", 0, "value", "statuses")
    ).encode(),
    "contacts not a list": json.dumps(
        _with(GOOD, {}, "entry", 0, "changes", 0, "value", "contacts")
    ).encode(),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_delivery_raises(name: str) -> None:
    with pytest.raises(BadWebhook):
        parse_webhook(MALFORMED[name], phone_number_id=None)


# One bad item inside a good envelope: skipped, counted and noted; the rest of the delivery
# stands (Meta would otherwise redeliver the whole batch for 7 days, §3).
SKIPPED: dict[str, Any] = {
    "message not an object": 1,
    "message that is a list": [text_message("wamid.X")],
    "message without id": {k: v for k, v in text_message("wamid.X").items() if k != "id"},
    "message with empty id": text_message(""),
    "message with numeric id": {**text_message(), "id": 7},
    "message without from": {k: v for k, v in text_message("wamid.X").items() if k != "from"},
    "message with numeric from": {**text_message("wamid.X"), "from": 1650},
    "message with null from": {**text_message("wamid.X"), "from": None},
}


@pytest.mark.parametrize("name", sorted(SKIPPED))
def test_one_bad_message_does_not_spoil_the_delivery(name: str) -> None:
    body = envelope(value(text_message("wamid.1"), SKIPPED[name], text_message("wamid.2")))
    batch = parse(body)
    assert [m.message_id for m in batch.messages] == ["wamid.1", "wamid.2"]
    assert batch.ignored == {"malformed": 1}
    [note] = batch.errors
    assert note.startswith("malformed item skipped: message")


def test_a_status_that_is_not_an_object_is_skipped() -> None:
    v = value(text_message("wamid.1"))
    v["statuses"] = ["sent", {"id": "wamid.S", "status": "delivered"}]
    batch = parse(envelope(v))
    assert [m.message_id for m in batch.messages] == ["wamid.1"]
    assert (batch.statuses, batch.ignored) == ({"delivered": 1}, {"malformed": 1})


def test_contacts_that_are_not_objects_are_passed_over() -> None:
    v = value(text_message("wamid.1"), contacts=["x", contact("16505551234", "US.1")])
    (inbound,) = parse(envelope(v)).messages
    assert inbound.user == User("US.1", "+16505551234")


@pytest.mark.parametrize(
    ("kind", "original"),
    [(None, "unknown"), ("", "unknown"), (42, "unknown"), ("hologram", "hologram")],
)
def test_a_message_without_a_known_type_is_answered_as_unsupported(
    kind: object, original: str
) -> None:
    message: dict[str, Any] = {"from": "16505551234", "id": "wamid.T", "timestamp": "1"}
    if kind is not None:
        message["type"] = kind
    batch = parse(envelope(value(message, text_message("wamid.2"))))
    first, second = batch.messages
    assert (first.message_id, first.kind, first.original_type) == (
        "wamid.T",
        Kind.UNSUPPORTED,
        original,
    )
    assert first.user == User("16505551234", "+16505551234")
    assert second.kind is Kind.TEXT
    assert batch.ignored == {}
    if kind in (None, "", 42):  # a type-less message is worth a warning; a new type is not
        assert batch.errors == ["message without a type: answered as unsupported"]
    else:
        assert batch.errors == []


def test_from_user_id_is_enough_of_a_sender() -> None:
    message = {**text_message("wamid.U"), "from": 1650, "from_user_id": "US.7"}
    (inbound,) = parse(envelope(value(message))).messages
    assert inbound.user == User("US.7", "US.7")


def test_good_body_parses() -> None:
    assert len(parse(GOOD).messages) == 1  # the base of MALFORMED is itself valid


# --- signature (§2.1) -------------------------------------------------------------------------

SECRET = "0123456789abcdef0123456789abcdef"


def _escaped_body() -> bytes:
    # Meta signs ASCII-escaped JSON: "äöå" travels as \u00e4\u00f6\u00e5.
    doc = envelope(value(text_message(body="Grüße, äöå, مرحبا, 😀")))
    return json.dumps(doc, ensure_ascii=True).encode()


def test_signature_over_raw_escaped_body() -> None:
    body = _escaped_body()
    assert b"\\u00fc" in body and body.isascii()
    header = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert verify_signature(SECRET, body, header)
    assert verify_signature(SECRET, body, header.upper().replace("SHA256=", "sha256="))
    # The same document re-serialised without escaping is a different byte string.
    reserialised = json.dumps(json.loads(body), ensure_ascii=False).encode()
    assert not verify_signature(SECRET, reserialised, header)
    assert not verify_signature(SECRET, body + b" ", header)
    assert not verify_signature("other-secret", body, header)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha1=" + "0" * 40,
        "sha256=" + "z" * 64,
        "sha256=" + "a" * 63,
        "sha256=" + "é" * 64,
        "deadbeef" * 8,
        "sha256" + "0" * 64,
    ],
)
def test_malformed_signature_headers(header: str | None) -> None:
    assert verify_signature(SECRET, _escaped_body(), header) is False


def test_empty_secret_never_verifies() -> None:
    body = b"{}"
    header = "sha256=" + hmac.new(b"", body, hashlib.sha256).hexdigest()
    assert verify_signature("", body, header) is False


# --- handshake (§1) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "token", "expected"),
    [
        (
            {"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "1158201444"},
            "tok",
            "1158201444",
        ),
        ({"hub.mode": "subscribe", "hub.verify_token": "bad", "hub.challenge": "1"}, "tok", None),
        ({"hub.verify_token": "tok", "hub.challenge": "1"}, "tok", None),
        ({"hub.mode": "unsubscribe", "hub.verify_token": "tok", "hub.challenge": "1"}, "tok", None),
        ({"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}, "", None),
        ({"hub.mode": "subscribe", "hub.challenge": "1"}, "tok", None),
        ({"hub.mode": "subscribe", "hub.verify_token": "tök", "hub.challenge": "1"}, "tok", None),
        ({"hub.mode": "subscribe", "hub.verify_token": "tok"}, "tok", None),
    ],
)
def test_handshake(query: dict[str, str], token: str, expected: str | None) -> None:
    assert handshake(query, token) == expected


# --- payloads (§5) ----------------------------------------------------------------------------


def test_payloads() -> None:
    assert text_payload("+16505551234", "Hello") == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+16505551234",
        "type": "text",
        "text": {"preview_url": False, "body": "Hello"},
    }
    assert text_payload("+1", "x", preview_url=True)["text"]["preview_url"] is True
    assert voice_payload("+16505551234", "1013859600285441") == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+16505551234",
        "type": "audio",
        "audio": {"id": "1013859600285441", "voice": True},
    }
    # A username user (§2.7): the BSUID goes in `recipient`, and `to` is left out.
    assert text_payload("US.13491208655302741918", "Hello") == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "recipient": "US.13491208655302741918",
        "type": "text",
        "text": {"preview_url": False, "body": "Hello"},
    }
    assert voice_payload("US.1", "1013859600285441") == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "recipient": "US.1",
        "type": "audio",
        "audio": {"id": "1013859600285441", "voice": True},
    }
    assert read_payload("wamid.X", typing=False) == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.X",
    }
    assert read_payload("wamid.X", typing=True) == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.X",
        "typing_indicator": {"type": "text"},
    }


# --- Graph errors (§5.1) ----------------------------------------------------------------------


def graph_error(code: int | str, message: str = "(#1) x", details: str = "") -> bytes:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return json.dumps({"error": error}).encode()


@pytest.mark.parametrize("code", [1, 2, 4, 80007, 130429, 131000, 131016, 131056, 131057])
def test_retryable_codes(code: int) -> None:
    error = parse_graph_error(400, graph_error(code))
    assert isinstance(error, UpstreamUnavailable)
    assert (error.code, error.status, error.upstream) == (str(code), 400, "whatsapp")


@pytest.mark.parametrize(
    "code",
    [
        0,
        190,
        3,
        10,
        200,
        299,
        100,
        131008,
        131009,
        131026,
        131047,
        131051,
        131052,
        131053,
        131048,
        368,
        131031,
        987654,
    ],
)
def test_fatal_codes(code: int) -> None:
    # Even on a 5xx status: Meta says to decide on the code.
    status = 400 if code == 987654 else 500
    error = parse_graph_error(status, graph_error(code))
    assert isinstance(error, UpstreamRejected)
    assert error.code == str(code)


def test_error_message_and_details() -> None:
    error = parse_graph_error(
        400, graph_error(131047, "(#131047) Re-engagement message", "More than 24 hours")
    )
    assert error.message == "(#131047) Re-engagement message (More than 24 hours)"
    assert parse_graph_error(400, graph_error("131056")).code == "131056"


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (502, b"<html>Bad Gateway</html>", UpstreamUnavailable),
        (503, b"", UpstreamUnavailable),
        (429, b"slow down", UpstreamUnavailable),
        (400, b"not json", UpstreamRejected),
        (401, b'{"error": "nope"}', UpstreamRejected),
        (404, b"[1, 2]", UpstreamRejected),
        (500, b'{"error": {"code": true}}', UpstreamUnavailable),
        (500, b"[" * 50_000, UpstreamUnavailable),
    ],
)
def test_error_bodies_without_a_code(status: int, body: bytes, cls: type[Exception]) -> None:
    error = parse_graph_error(status, body)
    assert type(error) is cls
    assert error.code is None and error.status == status


@pytest.mark.parametrize(
    ("code", "status", "reason"),
    [
        # Not processed; slow down (§5.1-§5.2).
        (4, 400, Reason.SLOW_DOWN),
        (80007, 400, Reason.SLOW_DOWN),
        (130429, 400, Reason.SLOW_DOWN),
        (130429, 429, Reason.SLOW_DOWN),
        (131057, 400, Reason.SLOW_DOWN),  # maintenance while the throughput is raised
        # This one user, for a while.
        (131056, 400, Reason.USER_BUSY),
        (131056, 429, Reason.USER_BUSY),  # the code decides, not the status
        # The user cannot be messaged now.
        (131047, 400, Reason.RECIPIENT),
        (131026, 400, Reason.RECIPIENT),
        (131050, 400, Reason.RECIPIENT),
        (131049, 400, Reason.RECIPIENT),
        (130472, 400, Reason.RECIPIENT),
        (131030, 400, Reason.RECIPIENT),
        # §5.1: a 429 carrying 131048 (spam limit) is "stop and alert", not a slow-down.
        (131048, 429, None),
        (190, 503, None),
        (100, 429, None),
        (1, 503, None),  # an unknown error may have been processed
        # No decisive code: the status speaks.
        (2, 503, Reason.SLOW_DOWN),
        (131016, 503, Reason.SLOW_DOWN),
        (987654, 429, Reason.SLOW_DOWN),
        (987654, 503, Reason.SLOW_DOWN),
        (2, 500, None),
        (131000, 500, None),
        (987654, 400, None),
    ],
)
def test_error_reasons(code: int, status: int, reason: str | None) -> None:
    assert parse_graph_error(status, graph_error(code)).reason == reason


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (429, b"slow down", Reason.SLOW_DOWN),
        (503, b"", Reason.SLOW_DOWN),
        (503, b"<html>Service Unavailable</html>", Reason.SLOW_DOWN),
        (500, b"", None),
        (502, b"", None),
        (400, b"not json", None),
    ],
)
def test_error_reasons_without_a_code(status: int, body: bytes, reason: str | None) -> None:
    assert parse_graph_error(status, body).reason == reason


@pytest.mark.parametrize("code", [100, 131009, 131052, 131053])
def test_media_gone_only_on_a_call_that_names_a_media_id(code: int) -> None:
    assert parse_graph_error(400, graph_error(code), media_call=True).reason == Reason.MEDIA_GONE
    assert parse_graph_error(400, graph_error(code)).reason is None


def test_media_call_does_not_hide_other_reasons() -> None:
    error = parse_graph_error(400, graph_error(131047), media_call=True)
    assert error.reason == Reason.RECIPIENT


def test_phone_numbers_are_scrubbed_from_message_and_details() -> None:
    body = graph_error(
        131030,
        "(#131030) Recipient phone number +1 (650) 555-1234 not in allowed list",
        "Add 16505551234 to the allowed list; user US.13491208655302741918",
    )
    error = parse_graph_error(400, body)
    assert "555" not in str(error) and "1349120865" not in str(error)
    assert error.message == (
        "(#131030) Recipient phone number <number> not in allowed list "
        "(Add <number> to the allowed list; user US.<number>)"
    )
    # Error codes are not phone numbers.
    assert parse_graph_error(400, graph_error(131047, "(#131047) x")).message == "(#131047) x"


# -- poison: one message that cannot be handled never fails its batch (issue 10) ---------------


@pytest.mark.parametrize(
    "timestamp",
    ["²", "٣٤", "9" * 5000, "-5", "1.5", "", " ", [], {}, True, -1, 10**12, 1.5],
)
def test_a_timestamp_that_is_not_unix_seconds_skips_that_message_only(timestamp: object) -> None:
    bad = {**text_message("wamid.bad"), "timestamp": timestamp}
    batch = parse(envelope(value(bad, text_message("wamid.good"))))
    assert [m.message_id for m in batch.messages] == ["wamid.good"]
    assert batch.ignored == {"malformed": 1}
    assert batch.errors == [
        "malformed item skipped: message with a timestamp that is not Unix seconds"
    ]


@pytest.mark.parametrize("timestamp", ["1749416383", " 1749416383 ", 1749416383])
def test_a_timestamp_is_unix_seconds_as_a_string_or_a_number(timestamp: object) -> None:
    (message,) = parse(envelope(value({**text_message(), "timestamp": timestamp}))).messages
    assert message.timestamp == 1749416383


def test_a_message_without_a_timestamp_is_answered() -> None:
    bare = text_message()
    del bare["timestamp"]
    (message,) = parse(envelope(value(bare))).messages
    assert message.timestamp == 0


def test_integer_literals_of_thousands_of_digits_do_not_fail_the_delivery() -> None:
    """json.loads refuses an int of more than 4300 digits with ValueError: that would be a 400
    for the whole batch. Such a literal is read as no number at all."""
    good = json.dumps(envelope(value(text_message("wamid.bad"), text_message("wamid.good"))))
    body = good.replace('"timestamp": "1749416383"', '"timestamp": ' + "7" * 5000, 1)
    body = body.replace(
        '"messaging_product"', '"noise": ' + "8" * 100_000 + ', "messaging_product"'
    )
    batch = parse_webhook(body.encode(), phone_number_id=None)
    assert [m.message_id for m in batch.messages] == ["wamid.good"]
    assert batch.ignored == {"malformed": 1}


@pytest.mark.parametrize(
    "poison",
    [
        lambda m: m["text"].update(body="\ud83d"),
        lambda m: m["text"].update(body="ok \udfff ok"),
        lambda m: m.update(id="wamid.\ud800"),
        lambda m: m.update(type="\ud83d"),
    ],
)
def test_a_lone_surrogate_skips_that_message_only(poison: Any) -> None:
    bad = text_message("wamid.bad")
    poison(bad)
    raw = json.dumps(envelope(value(bad, text_message("wamid.good"))))  # ensure_ascii: \ud83d
    batch = parse_webhook(raw.encode(), phone_number_id=None)
    assert [m.message_id for m in batch.messages] == ["wamid.good"]
    assert batch.ignored == {"malformed": 1}
    assert all(m.unstorable() == "" for m in batch.messages)


def test_a_lone_surrogate_in_the_contact_skips_the_message() -> None:
    contacts = [{"wa_id": "1650\udc00", "profile": {"name": "x"}}]
    bad = text_message("wamid.bad", sender="1650\udc00")
    raw = json.dumps(envelope(value(bad, text_message("wamid.good"), contacts=contacts)))
    batch = parse_webhook(raw.encode(), phone_number_id=None)
    assert [m.message_id for m in batch.messages] == ["wamid.good"]


def test_a_surrogate_pair_is_an_emoji_not_poison() -> None:
    raw = json.dumps(envelope(value(text_message(body="\ud83d\ude00"))))
    (message,) = parse_webhook(raw.encode(), phone_number_id=None).messages
    assert message.text == "😀"


def test_notes_about_skipped_messages_carry_no_message_id() -> None:
    """A wamid is base64 of the sender's phone number; the notes go to the log."""
    no_sender = text_message("wamid.SECRET")
    del no_sender["from"]
    no_type = {**text_message("wamid.SECRET2")}
    del no_type["type"]
    batch = parse(envelope(value(no_sender, no_type)))
    assert batch.errors and not any("SECRET" in e for e in batch.errors)


@pytest.mark.parametrize("code", ["²", "9" * 5000, "1e5", " ", "-1", 1.5, None, True, [131000]])
def test_an_error_code_that_is_not_a_number_is_no_code(code: object) -> None:
    body = json.dumps({"error": {"message": "x", "code": code}}).encode()
    error = parse_graph_error(503, body)
    assert error.code is None
    assert error.reason == Reason.SLOW_DOWN  # decided by the status alone
