"""HTTP routes, kept thin: verify -> parse -> inbox -> lanes -> 200.

The webhook answers within milliseconds and before any upstream call; the work happens in
the lanes, in a nursery the daemon owns. Bad input gets a clear status and never a 500:

    401  no well-formed signature header (refused before the body is read), or a forged one
    413  body over the limit ([server] max_body_bytes; Twilio: [twilio] max_body_bytes)
    408  body not in within BODY_TIMEOUT (daemon/web_request.py)
    400  not JSON / not a webhook shape
    503  the lanes' global bounds full, too many bodies being read (daemon/web_body.py), or
         draining (Meta retries for up to 7 days, Twilio once); never for one user's full
         lane: that user's messages wait in the inbox (daemon/intake.py)

``create_app`` is the public listener's app: the webhook, the provider's own routes (Twilio's
media), and daemon/web_admin.py's /healthz and /readyz (with /metrics and /admin/* when
[admin] bind = "" puts everything on one listener). ``create_admin_app`` (web_admin.py) is
the loopback listener's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, RequestTimeout

from daemon import intake
from daemon.channels.base import BadWebhook, WebhookRequest
from daemon.intake import Taken
from daemon.model import Inbound
from daemon.observe.logs import RateLimitedLog
from daemon.web_admin import add_admin_routes, add_health_routes
from daemon.web_body import BodiesFull, reservation
from daemon.web_context import WebContext
from daemon.web_request import raw_target, read_body

log = logging.getLogger(__name__)


# Refusals before the body is read come in floods when they come: one line per few seconds.
_refusals = RateLimitedLog(log)


def create_app(ctx: WebContext, *, admin_routes: bool = True) -> QuartTrio:
    """The public listener's app; ``admin_routes`` adds /metrics and /admin/* ([admin] bind
    = "": one listener for everything)."""
    app = QuartTrio("wa-agentd")
    app.config["MAX_CONTENT_LENGTH"] = ctx.max_body_bytes  # a backstop; read_body decides

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
            body = await read_body(ctx.max_body_bytes)
        except RequestEntityTooLarge:
            return answer("too_large", 413, "body too large")
        except RequestTimeout:
            return answer("body_timeout", 408, "body too slow")
        hook = WebhookRequest(
            origin=f"{request.scheme}://{request.host}",
            target=raw_target(),
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
        for status, n in batch.statuses.items():  # DeliveryStatus: the provider mapped it
            ctx.stats.count(ctx.stats.statuses, status.value, n)
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
