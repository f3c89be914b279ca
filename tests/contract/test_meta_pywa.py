"""Meta's Cloud API held to pywa (david-lev/pywa), a client nobody here wrote.

Two directions, both over real HTTP:

- pywa's ``WhatsApp`` client, pointed at the Graph simulator, sends a text, uploads a voice
  note and sends it by media id, looks up a user's media and downloads it, marks read with
  the typing indicator, and gets answers (and errors) it parses.
- pywa's own webhook fixtures (tests/fixtures/whatsapp-updates, MIT, from pywa), and the
  update kinds those older files lack written here from Meta's webhook reference
  (tests/fixtures/meta-updates: calls, message echoes, templates, account and marketing
  preference updates, request_welcome), signed as pywa verifies them, are posted to the
  real daemon; each is answered, ignored or counted exactly as pywa types it (``HANDLING``:
  pywa's type -> what the daemon must do), and every update type pywa has a handler for
  has a decided handling and a fixture.

pywa is synchronous (httpx.Client): its calls run in a worker thread while the simulator
serves on trio. Its client reaches the simulator through its own ``session`` argument, with
a transport that sends graph.facebook.com to the loopback port; nothing else is patched.
"""

from __future__ import annotations

import copy
import inspect
import json
import typing
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from pywa import WhatsApp, handlers
from pywa import errors as pywa_errors
from pywa.types.media import Media, MediaURL

from daemon.sim import webhooks
from daemon.sim.audio import listen, speak
from daemon.sim.graph import GraphSim
from daemon.sim.stack import PHONE_NUMBER_ID, SECRETS, Stack, open_stack
from tests.contract.threads import in_thread, raised

FIXTURES = Path(__file__).parent.parent / "fixtures" / "whatsapp-updates"
# Written here, field by field from Meta's webhook reference (pywa 4.5's types say which
# fields it reads): the update kinds pywa's older fixture files above do not have.
WRITTEN = Path(__file__).parent.parent / "fixtures" / "meta-updates"
TOKEN = SECRETS["WHATSAPP_ACCESS_TOKEN"]
APP_SECRET = SECRETS["WHATSAPP_APP_SECRET"]
USER = "16505551234"
OGG = "audio/ogg; codecs=opus"


