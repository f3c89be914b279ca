"""Twilio wire format (reference/whatsapp.md §6): signature, webhook parsing, forms, errors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import urlencode

import pytest

from daemon.channels.base import BadWebhook
from daemon.channels.twilio import wire
from daemon.errors import Reason, UpstreamRejected, UpstreamUnavailable
from daemon.model import Kind, Media
from daemon.sim.twilio import status_params, webhook_params

TOKEN = "12345"
SID = "SM" + "a" * 32
MEDIA_URL = f"https://api.twilio.com/2010-04-01/Accounts/AC{'0' * 32}/Messages/MM1/Media/ME1"


def hand_hmac(token: str, data: str) -> str:
    """The signature computed by hand, independently of the code under test."""
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify(token: str, url: str, params: wire.Params, header: str | None) -> bool:
    """``wire.verify`` over a full URL, split here by hand: the origin before the first "/"
    after "//", the target from there (as the web layer hands them over, never re-parsed)."""
    slash = url.find("/", url.index("//") + 2)
    return wire.verify(token, url[:slash], url[slash:], params, header)


# --- signature ------------------------------------------------------------------------------

# The vectors published with twilio-python's RequestValidator tests.
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}


def test_signature_matches_twilio_published_vector() -> None:
    params = [(k, v) for k, v in DOC_PARAMS.items()]
    assert wire.signature(TOKEN, DOC_URL, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    # And by hand: names sorted, each name followed by its value, after the full URL.
    by_hand = hand_hmac(
        TOKEN,
        DOC_URL
        + "CallSidCA1234567890ABCDE"
        + "Caller+14158675309"
        + "Digits1234"
        + "From+14158675309"
        + "To+18005551212",
    )
    assert by_hand == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_signature_of_repeated_names_sorts_their_values() -> None:
    params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    expected = hand_hmac(TOKEN, DOC_URL + "Digits1234Digits5678SidCA123SidAccountAC123")
    assert expected == "IK+Dwps556ElfBT0I3Rgjkr1wJU="  # twilio-python's published value
    assert wire.signature(TOKEN, DOC_URL, params) == expected
    grouped = {"Digits": ["5678", "1234"], "Sid": ["CA123"], "SidAccount": ["AC123"]}
    assert wire.signature(TOKEN, DOC_URL, grouped) == expected


# Repeated names and values, as twilio-python's RequestValidator.compute_signature treats
# them: names sorted once each (sorted(set(params))), then the DISTINCT values of a name
# (sorted(set(values)); twilio-node: Array.from(new Set(values)).sort()) sorted by code
# point, each appended as name + value. So "Z" < "z" < "é", "10" < "9", a value sent twice
# counts once, and "MediaUrl" < "MediaUrl0".
REPEATED = [
    ("Tag", "z"),
    ("NumMedia", "9"),
    ("MediaUrl0", "https://a/1"),
    ("Tag", "é"),
    ("MediaUrl", "x"),
    ("NumMedia", "10"),
    ("MediaUrl0", "https://a/1"),
    ("Tag", "Z"),
]
REPEATED_URL = "https://bot.example.com/webhook?k=a%2Fb"
REPEATED_SIGNED = (
    REPEATED_URL
    + "MediaUrlx"
    + "MediaUrl0https://a/1"  # sent twice, signed once
    + "NumMedia10"
    + "NumMedia9"
    + "TagZ"
    + "Tagz"
    + "Tagé"
)


def test_signature_of_repeated_names_and_values_by_hand() -> None:
    expected = hand_hmac(TOKEN, REPEATED_SIGNED)
    assert expected == "Aid8zHPgmEY9ayJRsNV8l7bS//I="  # the hand computation, pinned
    assert wire.signature(TOKEN, REPEATED_URL, REPEATED) == expected
    assert wire.signature(TOKEN, REPEATED_URL, list(reversed(REPEATED))) == expected
    assert verify(TOKEN, REPEATED_URL, REPEATED, expected)
    # The duplicate pair merged or not: the same signature, as the official validators see it.
    deduplicated = list(dict.fromkeys(REPEATED))
    assert wire.signature(TOKEN, REPEATED_URL, deduplicated) == expected


def test_a_value_sent_twice_is_signed_once() -> None:
    # Foo=a&Foo=a, signed by Twilio as "Fooa" (twilio-python and twilio-node deduplicate).
    url = "https://bot.example.com/webhook"
    header = hand_hmac(TOKEN, url + "Fooa")
    assert verify(TOKEN, url, [("Foo", "a"), ("Foo", "a")], header)
    assert not verify(TOKEN, url, [("Foo", "a"), ("Foo", "a")], hand_hmac(TOKEN, url + "FooaFooa"))


def test_signature_over_a_whatsapp_form_with_query_and_unicode() -> None:
    url = "https://bot.example.com/webhook?tenant=acme&x=1"
    params = [("Body", "Olá +1"), ("From", "whatsapp:+558282136275"), ("AccountSid", "AC1")]
    expected = hand_hmac("tok", url + "AccountSidAC1" + "BodyOlá +1" + "Fromwhatsapp:+558282136275")
    assert wire.signature("tok", url, params) == expected
    assert verify("tok", url, params, expected)


def test_empty_params_sign_the_url_alone() -> None:
    assert wire.signature("tok", "https://h/x", []) == hand_hmac("tok", "https://h/x")


@pytest.mark.parametrize(
    ("called", "signed"),
    [
        # Twilio signed without the port, we see the default port (and the reverse).
        ("https://bot.example.com:443/webhook", "https://bot.example.com/webhook"),
        ("https://bot.example.com/webhook", "https://bot.example.com:443/webhook"),
        ("http://bot.example.com/webhook", "http://bot.example.com:80/webhook"),
        ("http://bot.example.com:80/webhook", "http://bot.example.com/webhook"),
        # An explicit port: as given, or without it (twilio-python's remove_port).
        ("https://bot.example.com:8443/webhook?a=1", "https://bot.example.com:8443/webhook?a=1"),
        ("https://bot.example.com:8443/webhook?a=1", "https://bot.example.com/webhook?a=1"),
    ],
)
def test_verify_tries_with_and_without_the_port(called: str, signed: str) -> None:
    params = [("MessageSid", SID), ("Body", "hi")]
    header = hand_hmac("tok", signed + "Bodyhi" + f"MessageSid{SID}")
    assert verify("tok", called, params, header)


def test_published_port_vectors() -> None:
    params = list(DOC_PARAMS.items())
    assert verify(TOKEN, DOC_URL, params, "kvajT1Ptam85bY51eRf/AJRuM3w=")  # with :443
    http = DOC_URL.replace("https", "http")
    assert verify(TOKEN, http, params, "0ZXoZLH/DfblKGATFgpif+LLRf4=")  # with :80
    with_port = DOC_URL.replace(".com", ".com:1234")
    assert verify(TOKEN, with_port, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_base_variants() -> None:
    assert wire.base_variants("https://h.test") == ["https://h.test", "https://h.test:443"]
    assert wire.base_variants("http://h.test:8080") == ["http://h.test:8080", "http://h.test"]
    assert wire.base_variants("https://[::1]:8443") == ["https://[::1]:8443", "https://[::1]"]
    # A public_url with a path prefix: only the port changes.
    assert wire.base_variants("https://example.com/wa") == [
        "https://example.com/wa",
        "https://example.com:443/wa",
    ]


def test_the_target_is_signed_as_it_came() -> None:
    # The target is appended to each base variant untouched: nothing in it is re-parsed,
    # so an empty query ("?"), a double slash or an encoded "?" stay what was signed.
    pairs = [("/webhook?", "/webhook"), ("//webhook", "/webhook"), ("/w%3F?a=%2F", "/w??a=/")]
    for target, normalized in pairs:
        header = hand_hmac(TOKEN, "https://bot.example.com" + target + "Bodyhi")
        assert wire.verify(TOKEN, "https://bot.example.com", target, [("Body", "hi")], header)
        assert not wire.verify(
            TOKEN, "https://bot.example.com", normalized, [("Body", "hi")], header
        )


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "RSOYDt4T1cUTdK1PDd93/VVr8B8X",  # one character off
        hand_hmac("wrong-token", DOC_URL),
        "not base64 at all ü",
    ],
)
def test_forged_or_missing_signature_is_refused(header: str | None) -> None:
    assert not verify(TOKEN, DOC_URL, list(DOC_PARAMS.items()), header)


def test_signature_over_other_url_or_params_is_refused() -> None:
    params = list(DOC_PARAMS.items())
    good = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert verify(TOKEN, DOC_URL, params, good)
    assert not verify(TOKEN, DOC_URL.replace("foo=1", "foo=2"), params, good)
    assert not verify(TOKEN, "http://mycompany.com/myapp.php?foo=1&bar=2", params, good)
    assert not verify(TOKEN, DOC_URL, [*params, ("Extra", "1")], good)
    assert not verify("", DOC_URL, params, good)  # no token configured: never valid


def test_public_base() -> None:
    assert wire.public_base("https://bot.example.com/") == "https://bot.example.com"
    assert wire.public_base("https://example.com/wa") == "https://example.com/wa"


# --- form -----------------------------------------------------------------------------------


def test_parse_form_keeps_blanks_order_and_decodes_utf8() -> None:
    body = b"Body=&NumMedia=1&ProfileName=Jo%C3%A3o+Silva&Body2=a%2Bb"
    assert wire.parse_form(body) == [
        ("Body", ""),
        ("NumMedia", "1"),
        ("ProfileName", "João Silva"),
        ("Body2", "a+b"),
    ]
    assert wire.parse_form(b"") == []


@pytest.mark.parametrize("body", [b"Body=%FF", b"\xff\xfe=1", b"justaword", b"a=1&&b=2"])
def test_parse_form_refuses_garbage(body: bytes) -> None:
    with pytest.raises(BadWebhook):
        wire.parse_form(body)


# --- webhooks -------------------------------------------------------------------------------

# The §6 captured sandbox body, verbatim but for the SIDs.
CAPTURED = (
    f"SmsMessageSid={SID}&NumMedia=0&ProfileName=Jhonata&SmsSid={SID}&WaId=558282136275"
    "&SmsStatus=received&Body=Ol%C3%A1&To=whatsapp%3A%2B14155238886&NumSegments=1"
    f"&ReferralNumMedia=0&MessageSid={SID}&AccountSid=AC{'0' * 32}"
    "&From=whatsapp%3A%2B558282136275&ApiVersion=2010-04-01"
).encode()


def test_text_message_from_the_captured_body() -> None:
    batch = wire.parse_webhook(wire.parse_form(CAPTURED))
    (message,) = batch.messages
    assert message.message_id == SID
    assert message.kind is Kind.TEXT
    assert message.text == "Olá"
    assert message.user.key == "558282136275"
    assert message.user.address == "whatsapp:+558282136275"
    assert message.original_type == "text"
    assert message.channel_ref == "whatsapp:+14155238886"
    assert message.media is None
    assert batch.statuses == {}


def test_user_key_falls_back_to_the_digits_of_from() -> None:
    params = [p for p in webhook_params(from_wa_id="15551234567", body="hi") if p[0] != "WaId"]
    (message,) = wire.parse_webhook(params).messages
    assert message.user.key == "15551234567"
    assert message.user.address == "whatsapp:+15551234567"


def test_voice_note() -> None:
    params = webhook_params(from_wa_id="15551234567", media=(MEDIA_URL, "audio/ogg"))
    (message,) = wire.parse_webhook(params).messages
    assert message.kind is Kind.VOICE
    assert message.media == Media(id=MEDIA_URL, mime_type="audio/ogg", voice=True)
    assert message.text == ""
    assert message.message_id.startswith("MM")
    assert message.original_type == "audio"


def test_image_is_unsupported_with_its_top_level_type() -> None:
    params = webhook_params(from_wa_id="15551234567", media=(MEDIA_URL, "image/jpeg"), body="cap")
    (message,) = wire.parse_webhook(params).messages
    assert message.kind is Kind.UNSUPPORTED
    assert message.original_type == "image"
    assert message.media is None


def test_location_is_unsupported() -> None:
    params = webhook_params(from_wa_id="15551234567", location=(-9.6498, -35.7089))
    (message,) = wire.parse_webhook(params).messages
    assert message.kind is Kind.UNSUPPORTED
    assert message.original_type == "location"


def test_quick_reply_button_is_text() -> None:
    params = webhook_params(from_wa_id="15551234567", button=("Talk to sales", "sales"))
    (message,) = wire.parse_webhook(params).messages
    assert message.kind is Kind.TEXT
    assert message.text == "Talk to sales"
    assert message.original_type == "button"


def test_empty_body_without_media_is_unsupported() -> None:
    params = webhook_params(from_wa_id="15551234567", body="")
    (message,) = wire.parse_webhook(params).messages
    assert message.kind is Kind.UNSUPPORTED


def test_unknown_parameters_are_ignored() -> None:
    params = webhook_params(
        from_wa_id="15551234567",
        body="hi",
        extra=[("BrandNewField", "x"), ("ChannelMetadata", "{")],
    )
    (message,) = wire.parse_webhook(params).messages
    assert message.text == "hi"


@pytest.mark.parametrize("state", ["sent", "delivered", "read", "queued"])
def test_status_callback_is_counted_not_answered(state: str) -> None:
    batch = wire.parse_webhook(status_params(SID, state, to_wa_id="15551234567"))
    assert batch.messages == []
    assert batch.statuses == {state: 1}
    assert batch.errors == []


def test_failed_status_reports_its_error_code() -> None:
    params = status_params(SID, "failed", to_wa_id="15551234567", error_code="63016")
    batch = wire.parse_webhook(params)
    assert batch.statuses == {"failed": 1}
    assert batch.errors == ["status failed 63016"]


def test_status_callback_with_a_body_is_still_a_status() -> None:
    params = [*status_params(SID, "delivered", to_wa_id="15551234567"), ("Body", "our answer")]
    batch = wire.parse_webhook(params)
    assert batch.messages == []
    assert batch.statuses == {"delivered": 1}


def test_sms_to_the_same_number_is_ignored() -> None:
    params = [("MessageSid", SID), ("From", "+15551234567"), ("Body", "hi")]
    batch = wire.parse_webhook(params)
    assert batch.messages == []
    assert batch.ignored == {"not_whatsapp": 1}


@pytest.mark.parametrize(
    "params",
    [
        [],
        [("Body", "hi"), ("From", "whatsapp:+15551234567")],  # no MessageSid
        [("MessageSid", SID), ("Body", "hi")],  # no From
        [("MessageStatus", "delivered")],  # a status without a SID
        [("MessageSid", SID), ("From", "whatsapp:+15551234567"), ("NumMedia", "x")],
        [("foo", "bar")],
    ],
)
def test_wrong_shapes_are_bad_webhooks(params: list[tuple[str, str]]) -> None:
    with pytest.raises(BadWebhook):
        wire.parse_webhook(params)


def test_garbage_body_is_a_bad_webhook() -> None:
    with pytest.raises(BadWebhook):
        wire.parse_webhook(wire.parse_form(b"<xml>not a form</xml>"))
    with pytest.raises(BadWebhook):
        wire.parse_webhook(wire.parse_form(b'{"json": true}'))


# --- Messages API form and errors -----------------------------------------------------------


def test_message_form() -> None:
    form = wire.message_form("whatsapp:+14155238886", "whatsapp:+1555", body="Hi")
    assert form == [("From", "whatsapp:+14155238886"), ("To", "whatsapp:+1555"), ("Body", "Hi")]
    media = wire.message_form("whatsapp:+1", "whatsapp:+2", media_url="https://x/media/t")
    assert media == [
        ("From", "whatsapp:+1"),
        ("To", "whatsapp:+2"),
        ("MediaUrl", "https://x/media/t"),
    ]
    assert urlencode(media) == (
        "From=whatsapp%3A%2B1&To=whatsapp%3A%2B2&MediaUrl=https%3A%2F%2Fx%2Fmedia%2Ft"
    )
    with pytest.raises(ValueError, match="body or a media URL"):
        wire.message_form("whatsapp:+1", "whatsapp:+2")


def twilio_error(code: int, status: int, message: str = "msg") -> bytes:
    return json.dumps(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
    ).encode()


@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        (63016, 400, UpstreamRejected),  # outside the 24 h window
        (21211, 400, UpstreamRejected),
        (21614, 400, UpstreamRejected),
        (21610, 400, UpstreamRejected),
        (63003, 400, UpstreamRejected),
        (20003, 401, UpstreamRejected),
        (20404, 404, UpstreamRejected),
        (20429, 429, UpstreamUnavailable),
        (63018, 400, UpstreamUnavailable),  # channel rate limit, whatever the status says
        (20500, 500, UpstreamUnavailable),
        (99999, 503, UpstreamUnavailable),  # unknown code: the status decides
        (99999, 429, UpstreamUnavailable),
        (99999, 400, UpstreamRejected),
    ],
)
def test_parse_error_maps_codes(code: int, status: int, cls: type[Exception]) -> None:
    error = wire.parse_error(status, twilio_error(code, status))
    assert type(error) is cls
    assert error.upstream == "twilio"
    assert error.code == str(code)
    assert error.status == status
    assert error.message == "msg"


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (502, b"<html>Bad Gateway</html>", UpstreamUnavailable),
        (400, b"", UpstreamRejected),
        (400, b"[1, 2]", UpstreamRejected),
        (400, b'{"code": true}', UpstreamRejected),
        (500, b"\xff\xfe", UpstreamUnavailable),
    ],
)
def test_parse_error_survives_non_json(status: int, body: bytes, cls: type[Exception]) -> None:
    error = wire.parse_error(status, body)
    assert type(error) is cls
    assert error.code is None
    assert error.message == f"HTTP {status}"


def test_parse_error_keeps_phone_numbers_out_of_the_message() -> None:
    body = twilio_error(21211, 400, "The 'To' number whatsapp:+15551234567 is not valid")
    error = wire.parse_error(400, body)
    assert "5551234567" not in str(error)
    assert "<number>" in error.message


@pytest.mark.parametrize(
    ("code", "status", "reason"),
    [
        (20429, 429, Reason.SLOW_DOWN),
        # 63018 "Rate limit exceeded for Channel": the account or the WhatsApp sender is over
        # its rate (twilio.com/docs/api/errors/63018), every user alike: a slow-down.
        (63018, 400, Reason.SLOW_DOWN),
        (63018, 429, Reason.SLOW_DOWN),
        (63017, 429, Reason.SLOW_DOWN),
        (63016, 400, Reason.RECIPIENT),  # outside the 24 h window
        (21211, 400, Reason.RECIPIENT),
        (21614, 400, Reason.RECIPIENT),
        (21610, 400, Reason.RECIPIENT),
        (63003, 400, Reason.RECIPIENT),
        (63014, 400, Reason.RECIPIENT),
        (63024, 400, Reason.RECIPIENT),
        (63032, 400, Reason.RECIPIENT),
        (21211, 429, Reason.RECIPIENT),  # the code decides, not the status
        (20003, 429, None),
        (20503, 503, Reason.SLOW_DOWN),  # no reason of its own: the status speaks
        (20500, 500, None),
        (99999, 429, Reason.SLOW_DOWN),
        (99999, 503, Reason.SLOW_DOWN),
        (99999, 400, None),
    ],
)
def test_parse_error_reasons(code: int, status: int, reason: str | None) -> None:
    assert wire.parse_error(status, twilio_error(code, status)).reason == reason


@pytest.mark.parametrize(
    ("status", "reason"), [(429, Reason.SLOW_DOWN), (503, Reason.SLOW_DOWN), (500, None)]
)
def test_parse_error_reason_without_a_body(status: int, reason: str | None) -> None:
    assert wire.parse_error(status, b"").reason == reason


# -- odd field values (issue 10) ---------------------------------------------------------------


@pytest.mark.parametrize("num_media", ["²", "٣", "9" * 5000, "-1", "1.0", "one"])
def test_num_media_that_is_not_a_small_number_is_a_bad_webhook(num_media: str) -> None:
    params = [("MessageSid", "SM1"), ("From", "whatsapp:+15551234567"), ("NumMedia", num_media)]
    with pytest.raises(BadWebhook, match="NumMedia"):
        wire.parse_webhook(params)


def test_a_lone_surrogate_in_a_field_is_a_bad_webhook() -> None:
    # parse_form refuses one (strict UTF-8); params from elsewhere are checked all the same.
    params = [("MessageSid", "SM1"), ("From", "whatsapp:+15551234567"), ("Body", "hi \ud83d")]
    with pytest.raises(BadWebhook, match="surrogate"):
        wire.parse_webhook(params)
    with pytest.raises(BadWebhook):
        wire.parse_form(b"MessageSid=SM1&From=whatsapp%3A%2B1555&Body=%ED%A0%BD")


def test_control_characters_and_astral_emoji_in_a_body_are_a_message() -> None:
    body = "\x00\x1b[31m\r\nhello 😀\u202e"
    params = [("MessageSid", "SM1"), ("From", "whatsapp:+15551234567"), ("Body", body)]
    (message,) = wire.parse_webhook(params).messages
    assert message.text == body
    assert message.unstorable() == ""


@pytest.mark.parametrize("code", ["²", "9" * 5000, " ", None, True])
def test_an_error_code_that_is_not_a_number_is_no_code(code: object) -> None:
    error = wire.parse_error(429, json.dumps({"code": code, "message": "x"}).encode())
    assert error.code is None
    assert error.reason == Reason.SLOW_DOWN
