"""HTTP routes, kept thin: verify -> parse -> inbox -> lanes -> 200.

The webhook answers within milliseconds and before any upstream call; the work happens in
the lanes, in a nursery the daemon owns. Bad input gets a clear status and never a 500:

    401  no well-formed signature header (refused before the body is read), or a forged one
    413  body over the limit ([server] max_body_bytes; Twilio: [twilio] max_body_bytes)
    408  body not in within BODY_TIMEOUT
    400  not JSON / not a webhook shape
    503  the lanes' global bounds full, too many bodies being read (daemon/web_body.py), or
         draining (Meta retries for up to 7 days, Twilio once); never for one user's full
         lane: that user's messages wait in the inbox (daemon/intake.py)

Two apps: ``create_app`` for the public listener (the webhook, the provider's own routes such
as Twilio's media, /healthz and a /readyz that says only "ready" or "not ready") and
``create_admin_app`` for the loopback one ([admin] bind: /readyz with its reasons, /metrics,
/admin/*).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, RequestTimeout

from daemon import intake
from daemon.channels.base import BadWebhook, Channel, WebhookRequest
from daemon.channels.provider import Routes
from daemon.config import ServerConfig
from daemon.intake import Inbox, Taken
from daemon.lanes import Lanes
from daemon.limits import UserLimits
from daemon.model import Inbound
from daemon.observe.logs import RateLimitedLog
from daemon.observe.metrics import Metrics
from daemon.web_body import BodiesFull, BodyBudget, reservation

log = logging.getLogger(__name__)


@dataclass
class WebStats:
    """Counters the web layer keeps; metrics read them."""

    webhooks: dict[str, int] = field(default_factory=dict)  # outcome -> count
    messages: dict[str, int] = field(default_factory=dict)  # accepted / duplicate / ...
    statuses: dict[str, int] = field(default_factory=dict)  # delivered -> count

    def count(self, table: dict[str, int], key: str, n: int = 1) -> None:
        table[key] = table.get(key, 0) + n


@dataclass
class WebContext:
    channel: Channel
    inbox: Inbox
    lanes: Lanes
    webhook_path: str
    max_body_bytes: int
    ready: Callable[[], tuple[bool, str]]  # (ready?, reason) for /readyz
    metrics: Metrics | None = None
    # Routes the provider adds to the public listener (Twilio: the voice notes it fetches
    # from us, daemon/channels/twilio/routes.py).
    routes: Sequence[Routes] = ()
    # POST /admin/* needs "Authorization: Bearer <admin_token>"; "" turns them off.
    admin_token: str = ""
    flush_caches: Callable[[], Awaitable[dict[str, int]]] | None = None
    # GET /admin/status: the JSON document of daemon/observe/snapshot.py.
    status: Callable[[], Awaitable[dict[str, Any]]] | None = None
    stats: WebStats = field(default_factory=WebStats)
    draining: bool = False
    # Per-user limits decided as messages come in (None: none); messages of one user that may
    # wait in the inbox while their lane is full ([lanes] max_waiting).
    limits: UserLimits | None = None
    max_waiting: int = 100
    bodies: BodyBudget = field(
        default_factory=lambda: BodyBudget(
            max_bytes=ServerConfig().body_memory_bytes, max_reads=ServerConfig().max_body_reads
        )
    )


# Refusals before the body is read come in floods when they come: one line per few seconds.
_refusals = RateLimitedLog(log)


def create_app(ctx: WebContext, *, admin_routes: bool = True) -> QuartTrio:
    """The public listener's app; ``admin_routes`` adds /metrics and /admin/* ([admin] bind
    = "": one listener for everything)."""
    app = QuartTrio("wa-agentd")
    app.config["MAX_CONTENT_LENGTH"] = ctx.max_body_bytes  # a backstop; _read_body decides

    def answer(
        outcome: str, status: int, body: str = "", content_type: str = "text/plain"
    ) -> Response:
        ctx.stats.count(ctx.stats.webhooks, outcome)
        return Response(body, status=status, content_type=content_type)

    @app.get(ctx.webhook_path)
    async def handshake() -> Response:
        challenge = ctx.channel.handshake(dict(request.args))
        if challenge is None:  # anyone can ask, as often as they like: rate-limited
            _refusals.warning("webhook handshake refused (wrong verify token or mode)")
            return answer("handshake_refused", 403, "Forbidden")
        log.info("webhook handshake accepted")
        return answer("handshake", 200, challenge)

    @app.post(ctx.webhook_path)
    async def webhook() -> Response:
        if ctx.draining:
            return answer("draining", 503, "draining, retry later")
        headers = {k.lower(): v for k, v in request.headers.items()}
        if not ctx.channel.has_signature(headers):
            _refusals.warning("webhook refused before its body: no well-formed signature header")
            return answer("unsigned", 401, "signature required")
        declared = request.content_length
        if declared is not None and declared > ctx.max_body_bytes:
            return answer("too_large", 413, "body too large")
        try:
            with ctx.bodies.reserve(reservation(declared, ctx.max_body_bytes)):
                return await receive(headers)
        except BodiesFull:
            _refusals.warning(
                "webhook refused before its body: %d bodies (%d bytes) being read already",
                ctx.bodies.held_reads,
                ctx.bodies.held_bytes,
            )
            return answer("bodies_full", 503, "busy, retry later")

    async def receive(headers: dict[str, str]) -> Response:
        """The signed-looking webhook with its reservation: read, verify, parse, accept."""
        try:
            body = await _read_body(ctx.max_body_bytes)
        except RequestEntityTooLarge:
            return answer("too_large", 413, "body too large")
        except RequestTimeout:
            return answer("body_timeout", 408, "body too slow")
        hook = WebhookRequest(
            origin=f"{request.scheme}://{request.host}",
            target=_raw_target(),
            headers=headers,
            query=dict(request.args),
            body=body,
        )
        if not ctx.channel.verify(hook):  # a forger can repeat it: rate-limited
            _refusals.warning("webhook refused: missing or bad signature")
            return answer("bad_signature", 401, "bad signature")
        try:
            batch = ctx.channel.parse(hook)
        except BadWebhook as exc:
            log.warning("webhook refused: %s", exc)
            return answer("bad_request", 400, f"bad webhook: {exc}")
        for status, n in batch.statuses.items():
            ctx.stats.count(ctx.stats.statuses, status_label(status), n)
        for reason, n in batch.ignored.items():
            ctx.stats.count(ctx.stats.messages, f"ignored_{reason}", n)
        for error in batch.errors:
            log.warning("provider reported: %s", error)
        taken = await _take(ctx, batch.messages)
        if taken is Taken.DRAINING:
            return answer("draining", 503, "draining, retry later")
        if taken is Taken.OVERLOADED:
            return answer("overloaded", 503, "busy, retry later")
        body_out, content_type = ctx.channel.accepted()
        return answer("accepted", 200, body_out.decode(), content_type)

    for add_routes in ctx.routes:
        add_routes(app)
    add_health_routes(app, ctx, reasons=False)
    if admin_routes:
        add_admin_routes(app, ctx)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 400
        return Response(exc.name, status=status, content_type="text/plain")

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        # Never a 500 to Meta: a 503 makes it retry, and the log says what broke.
        log.exception("unexpected error in a request", exc_info=exc)
        return Response("temporarily unavailable", status=503, content_type="text/plain")

    return app


# A body that trickles in slower than this is cut off (408), so it can't hold a slot.
BODY_TIMEOUT = 15.0

# Outbound message statuses as the providers document them. The status string comes from the
# (signed) payload and becomes a metric label, so anything else is counted as "other": label
# cardinality stays bounded whatever a provider starts sending.
# Meta (whatsapp.md §2.6): sent, delivered, read, played (voice notes), failed; plus deleted
# and warning, which WhatsApp's older status webhooks also carried.
# Twilio (its MessageStatus values; channels/twilio/wire.py keeps only these): accepted,
# scheduled, queued, sending, sent, delivered, undelivered, failed, read, canceled,
# partially_delivered.
KNOWN_STATUSES = frozenset(
    {"sent", "delivered", "read", "played", "failed", "deleted", "warning"}
    | {"accepted", "scheduled", "queued", "sending", "undelivered", "canceled"}
    | {"partially_delivered"}
)


async def _take(ctx: WebContext, messages: Sequence[Inbound]) -> Taken:
    """The parsed messages into the inbox and the lanes (daemon/intake.py)."""
    return await intake.take(
        messages,
        inbox=ctx.inbox,
        lanes=ctx.lanes,
        limits=ctx.limits,
        max_waiting=ctx.max_waiting,
        count=lambda outcome, n: ctx.stats.count(ctx.stats.messages, outcome, n),
    )


def status_label(status: str) -> str:
    """``status`` when documented (KNOWN_STATUSES), else "other"."""
    return status if status in KNOWN_STATUSES else "other"


def _raw_target() -> str:
    """The request target as the client sent it: the path and the query exactly as they came
    on the request line, never rebuilt from a string that includes the Host header.

    Werkzeug's ``request.url`` is rebuilt from the percent-decoded path and query, so
    ``?k=a%2Fb`` comes back as ``?k=a/b``; a signature over the URL the sender really called
    (Twilio signs it byte for byte, whatsapp.md §6) would then never match. The ASGI scope
    keeps the raw bytes: ``raw_path`` (hypercorn: the path alone; split at "?" all the same)
    and ``query_string``. The origin (scheme and Host) is kept apart in WebhookRequest; the
    Host value is Werkzeug's ``request.host``, which from 3.1.8 is "" when the header has
    characters no host can have (the floor pinned in pyproject.toml).
    """
    raw_path = request.scope.get("raw_path")
    if isinstance(raw_path, bytes) and raw_path:
        path = raw_path.partition(b"?")[0].decode("ascii", "replace")
    else:  # a server without raw_path: the decoded path, quoted back as best we can
        path = quote(request.path, safe="/:@!$&'()*+,;=-._~%")
    query = request.query_string.decode("ascii", "replace")
    return path + (f"?{query}" if query else "")


async def _read_body(limit: int) -> bytes:
    """The raw request body, at most ``limit`` bytes, read as it streams in.

    Quart's own MAX_CONTENT_LENGTH check is not enough: on Quart 0.23 (quart-trio 0.13, the
    versions Python 3.13 gets) a chunked body is queued whole before its size is checked, so
    a client could make the daemon buffer any amount. Counting while reading bounds memory
    on every version.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise RequestEntityTooLarge()
    # Chunks kept as they came and joined once: a growing bytearray reallocates as it goes
    # and leaves the allocator holding about twice the body (bench/attack.py).
    chunks: list[bytes] = []
    size = 0
    with trio.move_on_after(BODY_TIMEOUT) as scope:
        async for chunk in request.body:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise RequestEntityTooLarge()
    if scope.cancelled_caught:
        raise RequestTimeout()
    return b"".join(chunks)


