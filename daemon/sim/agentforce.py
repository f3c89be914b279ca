"""A strict fake of Salesforce Agentforce: the OAuth token endpoint and Agent API v1.

Everything on the wire follows reference/agentforce.md (cited as §n below); where that
document marks a fact unverified, the choice made here is written next to the code.

One sim serves both hosts the daemon talks to (``[agentforce] token_url`` and ``api_url``):

- ``POST /services/oauth2/token``                         client-credentials token (§1)
- ``POST /einstein/ai-agent/v1/agents/{id}/sessions``     start a session (§2)
- ``POST /einstein/ai-agent/v1/sessions/{sid}/messages``  one synchronous turn (§3)
- ``POST .../sessions/{sid}/messages/stream``             the same turn as SSE (§4)
- ``DELETE /einstein/ai-agent/v1/sessions/{sid}``          end the session (§5)

A turn runs in the sim's own nursery, not in the request handler: when the client gives up
early, the "server" keeps working and the session stays locked (423) until the turn is over,
like the real API may (§3.2). Every turn is capped at 120 s and then answers 500 (§0).

Replies come from ``responder(session, text)`` (plain or async) when given, else from
``default_brain``: a tiny FAQ with Markdown answers plus test triggers such as ``[escalate]``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio

from daemon.observe.logs import hashed
from daemon.sim.base import Changes, Faults, start_app

log = logging.getLogger(__name__)

API = "/einstein/ai-agent/v1"
TOKEN_PATH = "/services/oauth2/token"
MAX_TURN_SECONDS = 120.0  # §0: every call has a 120 s server timeout, then HTTP 500
GREETING = "Hi, I'm an AI service assistant. How can I help you?"  # §2.2
END_REASONS = frozenset({"UserRequest", "Transfer", "Expiration", "Error", "Other"})  # §5
VARIABLE_TYPES = frozenset(
    {"Text", "Number", "Boolean", "Date", "DateTime", "Money", "Object", "Json", "Ref", "List"}
)  # §2.1
CHUNK_TYPES = frozenset({"Text"})  # §2.1: the only chunk type documented for v1
SCOPE = "sfap_api chatbot_api api"  # §1.3
MAX_SEQUENCE_ID = 2**63 - 1  # a Java long on the server side; Date.now() fits easily (§9)

JsonDict = dict[str, Any]


# --- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMessage:
    """A user message the sim accepted (it passed validation and started a turn)."""

    session_id: str
    sequence_id: int
    text: str
    time: float  # sim clock
    stream: bool = False
    body: JsonDict = field(default_factory=dict)  # the request body as received


@dataclass(frozen=True)
class StartedSession:
    session_id: str
    external_session_key: str
    body: JsonDict
    time: float


@dataclass(frozen=True)
class LoggedRequest:
    """Every request that reached the sim, whatever it was answered."""

    method: str
    path: str
    status: int
    time: float
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names, as received


@dataclass
class SimSession:
    """One Agent API session, as the responder sees it."""

    session_id: str
    external_session_key: str
    created: float
    last_used: float
    history: list[str] = field(default_factory=list)  # user texts of finished turns, in order
    busy: bool = False
    ended: bool = False
    last_sequence_id: int = 0


Responder = Callable[[SimSession, str], list[JsonDict] | Awaitable[list[JsonDict]]]


@dataclass
class _Turn:
    text: str
    done: trio.Event = field(default_factory=trio.Event)
    messages: list[JsonDict] | None = None  # None: timed out or failed -> 500
    failure: str = f"Request did not complete within {MAX_TURN_SECONDS:g} seconds"


# --- message builders (public so responders can use them) ----------------------------------


def _uuid() -> str:
    return str(uuid.uuid4())


def _now_ms() -> int:
    return int(time.time() * 1000)


def inform(text: str, *, cited_references: list[JsonDict] | None = None) -> JsonDict:
    """An ``Inform`` message as in the sync response sample (§3.2)."""
    plan = _uuid()
    return {
        "type": "Inform",
        "id": _uuid(),
        "metrics": {},
        "feedbackId": plan,
        "planId": plan,
        "isContentSafe": True,
        "message": text,
        "result": [],
        "citedReferences": cited_references or [],
    }


def failure(message: str, errors: list[str], code: str = "ACTION_FAILED") -> JsonDict:
    """A ``Failure`` message (§6; code ACTION_FAILED or ESCALATE)."""
    plan = _uuid()
    return {
        "type": "Failure",
        "id": _uuid(),
        "feedbackId": plan,
        "planId": plan,
        "isContentSafe": True,
        "message": message,
        "code": code,
        "errors": errors,
    }


def escalate(targets: list[JsonDict] | None = None) -> JsonDict:
    """An ``Escalate`` message with its targets (§6)."""
    return {
        "type": "Escalate",
        "id": _uuid(),
        "feedbackId": _uuid(),
        "targets": targets or [{"type": "Salesforce:Core:Queue:Id", "value": "00G5g000004YYYYEAA"}],
    }


def session_ended(reason: str = "Action") -> JsonDict:
    """A ``SessionEnded`` message (§5, §6): the agent ended the session itself."""
    return {"type": "SessionEnded", "id": _uuid(), "reason": reason, "feedbackId": ""}


def error_message(message: str) -> JsonDict:
    """An ``Error`` message inside a 200 response (§6)."""
    return {
        "type": "Error",
        "id": _uuid(),
        "feedbackId": "",
        "httpStatus": 500,
        "traceId": secrets.token_hex(16),
        "error": "AgentExecutionException",
        "message": message,
        "timestamp": _now_ms(),
        "expected": False,
    }


# --- the default brain (pure: depends only on the text and the session's history) -----------

FAQ_HOURS = (
    "We're open **Monday to Friday, 9:00–18:00** and **Saturday, 10:00–14:00**.\n\n"
    "We're closed on Sundays and public holidays."
)
FAQ_RETURNS = (
    "You can return any item within **30 days** of delivery:\n\n"
    "1. Open your order in [your account](https://example.com/account)\n"
    "2. Choose *Return item*\n"
    "3. Drop the parcel at any post office\n\n"
    "Refunds reach your card within **5–7 business days**. "
    "Full policy: [Returns policy](https://example.com/returns)."
)
FAQ_SHIPPING = (
    "**Shipping options:**\n\n"
    "- Standard: 3–5 business days, free over $50\n"
    "- Express: 1–2 business days, $9.99\n\n"
    "Track your parcel at [example.com/track](https://example.com/track)."
)
FAQ_GREETING = (
    "Hello! I'm the **Acme** support assistant. I can help with:\n\n"
    "- opening hours\n"
    "- returns and refunds\n"
    "- shipping\n\n"
    "What would you like to know?"
)
_FAQ: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(hours?|open(ing)?|close[sd]?)\b", re.I), FAQ_HOURS),
    (re.compile(r"\b(returns?|refunds?|money back)\b", re.I), FAQ_RETURNS),
    (re.compile(r"\b(ship(ping)?|deliver(y|ed)?|track(ing)?|parcel)\b", re.I), FAQ_SHIPPING),
    (re.compile(r"^\W*(hi|hello|hey|good (morning|afternoon|evening))\b", re.I), FAQ_GREETING),
]


def long_answer(min_chars: int = 5000) -> str:
    """At least ``min_chars`` of numbered sentences, in paragraphs of six."""
    paragraphs: list[str] = []
    sentences: list[str] = []
    total = 0
    number = 0
    while total < min_chars:
        number += 1
        sentence = (
            f"This is sentence number {number} of a deliberately long answer, "
            "written so that it has to be split into several chat messages."
        )
        sentences.append(sentence)
        total += len(sentence) + 1
        if len(sentences) == 6:
            paragraphs.append(" ".join(sentences))
            sentences = []
    if sentences:
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def echo_answer(text: str) -> str:
    return (
        f'You asked: "{text}". I am a simulated agent: I can tell you about our opening '
        "hours, returns and refunds, and shipping."
    )


def default_brain(session: SimSession, text: str) -> list[JsonDict]:
    """The sim's deterministic agent. Triggers may appear anywhere in the text:

    ``[empty]`` no messages; ``[end]`` goodbye Inform + SessionEnded (the session ends);
    ``[escalate]`` Inform + Escalate; ``[fail]`` Failure; ``[error]`` Error; ``[long]`` one
    Inform of ~5000 chars; ``[multi]`` two Informs; ``[context]`` quotes the previous user
    message of this session. Otherwise an FAQ answer in Markdown, or ``echo_answer(text)``.
    ``[retract]`` answers as usual but, on the stream, first sends chunks that a
    ValidationFailureChunk withdraws (§4.1).
    """
    if "[empty]" in text:
        return []
    if "[end]" in text:
        return [inform("Thanks for contacting us. Goodbye!"), session_ended("Action")]
    if "[escalate]" in text:
        return [inform("Let me connect you with a member of our team."), escalate()]
    if "[fail]" in text:
        return [
            failure(
                "Sorry, I couldn't complete that action.",
                ["Action 'LookupOrder' failed: upstream system unavailable"],
            )
        ]
    if "[error]" in text:
        return [error_message("The agent hit an unexpected error.")]
    if "[long]" in text:
        return [inform(long_answer())]
    if "[multi]" in text:
        return [inform("Here is the first part of my answer."), inform("And here is the second.")]
    if "[context]" in text:
        if session.history:
            return [inform(f'Your previous message was: "{session.history[-1]}".')]
        return [inform("This is the first message of our conversation.")]
    for pattern, answer in _FAQ:
        if pattern.search(text):
            return [inform(answer)]
    return [inform(echo_answer(text))]


# A card number as users type one: 13 to 16 digits, maybe grouped by spaces or dashes.
_CARD_NUMBER = re.compile(r"(?<!\d)(?:\d[ -]?){12,15}(\d{4})(?!\d)")


def remembering_brain(session: SimSession, text: str) -> list[JsonDict]:
    """``default_brain``, but context-aware like a real agent: once the user gave a card
    number earlier in the session, every answer names it ("... the card ending 1111").

    A real Agentforce agent keeps the conversation in its session and may weave what the
    user said before into any answer, even to a general question; this brain makes that
    visible, so a test can tell one user's personal answer from a shared one.
    """
    messages = default_brain(session, text)
    found = (_CARD_NUMBER.search(earlier) for earlier in reversed(session.history))
    card = next((m.group(1) for m in found if m), None)
    if card is None or not messages or messages[0].get("type") != "Inform":
        return messages
    first = dict(messages[0])
    first["message"] = f"{first['message']}\n\nI still have the card ending {card} on file."
    return [first, *messages[1:]]


# --- pure wire helpers ----------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: JsonDict, key: bytes) -> str:
    """A compact JWT (header.payload.signature, base64url); HS256 stands in for Salesforce's
    RS256 signature since nobody but the sim verifies it."""
    header = {"alg": "HS256", "typ": "JWT", "kid": "sim"}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def event_name(message_type: str) -> str:
    """``TextChunk`` -> ``TEXT_CHUNK``: SSE event names are UPPER_SNAKE (§4.2)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", message_type).upper()


