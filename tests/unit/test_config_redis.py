"""[redis]: defaults valid, errors that name the key, the password only from secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import config
from daemon.config import ConfigError
from daemon.state.redis.client import client_options


def test_defaults_are_valid_and_documented() -> None:
    settings = config.parse({}, env={})
    assert settings.redis.url == "redis://127.0.0.1:6379/0"
    assert settings.redis.prefix == "wa-agentd:"
    assert settings.redis.mode == "standalone"


@pytest.mark.parametrize(
    ("table", "key", "why"),
    [
        ({"url": "redis://:pw@host:6379/0"}, "[redis] url", "REDIS_PASSWORD"),
        ({"url": "redis://user:pw@host/0"}, "[redis] url", "REDIS_PASSWORD"),
        ({"url": "http://host:6379"}, "[redis] url", "redis://"),
        ({"url": "redis://host:99999/0"}, "[redis] url", "port"),
        ({"url": "redis://host/abc"}, "[redis] url", "database number"),
        ({"url": "redis://host/1", "mode": "cluster"}, "[redis] url", "database 0"),
        ({"prefix": "wa{x}:"}, "[redis] prefix", "braces"),
        ({"prefix": ""}, "[redis] prefix", "non-empty"),
        ({"mode": "replica"}, "[redis] mode", "standalone | sentinel | cluster"),
        ({"mode": "sentinel"}, "[redis] sentinels", "host:port"),
        ({"mode": "sentinel", "sentinels": ["nohost"]}, "[redis] sentinels[0]", "host:port"),
        ({"lease_seconds": 0}, "[redis] lease_seconds", "> 0"),
        ({"command_timeout": -1}, "[redis] command_timeout", "> 0"),
    ],
)
def test_bad_values_name_their_key(table: dict[str, object], key: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse({"redis": table}, env={})
    assert caught.value.key == key
    assert why in caught.value.why


def test_the_password_is_a_secret_from_env_or_credentials(tmp_path: Path) -> None:
    (tmp_path / "redis-password").write_text("from-file\n")
    env = {"REDIS_PASSWORD": "from-env", "CREDENTIALS_DIRECTORY": str(tmp_path)}
    settings = config.parse({"redis": {"url": "rediss://cache.internal:6380/2"}}, env=env)
    assert settings.secrets.get("REDIS_PASSWORD") == "from-file"  # the credential wins
    assert "from-file" not in repr(settings)
    options = client_options(settings.redis, settings.secrets.get("REDIS_PASSWORD"))
    assert options["password"] == "from-file"
    context = options["ssl_context"]
    assert context.check_hostname is True and context.verify_mode.name == "CERT_REQUIRED"


def test_a_url_user_is_the_acl_user() -> None:
    settings = config.parse({"redis": {"url": "redis://wa-agentd@host:6379/0"}}, env={})
    assert client_options(settings.redis, "")["username"] == "wa-agentd"
    assert "ssl_context" not in client_options(settings.redis, "")