class ToSimulator(httpx.HTTPTransport):
    """graph.facebook.com -> the simulator's loopback origin; every other URL as it is (the
    media URLs the simulator hands out already point at it)."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self._base = httpx.URL(base_url)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "graph.facebook.com":
            request.url = request.url.copy_with(
                scheme=self._base.scheme, host=self._base.host, port=self._base.port
            )
        return super().handle_request(request)


@pytest.fixture
async def graph(nursery: trio.Nursery) -> GraphSim:
    sim = GraphSim(access_token=TOKEN, phone_number_id=PHONE_NUMBER_ID)
    with trio.fail_after(10):
        await sim.start(nursery)
    return sim


@pytest.fixture
def wa(graph: GraphSim) -> Iterator[WhatsApp]:
    assert graph.base_url is not None
    with httpx.Client(transport=ToSimulator(graph.base_url), timeout=10) as session:
        yield WhatsApp(phone_id=PHONE_NUMBER_ID, token=TOKEN, session=session, api_version="23.0")


async def error_of(fn: Callable[[], Any]) -> pywa_errors.WhatsAppError:
    return await raised(pywa_errors.WhatsAppError, fn)


# --------------------------------------------------------------------------- pywa's client


async def test_pywa_sends_a_text_and_parses_the_answer(wa: WhatsApp, graph: GraphSim) -> None:
    sent = await in_thread(lambda: wa.send_message(to=USER, text="Hello from pywa"))
    (message,) = graph.sent
    assert sent.id == message.wamid  # pywa read the wamid out of our answer
    assert sent.input == USER
    # pywa addresses the bare wa_id digits (no '+'); Graph takes both, and so must we.
    assert message.to == USER and message.text == "Hello from pywa"
    assert message.payload["recipient_type"] == "individual"


async def test_pywa_uploads_a_voice_note_and_sends_it_by_media_id(
    wa: WhatsApp, graph: GraphSim
) -> None:
    clip = speak("your parcel is on its way")
    media: Media = await in_thread(
        lambda: wa.upload_media(media=clip, mime_type=OGG, filename="voice.ogg")
    )
    (upload,) = graph.uploads
    assert media.id == upload.media_id
    assert upload.mime_type == OGG and upload.data == clip
    sent = await in_thread(lambda: wa.send_voice(to=USER, voice=media))
    (message,) = graph.sent
    assert sent.id == message.wamid
    assert message.payload["audio"] == {"id": media.id, "voice": True}
    assert message.renders_as_voice_note  # Ogg/Opus, mono, small: a real voice note


async def test_pywa_gets_a_users_media_url_and_downloads_it(wa: WhatsApp, graph: GraphSim) -> None:
    clip = speak("a voice note from the user")
    media_id = graph.add_user_media(clip, OGG)
    url: MediaURL = await in_thread(lambda: wa.get_media_url(media_id))
    assert (url.id, url.mime_type, url.file_size) == (media_id, OGG, len(clip))
    data: bytes = await in_thread(lambda: wa.get_media_bytes(url.url))
    assert data == clip
    assert listen(data)[0] == "a voice note from the user"
    assert [(d.host, d.status) for d in graph.downloads] == [(graph.media_host, 200)]


async def test_pywa_parses_the_refusal_of_phone_number_id_for_a_users_media(
    wa: WhatsApp, graph: GraphSim
) -> None:
    # pywa itself never names the number (its get_media_url sends no parameters); asked
    # with one, for media a user sent, Graph answers code 100 and pywa raises it as such.
    media_id = graph.add_user_media(speak("hello"), OGG)
    error = await error_of(
        lambda: wa.api._request(
            method="GET", endpoint=f"/{media_id}", params={"phone_number_id": PHONE_NUMBER_ID}
        )
    )
    assert error.code == 100
    assert error.message == (
        "(#100) Param phone_number_id is not a valid whatsapp business phone number id ID"
    )


async def test_pywa_marks_read_with_the_typing_indicator(wa: WhatsApp, graph: GraphSim) -> None:
    read = await in_thread(lambda: wa.mark_message_as_read(message_id="wamid.abc"))
    typing = await in_thread(lambda: wa.indicate_typing(message_id="wamid.abc"))
    assert read.success and typing.success
    assert [(r.message_id, r.typing) for r in graph.reads] == [
        ("wamid.abc", False),
        ("wamid.abc", True),
    ]


async def test_pywa_raises_graphs_errors_by_their_code(wa: WhatsApp, graph: GraphSim) -> None:
    graph.fail_sends(131047)  # outside the 24 h window
    late = await error_of(lambda: wa.send_message(to=USER, text="late"))
    unknown_media = await error_of(lambda: wa.send_voice(to=USER, voice="424242"))
    graph.fail_sends(131056)
    pair_rate = await error_of(lambda: wa.send_message(to=USER, text="again"))
    assert isinstance(late, pywa_errors.ReEngagementMessage)
    assert unknown_media.code == 100
    assert isinstance(pair_rate, pywa_errors.TooManyMessages)
    assert graph.sent == []


# --------------------------------------------------------------------------- pywa's webhooks


def _handler_kinds() -> list[type[handlers.Handler[Any]]]:
    """Every public handler pywa has for a typed update (not the raw one)."""
    return [
        cls
        for name, cls in inspect.getmembers(handlers, inspect.isclass)
        if issubclass(cls, handlers.Handler)
        and cls not in (handlers.Handler, handlers.RawUpdateHandler)
        and not name.startswith("_")
    ]


def pywa_update_types() -> set[str]:
    """The names of the update types pywa's handlers take (Handler[CallConnect] ...)."""
    return {
        typing.get_args(base)[0].__name__
        for kind in _handler_kinds()
        for base in getattr(kind, "__orig_bases__", ())
        if typing.get_args(base)
    }


def _pywa_receiver() -> tuple[WhatsApp, list[str]]:
    """A pywa client that only types updates: every handler records what it got."""
    seen: list[str] = []

    def record(_: WhatsApp, update: Any) -> None:
        name = type(update).__name__
        detail = getattr(update, "type" if name == "Message" else "status", None)
        detail = getattr(detail, "value", detail)
        seen.append(f"{name}[{detail}]" if detail is not None else name)

    kinds = _handler_kinds()
    receiver = WhatsApp(
        phone_id=PHONE_NUMBER_ID,
        token=TOKEN,
        app_secret=APP_SECRET,
        verify_token=SECRETS["WHATSAPP_VERIFY_TOKEN"],
        skip_duplicate_updates=False,
    )
    receiver.add_handlers(*[kind(record) for kind in kinds])
    return receiver, seen