def sse(event: str, data: JsonDict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def text_chunks(text: str, words: int = 5) -> list[str]:
    """Split ``text`` into pieces of a few words; joined they give ``text`` back exactly."""
    tokens = re.findall(r"\s*\S+\s*", text) or [text]
    return ["".join(tokens[i : i + words]) for i in range(0, len(tokens), words)]


def _media_allows(header: str | None, wanted: str) -> bool:
    """True when an Accept header allows ``wanted`` (no header allows anything)."""
    if not header:
        return True
    major = wanted.split("/")[0]
    for part in header.split(","):
        media = part.split(";")[0].strip().lower()
        if media in (wanted, "*/*", f"{major}/*"):
            return True
    return False


def _check_variables(value: Any) -> str | None:
    if not isinstance(value, list):
        return "variables must be an array"
    for item in value:
        if not isinstance(item, dict):
            return "each variable must be an object"
        if not isinstance(item.get("name"), str) or not item["name"]:
            return "variable name is required"
        if item.get("type") not in VARIABLE_TYPES:
            return f"variable type must be one of {sorted(VARIABLE_TYPES)}"
        if "value" not in item:
            return "variable value is required"
    return None


def check_start_body(body: Any) -> str | None:
    """Why a start-session body is malformed (§2.1), or None."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    key = body.get("externalSessionKey")
    if not isinstance(key, str) or not key:
        return "externalSessionKey is required and must be a string"
    config = body.get("instanceConfig")
    if not isinstance(config, dict) or not isinstance(config.get("endpoint"), str):
        return "instanceConfig.endpoint is required"
    if not isinstance(body.get("bypassUser"), bool):
        return "bypassUser is required and must be a boolean"
    if "streamingCapabilities" in body:
        caps = body["streamingCapabilities"]
        chunk_types = caps.get("chunkTypes") if isinstance(caps, dict) else None
        if not isinstance(chunk_types, list) or not all(c in CHUNK_TYPES for c in chunk_types):
            return "streamingCapabilities.chunkTypes must be a list of: Text"
    if "variables" in body and (problem := _check_variables(body["variables"])):
        return problem
    for name in ("tz", "featureSupport"):
        if name in body and not isinstance(body[name], str):
            return f"{name} must be a string"
    return None


def check_message_body(body: Any) -> str | None:
    """Why a send-message body is malformed (§3.1), or None. Only ``Text`` messages are
    accepted: the other request types exist in the reference but nobody exercises them."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    message = body.get("message")
    if not isinstance(message, dict):
        return "message is required"
    sequence = message.get("sequenceId")
    if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence <= 0:
        return "message.sequenceId must be a positive integer"
    if sequence > MAX_SEQUENCE_ID:
        return "message.sequenceId is out of range"
    if message.get("type") != "Text":
        return "message.type must be Text"
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        return "message.text is required and must be a non-empty string"
    if "inReplyToMessageId" in message and not isinstance(message["inReplyToMessageId"], str):
        return "message.inReplyToMessageId must be a string"
    if "variables" in body and (problem := _check_variables(body["variables"])):
        return problem
    return None


def _endpoint(url: str) -> str:
    return url.strip().rstrip("/").lower()


# --- the sim --------------------------------------------------------------------------------


class AgentforceSim:
    """Serve with ``await sim.start(nursery)``; point token_url and api_url at ``base_url``."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        agent_id: str,
        instance_endpoint: str,
        token_lifetime: float = 1800.0,
        faults: Faults | None = None,
        clock: Callable[[], float] = trio.current_time,
        responder: Responder | None = None,
        idle_timeout: float | None = None,
        strict_sequence: bool = False,
        employee_agent: bool = False,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.agent_id = agent_id
        self.instance_endpoint = instance_endpoint
        self.token_lifetime = token_lifetime
        self.faults = faults or Faults()
        self.clock = clock
        self.responder = responder
        self.idle_timeout = idle_timeout
        self.strict_sequence = strict_sequence
        # An Agentforce Employee Agent runs as the token's user: a session start with
        # bypassUser true is refused "400 Invalid user ID" (what @salesforce/agents' comments
        # report, and why it sends false for AgentforceEmployeeAgent).
        self.employee_agent = employee_agent
        # Close every stream after this many events, without END_OF_TURN (§11.8 "dropped
        # stream mid-turn"). None: streams complete.
        self.stream_drop_after: int | None = None
        self.base_url = ""

        self.sessions: dict[str, SimSession] = {}
        self.received: list[ReceivedMessage] = []
        self.started: list[StartedSession] = []
        self.ended: list[tuple[str, str]] = []  # (session id, x-session-end-reason) of DELETEs
        self.requests: list[LoggedRequest] = []
        self.token_requests = 0
        self.tokens_issued = 0

        self._tokens: dict[str, float] = {}  # access token -> expiry on self.clock
        self._jwt_key = secrets.token_bytes(32)
        self._changes = Changes()
        self._nursery: trio.Nursery | None = None
        self.app = self._build_app()

    # -- lifecycle and knobs ------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> str:
        self._nursery = nursery
        self.base_url = await start_app(nursery, self.app)
        return self.base_url

    def expire_tokens(self) -> None:
        """Every token issued so far answers 401 from now on."""
        self._tokens.clear()

    def expire_session(self, session_id: str) -> None:
        if session := self.sessions.get(session_id):
            session.ended = True

    def expire_all_sessions(self) -> None:
        for session in self.sessions.values():
            session.ended = True

    def live_sessions(self) -> list[SimSession]:
        return [s for s in self.sessions.values() if not self._gone(s)]

    # -- waiting ------------------------------------------------------------------------

    async def wait_received(self, count: int) -> list[ReceivedMessage]:
        """Until at least ``count`` user messages were accepted."""
        await self._changes.until(lambda: len(self.received) >= count)
        return self.received

    async def wait_started(self, count: int) -> list[StartedSession]:
        await self._changes.until(lambda: len(self.started) >= count)
        return self.started

    async def wait_ended(self, count: int) -> list[tuple[str, str]]:
        await self._changes.until(lambda: len(self.ended) >= count)
        return self.ended

    async def wait_requests(self, count: int) -> list[LoggedRequest]:
        await self._changes.until(lambda: len(self.requests) >= count)
        return self.requests

    async def wait_idle(self) -> None:
        """Until no turn is running (a client that gave up may leave one behind)."""
        await self._changes.until(lambda: not any(s.busy for s in self.sessions.values()))

    # -- responses ----------------------------------------------------------------------

    @staticmethod
    def _json(body: Any, status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, content_type="application/json")

    def _error(self, status: int, error: str, message: str, *, expected: bool = True) -> Response:
        """The Agent API error envelope (§7.2), used for every 4xx/5xx."""
        path = request.path.removeprefix(API).lstrip("/")
        body = {
            "status": status,
            "path": f"v6.0.0/{path}",
            "mode": "unknown",
            "requestId": _uuid(),
            "error": error,
            "message": message,
            "timestamp": _now_ms(),
            "expected": expected,
        }
        return self._json(body, status)

    def _fault_error(self) -> Response:
        status = self.faults.error_status
        error = {
            429: "TooManyRequestsException",
            503: "ServiceUnavailableException",
            500: "HttpServerErrorException",
        }.get(status, "HttpServerErrorException")
        return self._error(status, error, "Injected fault", expected=False)

    def _timeout_error(
        self, message: str = f"Request did not complete within {MAX_TURN_SECONDS:g} seconds"
    ) -> Response:
        return self._error(500, "HttpServerErrorException", message, expected=False)

    def _links(self, session_id: str) -> JsonDict:
        base = self.base_url + API
        return {
            "self": None,
            "messages": {"href": f"{base}/sessions/{session_id}/messages"},
            "messagesStream": {"href": f"{base}/sessions/{session_id}/messages/stream"},
            "session": {"href": f"{base}/agents/{self.agent_id}/sessions"},
            "end": {"href": f"{base}/sessions/{session_id}"},
        }

    # -- checks shared by the routes ----------------------------------------------------

    def _auth_error(self) -> Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        expiry = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expiry is None or self.clock() >= expiry:
            # §1.4: the exact 401 body is unverified; the §7.2 envelope stands in.
            return self._error(401, "UnauthorizedException", "Invalid or expired access token")
        return None

    def _media_type_error(self) -> Response | None:
        if request.mimetype != "application/json":
            return self._error(500, "HttpMediaTypeNotSupportedException", "Unsupported Media Type")
        return None

    async def _json_body(self) -> tuple[Any, Response | None]:
        raw = await request.get_data()
        try:
            return json.loads(raw), None
        except ValueError:
            return None, self._error(400, "BadRequestException", "Malformed JSON request body")

    def _gone(self, session: SimSession) -> bool:
        if session.ended:
            return True
        if self.idle_timeout is None or session.busy:
            return False
        return self.clock() - session.last_used >= self.idle_timeout

    def _live_session(self, session_id: str) -> tuple[SimSession | None, Response | None]:
        session = self.sessions.get(session_id)
        if session is None or self._gone(session):
            if session is not None:
                session.ended = True
            return None, self._error(
                404, "NotFoundException", f"V6Session not found for sessionId: {session_id}"
            )
        return session, None

    def _locked_error(self) -> Response:
        # §10: the 423 body is unverified; the exception name follows the troubleshooting
        # page's "Session Already Locked Exception".
        return self._error(
            423,
            "SessionAlreadyLockedException",
            "Session is already locked: the API only supports one request at a time",
        )

    # -- turns --------------------------------------------------------------------------

    def _begin_turn(
        self, session: SimSession, sequence_id: int, body: JsonDict, stream: bool
    ) -> _Turn:
        assert self._nursery is not None, "call start() first"
        text: str = body["message"]["text"]
        session.busy = True
        session.last_sequence_id = max(session.last_sequence_id, sequence_id)
        self.received.append(
            ReceivedMessage(session.session_id, sequence_id, text, self.clock(), stream, body)
        )
        self._changes.bump()
        turn = _Turn(text)
        self._nursery.start_soon(self._run_turn, session, text, turn)
        return turn

    async def _run_turn(self, session: SimSession, text: str, turn: _Turn) -> None:
        try:
            with trio.move_on_after(MAX_TURN_SECONDS):
                await self.faults.delay()
                turn.messages = await self._reply(session, text)
        except Exception:
            log.exception("sim responder failed")
            turn.failure = "An unexpected error occurred in the agent"
        finally:
            session.busy = False
            session.history.append(text)
            session.last_used = self.clock()
            if turn.messages and any(m.get("type") == "SessionEnded" for m in turn.messages):
                session.ended = True
            turn.done.set()
            self._changes.bump()

    async def _reply(self, session: SimSession, text: str) -> list[JsonDict]:
        if self.responder is None:
            return default_brain(session, text)
        result = self.responder(session, text)
        if inspect.isawaitable(result):
            return await result
        return result

    # -- routes -------------------------------------------------------------------------

    def _build_app(self) -> Any:
        app = QuartTrio("agentforce-sim")
        app.add_url_rule(TOKEN_PATH, view_func=self._token, methods=["POST"])
        app.add_url_rule(
            f"{API}/agents/<agent_id>/sessions", view_func=self._start_session, methods=["POST"]
        )
        app.add_url_rule(
            f"{API}/sessions/<session_id>/messages", view_func=self._send, methods=["POST"]
        )
        app.add_url_rule(
            f"{API}/sessions/<session_id>/messages/stream",
            view_func=self._send_stream,
            methods=["POST"],
        )
        app.add_url_rule(
            f"{API}/sessions/<session_id>", view_func=self._end_session, methods=["DELETE"]
        )
        app.after_request(self._log_request)
        return app

    async def _log_request(self, response: Response) -> Response:
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.requests.append(
            LoggedRequest(request.method, request.path, response.status_code, self.clock(), headers)
        )
        self._changes.bump()
        return response

    async def _token(self) -> Response:
        self.token_requests += 1
        await self.faults.delay()
        if self.faults.should_fail():
            return self._json(
                {"error": "temporarily_unavailable", "error_description": "injected fault"},
                self.faults.error_status,
            )
        # §1.2: form-encoded only. Salesforce reads nothing from other bodies, so the grant
        # type is missing and that is what it complains about.
        if request.mimetype != "application/x-www-form-urlencoded":
            return self._json(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant type not supported",
                },
                400,
            )
        form = await request.form
        if form.get("grant_type") != "client_credentials":
            return self._json(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant type not supported",
                },
                400,
            )
        if not form.get("client_id") or not form.get("client_secret"):
            return self._json(
                {
                    "error": "invalid_request",
                    "error_description": "client_id and client_secret required",
                },
                400,
            )
        if not (
            hmac.compare_digest(form["client_id"].encode(), self.client_id.encode())
            and hmac.compare_digest(form["client_secret"].encode(), self.client_secret.encode())
        ):
            return self._json(
                {"error": "invalid_client", "error_description": "invalid client credentials"}, 400
            )
        issued = time.time()
        token = make_jwt(
            {
                "iss": self.instance_endpoint,
                "sub": "005SIM0000000000AAA",
                "aud": "api.salesforce.com",
                "scp": SCOPE.split(),
                "iat": int(issued),
                "exp": int(issued + self.token_lifetime),  # wall time: what a JWT reader sees
                "jti": _uuid(),
            },
            self._jwt_key,
        )
        self._tokens[token] = self.clock() + self.token_lifetime  # validity: on self.clock
        self.tokens_issued += 1
        # §1.3: no expires_in, no refresh_token.
        return self._json(
            {
                "access_token": token,
                "signature": _b64url(secrets.token_bytes(32)),
                "token_format": "jwt",
                "scope": SCOPE,
                "instance_url": self.instance_endpoint,
                "id": "https://login.salesforce.com/id/00DSIM0000000000AAA/005SIM0000000000AAA",
                "token_type": "Bearer",
                "issued_at": str(int(issued * 1000)),
                "api_instance_url": self.base_url,
            }
        )

    async def _short_call_faults(self) -> Response | None:
        """Latency (capped at the 120 s server timeout) and errors for non-turn calls."""
        with trio.move_on_after(MAX_TURN_SECONDS) as scope:
            await self.faults.delay()
        if scope.cancelled_caught:
            return self._timeout_error()
        if self.faults.should_fail():
            return self._fault_error()
        return None

    async def _start_session(self, agent_id: str) -> Response:
        if problem := await self._short_call_faults():
            return problem
        if problem := self._auth_error():
            return problem
        if problem := self._media_type_error():
            return problem
        if agent_id != self.agent_id:
            return self._error(400, "BadRequestException", f"{agent_id} is not a valid agent ID")
        body, problem = await self._json_body()
        if problem:
            return problem
        if reason := check_start_body(body):
            return self._error(400, "BadRequestException", reason)
        if self.employee_agent and body["bypassUser"]:
            return self._error(400, "BadRequestException", "Invalid user ID")
        endpoint = body["instanceConfig"]["endpoint"]
        if _endpoint(endpoint) != _endpoint(self.instance_endpoint):
            return self._error(
                500,
                "EngineConfigLookupException",
                f"Unable to find engine configuration for endpoint: {endpoint}",
                expected=False,
            )
        now = self.clock()
        session = SimSession(_uuid(), body["externalSessionKey"], now, now)
        self.sessions[session.session_id] = session
        self.started.append(
            StartedSession(session.session_id, session.external_session_key, body, now)
        )
        self._changes.bump()
        log.debug("sim session %s for %s", session.session_id, hashed(session.external_session_key))
        return self._json(
            {
                "sessionId": session.session_id,
                "_links": self._links(session.session_id),
                "messages": [
                    {
                        "type": "Inform",
                        "id": _uuid(),
                        "feedbackId": "",
                        "planId": "",
                        "isContentSafe": True,
                        "message": GREETING,
                        "result": [],
                        "citedReferences": [],
                    }
                ],
            }
        )

    async def _accept_turn(
        self, session_id: str, accept: str, stream: bool
    ) -> tuple[_Turn | None, Response | None]:
        """Every check of §3/§4 in order; on success the turn has started."""
        if self.faults.should_fail():
            return None, self._fault_error()
        if problem := self._auth_error():
            return None, problem
        if problem := self._media_type_error():
            return None, problem
        session, problem = self._live_session(session_id)
        if problem:
            return None, problem
        assert session is not None
        if not _media_allows(request.headers.get("Accept"), accept):
            return None, self._error(406, "HttpMediaTypeNotAcceptableException", "Not Acceptable")
        body, problem = await self._json_body()
        if problem:
            return None, problem
        if reason := check_message_body(body):
            return None, self._error(400, "BadRequestException", reason)
        if session.busy:
            return None, self._locked_error()
        sequence_id = body["message"]["sequenceId"]
        if self.strict_sequence and sequence_id <= session.last_sequence_id:
            # §9: opt-in; real enforcement is unverified.
            return None, self._error(
                400,
                "BadRequestException",
                f"Invalid sequenceId {sequence_id}: must be greater than "
                f"{session.last_sequence_id}",
            )
        return self._begin_turn(session, sequence_id, body, stream), None

    async def _send(self, session_id: str) -> Response:
        turn, problem = await self._accept_turn(session_id, "application/json", stream=False)
        if problem:
            return problem
        assert turn is not None
        await turn.done.wait()
        if turn.messages is None:
            return self._timeout_error(turn.failure)
        return self._json({"messages": turn.messages, "_links": self._links(session_id)})

    async def _send_stream(self, session_id: str) -> Response:
        turn, problem = await self._accept_turn(session_id, "text/event-stream", stream=True)
        if problem:
            return problem
        assert turn is not None
        response = Response(
            self._events(turn, "[retract]" in turn.text),
            content_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
        response.timeout = None  # Quart's RESPONSE_TIMEOUT (60 s) would cut long turns
        return response

    async def _events(self, turn: _Turn, retract: bool) -> AsyncIterator[bytes]:
        """PROGRESS_INDICATOR at once; after the turn, TEXT_CHUNKs + INFORM per Inform
        (other types as their own event), END_OF_TURN, then the server closes (§4.3)."""
        origin = f"{_now_ms()}-REQ"
        trace = secrets.token_hex(16)
        sent = 0

        def event(message: JsonDict, offset: int = 0) -> bytes:
            envelope = {
                "timestamp": _now_ms(),
                "originEventId": origin,
                "traceId": trace,
                "offset": offset,
                "message": message,
            }
            return sse(event_name(message["type"]), envelope)

        def dropped() -> bool:
            return self.stream_drop_after is not None and sent >= self.stream_drop_after

        progress = {
            "type": "ProgressIndicator",
            "id": _uuid(),
            "indicatorType": "ACTION",
            "message": "Working on it",
        }
        yield event(progress)
        sent += 1
        await turn.done.wait()
        if turn.messages is None:
            # Headers are gone already, so the 120 s timeout arrives as an Error event.
            yield event(error_message(turn.failure))
            return
        outgoing: list[bytes] = []
        offset = 0
        if retract:
            offset += 1
            withdrawn = {"type": "TextChunk", "id": _uuid(), "offset": offset}
            outgoing.append(event({**withdrawn, "message": "Draft ", "formatType": "Text"}, offset))
            failure_chunk = {
                "type": "ValidationFailureChunk",
                "id": _uuid(),
                "offset": offset,
                "reason": "Response failed validation",
            }
            outgoing.append(event(failure_chunk, offset))
        for message in turn.messages:
            if message.get("type") == "Inform":
                for piece in text_chunks(str(message.get("message", ""))):
                    offset += 1
                    chunk = {
                        "type": "TextChunk",
                        "id": _uuid(),
                        "offset": offset,
                        "message": piece,
                        "formatType": "Text",
                    }
                    outgoing.append(event(chunk, offset))
            outgoing.append(event(message))
        outgoing.append(event({"type": "EndOfTurn", "id": _uuid()}))
        for data in outgoing:
            if dropped():
                return
            yield data
            sent += 1

    async def _end_session(self, session_id: str) -> Response:
        if problem := await self._short_call_faults():
            return problem
        if problem := self._auth_error():
            return problem
        reason = request.headers.get("x-session-end-reason")
        if reason not in END_REASONS:
            return self._error(
                400,
                "BadRequestException",
                f"x-session-end-reason must be one of {', '.join(sorted(END_REASONS))}",
            )
        session, problem = self._live_session(session_id)
        if problem:
            return problem
        assert session is not None
        if session.busy:
            return self._locked_error()
        session.ended = True
        self.ended.append((session_id, reason))
        self._changes.bump()
        links = self._links(session_id)
        del links["messagesStream"]  # §5 sample has no messagesStream link
        return self._json(
            {
                "messages": [session_ended("ClientRequest")],
                "_links": links,
            }
        )
