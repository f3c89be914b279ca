"""The routes besides the webhook: /healthz and /readyz, and the admin ones (/metrics,
/admin/cache/flush, /admin/status) behind the bearer token ``WA_AGENTD_ADMIN_TOKEN``.

On the admin listener ([admin] bind, loopback) with /readyz's reasons; on the public one only
/healthz and a /readyz that says "ready" or "not ready", unless [admin] bind = "" puts
everything on one listener.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
from collections.abc import Awaitable, Callable

from quart import Response, request
from quart_trio import QuartTrio

from daemon.web_context import WebContext

log = logging.getLogger("daemon.web")

Route = Callable[[], Awaitable[Response]]


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
    @_admin_only(ctx)
    async def flush_caches() -> Response:
        if ctx.flush_caches is None:
            return Response("no caches\n", status=404, content_type="text/plain")
        flushed = await ctx.flush_caches()
        log.warning("caches flushed by an admin request: %s", flushed)
        return Response(json.dumps({"flushed": flushed}), content_type="application/json")

    @app.get("/admin/status")
    @_admin_only(ctx)  # like every /admin/* route: it carries upstream error texts
    async def status() -> Response:
        if ctx.status is None:
            return Response("no status\n", status=404, content_type="text/plain")
        return Response(json.dumps(await ctx.status()), content_type="application/json")


def _admin_only(ctx: WebContext) -> Callable[[Route], Route]:
    """A route answered only for a request with the admin bearer token."""

    def guard(route: Route) -> Route:
        @functools.wraps(route)
        async def guarded() -> Response:
            refused = _check_admin(ctx)
            return refused if refused is not None else await route()

        return guarded

    return guard


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