def pywa_type(body: bytes, signature: str) -> str:
    """What pywa makes of a signed delivery, after checking the signature its own way."""
    receiver, seen = _pywa_receiver()
    assert receiver.webhook_update_validator(body, signature) is None  # pywa: valid
    assert receiver.webhook_update_handler(body) == ("ok", 200)
    (label,) = seen
    return label


def _load_fixtures(directory: Path = FIXTURES, prefix: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        with path.open(encoding="utf-8") as f:
            for name, payload in json.load(f).items():
                out[f"{prefix}{path.stem}/{name}"] = payload
    return out


def _interactive(reply_type: str, reply: dict[str, Any]) -> dict[str, Any]:
    """An interactive reply in the envelope of pywa's text fixture, shaped as Meta documents
    it (webhooks/reference/messages/interactive): not every kind has a pywa fixture here."""
    payload = copy.deepcopy(_load_fixtures()["message/text"])
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    del message["text"]
    message.update(
        type="interactive",
        context={"from": "972123456789", "id": "wamid.asked"},
        interactive={"type": reply_type, reply_type: reply},
    )
    return payload


FIXTURE_PAYLOADS = (
    _load_fixtures()
    | _load_fixtures(WRITTEN, "meta/")
    | {
        "ours/call_permission_reply": _interactive(
            "call_permission_reply",
            {
                "response": "accept",
                "expiration_timestamp": 1753186982,
                "response_source": "user_action",
            },
        ),
        "ours/nfm_reply": _interactive(
            "nfm_reply", {"name": "flow", "body": "Sent", "response_json": '{"flow_token": "t"}'}
        ),
    }
)

# pywa's type of an update -> what the daemon does with it:
#   ("answered", outcome)  a turn runs and the user gets an answer (TurnReport.outcome)
#   ("ignored", reason)    no turn; counted as wa_agentd_messages_total{ignored_<reason>}
#   ("counted", status)    a delivery status, counted, never turned
UNSUPPORTED = ("answered", "unsupported")  # the polite "can't read that" text
HANDLING: dict[str, tuple[str, str]] = {
    "Message[text]": ("answered", "answered"),
    "Message[audio]": ("answered", "answered"),  # any audio: transcribed and answered
    "Message[image]": UNSUPPORTED,
    "Message[video]": UNSUPPORTED,
    "Message[document]": UNSUPPORTED,
    "Message[sticker]": UNSUPPORTED,
    "Message[location]": UNSUPPORTED,
    "Message[contacts]": UNSUPPORTED,
    "Message[order]": UNSUPPORTED,
    "Message[unsupported]": UNSUPPORTED,
    "Message[interactive]": UNSUPPORTED,  # pywa's fallback for an interactive with errors
    "Message[reaction]": ("ignored", "reaction"),
    "CallbackButton": ("answered", "answered"),  # the button's title is the question
    "CallbackSelection": ("answered", "answered"),
    "MessageStatus[sent]": ("counted", "sent"),
    "MessageStatus[delivered]": ("counted", "delivered"),
    "MessageStatus[read]": ("counted", "read"),
    "MessageStatus[played]": ("counted", "played"),
    "MessageStatus[failed]": ("counted", "failed"),
    "GroupMessageStatuses": ("counted", "read"),
    "PhoneNumberChange": ("ignored", "system"),
    "IdentityChange": ("ignored", "system"),
    "EditedMessage": ("ignored", "edit"),
    "DeletedMessage": ("ignored", "revoke"),
    "CallPermissionUpdate": ("ignored", "call_permission_reply"),
    "FlowCompletion": ("ignored", "nfm_reply"),
    # The user opened the chat (no message yet): nothing to answer.
    "Message[request_welcome]": ("ignored", "request_welcome"),
    # Messages the business sent from the WhatsApp Business app (coexistence echoes): never
    # answered, or the agent would talk to its own business.
    "OutgoingMessage": ("ignored", "field:smb_message_echoes"),
    "OutgoingEditedMessage": ("ignored", "field:smb_message_echoes"),
    "OutgoingDeletedMessage": ("ignored", "field:smb_message_echoes"),
    # WhatsApp calls to or from the number: the daemon answers messages, not calls.
    "CallConnect": ("ignored", "field:calls"),
    "CallTerminate[COMPLETED]": ("ignored", "field:calls"),
    "CallStatus[RINGING]": ("ignored", "field:calls"),
    # The account's and its templates' news: the operator's business, not a user's question.
    "AccountUpdate": ("ignored", "field:account_update"),
    "TemplateStatusUpdate": ("ignored", "field:message_template_status_update"),
    "TemplateCategoryUpdate": ("ignored", "field:template_category_update"),
    "TemplateQualityUpdate": ("ignored", "field:message_template_quality_update"),
    "TemplateComponentsUpdate": ("ignored", "field:message_template_components_update"),
    # A user stopped (or resumed) marketing messages; the daemon sends none.
    "UserMarketingPreferences": ("ignored", "field:user_preferences"),
}


def _to_our_number(payload: dict[str, Any]) -> dict[str, Any]:
    """The fixture as delivered to the daemon's number (pywa's fixtures name their own)."""
    ours = copy.deepcopy(payload)
    for entry in ours["entry"]:
        for change in entry["changes"]:
            change["value"].setdefault("metadata", {})["phone_number_id"] = PHONE_NUMBER_ID
    return ours


def _audio_ids(payload: dict[str, Any]) -> list[str]:
    return [
        m["audio"]["id"]
        for e in payload["entry"]
        for c in e["changes"]
        for m in c["value"].get("messages", [])
        if m.get("type") == "audio"
    ]


def test_every_pywa_update_type_has_a_decided_handling_and_a_fixture() -> None:
    labels = {}
    for name, payload in FIXTURE_PAYLOADS.items():
        body = webhooks.encode(_to_our_number(payload))
        labels[name] = pywa_type(body, webhooks.sign(body, APP_SECRET))
    seen = set(labels.values())
    assert seen <= set(HANDLING), {n: t for n, t in labels.items() if t not in HANDLING}
    assert set(HANDLING) <= seen, f"HANDLING entries no fixture reaches: {set(HANDLING) - seen}"
    types = pywa_update_types()
    assert {"Message", "CallConnect", "OutgoingMessage", "TemplateStatusUpdate"} <= types
    untested = {t for t in types if not any(label.split("[")[0] == t for label in seen)}
    assert not untested, f"pywa types with no fixture: {untested}"


@pytest.fixture
async def meta_stack() -> AsyncIterator[Stack]:
    async with open_stack() as stack:
        yield stack


@pytest.mark.parametrize("name", sorted(FIXTURE_PAYLOADS))
async def test_pywa_update_is_handled_as_pywa_types_it(meta_stack: Stack, name: str) -> None:
    stack = meta_stack
    payload = _to_our_number(FIXTURE_PAYLOADS[name])
    body = webhooks.encode(payload)
    signature = webhooks.sign(body, APP_SECRET)
    label = pywa_type(body, signature)
    assert label in HANDLING, f"pywa types {name} as {label}: decide how the daemon handles it"
    what, detail = HANDLING[label]
    for media_id in _audio_ids(payload):  # the voice note the fixture names, at Graph
        stack.graph.add_user_media(speak("When do you open?"), OGG, media_id=media_id)
    with trio.fail_after(20):
        response = await stack.post_body(body, signature=signature)
        assert response.status_code == 200, response.text
        stats = stack.daemon.web.stats
        if what == "answered":
            (report,) = await stack.wait_reports(1)
            assert report.outcome == detail, report.summary()
            assert any(m.type == "text" for m in stack.graph.sent)
            assert stats.messages == {"accepted": 1}
            return
    assert stack.reports == [] and stack.graph.sent == []
    assert "accepted" not in stats.messages
    if what == "ignored":
        assert stats.messages == {f"ignored_{detail}": 1}
    else:
        assert stats.statuses == {detail: 1}


@pytest.mark.parametrize("only_own_number", [True, False])
async def test_the_other_number_filter_is_independent_of_the_media_lookup(
    only_own_number: bool,
) -> None:
    # pywa's voice fixture as it stands, addressed to another number of the account.
    # [whatsapp] only_own_number decides from metadata.phone_number_id alone; when the daemon
    # does answer it, the media lookup still names no number (Graph would refuse it).
    payload = FIXTURE_PAYLOADS["message/voice"]
    body = webhooks.encode(payload)
    async with open_stack(whatsapp={"only_own_number": only_own_number}) as stack:
        for media_id in _audio_ids(payload):
            stack.graph.add_user_media(speak("When do you open?"), OGG, media_id=media_id)
        with trio.fail_after(20):
            assert (await stack.post_body(body)).status_code == 200
            if only_own_number:
                assert stack.daemon.web.stats.messages == {"ignored_other_number": 1}
                assert stack.graph.downloads == [] and stack.graph.sent == []
                return
            (report,) = await stack.wait_reports(1)
    assert report.outcome == "answered" and report.voice == "sent"
    assert [d.status for d in stack.graph.downloads] == [200]
