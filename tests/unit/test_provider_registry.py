"""A third WhatsApp provider is one ``Provider`` and one line in the registry: config loads
and checks its section, serving needs its ids and secrets, the runtime builds its channel,
the web serves its routes, and nothing else needed to change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import httpx
import pytest
from quart import Response
from quart_trio import QuartTrio

from daemon import config
from daemon.cache.media_ids import MediaIds
from daemon.channels import registry
from daemon.channels.provider import Built, Provider, Wiring
from daemon.fields import HTTP_URL, Needed, Seconds
from daemon.runtime.compose import build_channel, webhook_body_limit
from tests.unit.test_config import READY_ENV, READY_IDS


@dataclass(frozen=True)
class EchoConfig:
    api_url: Annotated[str, HTTP_URL] = "https://echo.example.com"
    number: Annotated[str, Needed("the number users write to")] = ""
    timeout: Seconds = 5.0


class EchoChannel:
    name = "echo"
    text_limit = 100

    def __init__(self, settings: EchoConfig, token: str, http: httpx.AsyncClient) -> None:
        self.settings, self.token, self.http = settings, token, http

    def handshake(self, query: Mapping[str, str]) -> str | None:
        return None


def build(wiring: Wiring[EchoConfig]) -> Built:
    def routes(app: QuartTrio) -> None:
        @app.get("/echo/ping")
        async def ping() -> Response:
            return Response(wiring.settings.number, content_type="text/plain")

    channel = EchoChannel(wiring.settings, wiring.secret("ECHO_TOKEN"), wiring.http)
    return Built(channel, routes=(routes,))  # type: ignore[arg-type]


ECHO = Provider(
    name="echo",
    section="echo",
    settings=EchoConfig,
    secrets=("ECHO_TOKEN",),
    needs=("ECHO_TOKEN",),
    build=build,
    body_limit=lambda settings: 1234,
)


@pytest.fixture(autouse=True)
def third_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "PROVIDERS", (*registry.PROVIDERS, ECHO))  # the one line


def test_config_knows_its_name_and_checks_its_section() -> None:
    with pytest.raises(config.ConfigError) as err:
        config.parse({"channel": {"provider": "telegram"}}, env={})
    assert err.value.why == "must be one of meta | twilio | echo, got 'telegram'"
    with pytest.raises(config.ConfigError) as err:
        config.parse({"echo": {"api_url": "echo.example.com"}}, env={})
    assert (err.value.key, err.value.why) == (
        "[echo] api_url",
        "must be an http(s) URL, got 'echo.example.com'",
    )
    with pytest.raises(config.ConfigError) as err:
        config.parse({"echo": {"timeout": 0}}, env={})
    assert err.value.key == "[echo] timeout"
    assert config.Settings().section(EchoConfig) == EchoConfig()  # defaults, like any section


def test_serving_needs_its_ids_and_secrets_and_not_the_others() -> None:
    ids = {"channel": {"provider": "echo"}, **READY_IDS}
    core_env = {k: v for k, v in READY_ENV.items() if not k.startswith("WHATSAPP_")}
    with pytest.raises(config.ConfigError) as err:
        config.validate_ready(config.parse(ids, env=core_env))
    assert (err.value.key, err.value.why) == (
        "[echo] number",
        "required: the number users write to",
    )
    ids["echo"] = {"number": "+15550001111"}
    with pytest.raises(config.ConfigError) as err:
        config.validate_ready(config.parse(ids, env=core_env))
    assert err.value.key == "ECHO_TOKEN"
    config.validate_ready(config.parse(ids, env={**core_env, "ECHO_TOKEN": "t"}))


async def test_the_runtime_builds_it_and_the_web_serves_its_routes() -> None:
    settings = config.parse(
        {"channel": {"provider": "echo"}, "echo": {"number": "+15550001111"}},
        env={"ECHO_TOKEN": "secret"},
    )
    async with httpx.AsyncClient() as http:
        built = build_channel(settings, http, MediaIds(max_entries=1, ttl=1.0))
        channel = built.channel
        assert isinstance(channel, EchoChannel)
        assert (channel.token, channel.http, channel.settings.number) == (
            "secret",
            http,
            "+15550001111",
        )
    assert webhook_body_limit(settings) == 1234  # under [server] max_body_bytes
    app = QuartTrio("echo")
    for add_routes in built.routes:
        add_routes(app)
    async with app.test_app() as test_app:
        response = await test_app.test_client().get("/echo/ping")
        assert await response.get_data() == b"+15550001111"
