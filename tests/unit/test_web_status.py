"""GET /admin/status: behind the admin token like every /admin/* route, JSON when let in."""

from __future__ import annotations

from typing import Any

from tests.unit.test_web import web_app

TOKEN = "admin-secret"


async def test_status_needs_the_admin_token_and_answers_json() -> None:
    async def snapshot() -> dict[str, Any]:
        return {"ready": True, "format": 1}

    async with web_app() as (client, ctx):
        off = await client.get("/admin/status")  # no admin token configured at all
        ctx.admin_token, ctx.status = TOKEN, snapshot
        anonymous = await client.get("/admin/status")
        wrong = await client.get("/admin/status", headers={"Authorization": "Bearer nope"})
        right = await client.get("/admin/status", headers={"Authorization": f"Bearer {TOKEN}"})
        ctx.status = None
        none = await client.get("/admin/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert off.status_code == 403
    assert anonymous.status_code == 401 and wrong.status_code == 401
    assert right.status_code == 200 and right.content_type == "application/json"
    assert await right.get_json() == {"ready": True, "format": 1}
    assert none.status_code == 404