def add_health_routes(app: QuartTrio, ctx: WebContext, *, reasons: bool) -> None:
    """/healthz and /readyz. ``reasons``: /readyz says why it is not ready (the admin
    listener); else only "ready" or "not ready", because a reason names internals (a store
    error, an upstream) that a public listener must not show."""

    @app.get("/healthz")
    async def healthz() -> Response:
        # Answering at all proves the event loop runs.
        return Response("ok\n", status=200, content_type="text/plain")

    @app.get("/readyz")
    async def readyz() -> Response:
        if ctx.draining:
            ok, reason = False, "draining"
        else:
            ok, reason = ctx.ready()
        if not reasons:
            reason = "ready" if ok else "not ready"
        return Response(f"{reason}\n", status=200 if ok else 503, content_type="text/plain")


def add_admin_routes(app: QuartTrio, ctx: WebContext) -> None:
    """/metrics and /admin/*: for the admin listener, or the only one when [admin] bind = ""."""

    @app.get("/metrics")
    async def metrics() -> Response:
        if ctx.metrics is None:
            return Response("metrics off\n", status=404, content_type="text/plain")
        body, content_type = ctx.metrics.render()
        return Response(body, status=200, content_type=content_type)

    @app.post("/admin/cache/flush")
    async def flush_caches() -> Response:
        refused = _check_admin(ctx)
        if refused is not None:
            return refused
        if ctx.flush_caches is None:
            return Response("no caches\n", status=404, content_type="text/plain")
        flushed = await ctx.flush_caches()
        log.warning("caches flushed by an admin request: %s", flushed)
        return Response(json.dumps({"flushed": flushed}), content_type="application/json")

    @app.get("/admin/status")
    async def status() -> Response:
        # Behind the token like every /admin/* route: it carries upstream error texts.
        refused = _check_admin(ctx)
        if refused is not None:
            return refused
        if ctx.status is None:
            return Response("no status\n", status=404, content_type="text/plain")
        return Response(json.dumps(await ctx.status()), content_type="application/json")


def _check_admin(ctx: WebContext) -> Response | None:
    """None when the request carries the admin bearer token, else the refusal to send."""
    if not ctx.admin_token:
        return Response(
            "admin routes are off: set WA_AGENTD_ADMIN_TOKEN\n",
            status=403,
            content_type="text/plain",
        )
    header = request.headers.get("Authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    if not hmac.compare_digest(given.encode(), ctx.admin_token.encode()):
        return Response(
            "bearer token required\n",
            status=401,
            content_type="text/plain",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return None


def create_admin_app(ctx: WebContext) -> QuartTrio:
    """The admin routes alone, for [admin] bind on a separate (loopback) address."""
    app = QuartTrio("wa-agentd-admin")
    add_health_routes(app, ctx, reasons=True)
    add_admin_routes(app, ctx)
    return app
