"""Config: defaults, the shipped config.toml, errors that name the key, secrets."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path

import pytest

from daemon import config
from daemon.__main__ import main

ROOT = Path(__file__).resolve().parents[2]

READY_ENV = {
    "WHATSAPP_ACCESS_TOKEN": "t",
    "WHATSAPP_APP_SECRET": "s",
    "AGENTFORCE_CLIENT_ID": "id",
    "AGENTFORCE_CLIENT_SECRET": "secret",
    "ELEVENLABS_API_KEY": "k",
}
READY_IDS = {
    "whatsapp": {"phone_number_id": "106540352242922"},
    "agentforce": {
        "token_url": "https://acme.my.salesforce.com/services/oauth2/token",
        "instance_endpoint": "https://acme.my.salesforce.com",
        "agent_id": "0XxQZ0000000Ty50AE",
    },
    "elevenlabs": {"voice_id": "voice"},
}


def test_shipped_config_toml_equals_the_built_in_defaults() -> None:
    # config.toml documents every key with its default; it must not drift from the code.
    from_file = config.load(ROOT / "config.toml", env={})
    assert dataclasses.replace(from_file, secrets=config.Secrets()) == config.Settings()


def test_shipped_config_toml_lists_every_key() -> None:
    text = (ROOT / "config.toml").read_text()
    data = tomllib.loads(text)
    # Every section: the core ones and each provider's (daemon/channels/registry.py).
    for name, cls in config.section_types().items():
        section = data.get(name)
        assert section is not None, f"[{name}] missing from config.toml"
        if name == "texts":
            assert "default_language" in section
            for language in ("en", "ar"):
                for key in dataclasses.fields(config.TextTable):
                    assert key.name in section[language], f"[texts.{language}] {key.name}"
            continue
        for key in dataclasses.fields(cls):
            if (name, key.name) in (("cache", "faq"), ("cache", "deny")):
                assert f"# [[cache.{key.name}]]" in text  # documented as a commented example
                continue
            assert key.name.rstrip("_") in section, f"[{name}] {key.name} missing"


@pytest.mark.parametrize(
    ("data", "key", "why"),
    [
        ({"server": {"bnd": "x"}}, "[server] bnd", "unknown key"),
        ({"sever": {}}, "[sever]", "unknown section"),
        ({"server": {"bind": "8080"}}, "[server] bind", "host:port"),
        ({"timeouts": {"agent": "fast"}}, "[timeouts] agent", "must be a number"),
        ({"timeouts": {"agent": 0}}, "[timeouts] agent", "> 0"),
        ({"voice": {"reply": "sometimes"}}, "[voice] reply", "mirror | always | never"),
        ({"channel": {"provider": "telegram"}}, "[channel] provider", "meta | twilio"),
        ({"whatsapp": {"graph_url": "graph.facebook.com"}}, "[whatsapp] graph_url", "URL"),
        ({"whatsapp": {"media_hosts": "lookaside.fbsbx.com"}}, "[whatsapp] media_hosts", "list"),
        ({"lanes": {"max_lanes": 1.5}}, "[lanes] max_lanes", "whole number"),
        ({"server": {"webhook_path": "webhook"}}, "[server] webhook_path", "start with /"),
        ({"limits": {"daily_turns": -1}}, "[limits] daily_turns", ">= 0 (0 = off)"),
        ({"limits": {"users": 0}}, "[limits] users", "> 0"),
        ({"limits": {"burst": 0}}, "[limits] burst / per_minute", "needs both"),
        ({"voice": {"max_seconds": 0}}, "[voice] max_seconds", "> 0"),
        ({"voice": {"tts_concurrency": 0}}, "[voice] tts_concurrency", "> 0"),
        ({"voice": {"sentence_tts": "yes"}}, "[voice] sentence_tts", "true or false"),
        ({"agentforce": {"streaming": 1}}, "[agentforce] streaming", "true or false"),
        ({"timeouts": {"agent_idle": -1}}, "[timeouts] agent_idle", "> 0"),
        ({"texts": {"ar": {"voice_cut": " "}}}, "[texts.ar] voice_cut", "non-empty"),
    ],
)
def test_bad_values_name_the_key(data: dict[str, object], key: str, why: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.parse(data, env={})
    assert err.value.key == key
    assert why in err.value.why


def test_texts_tables_fall_back_and_name_bad_keys() -> None:
    settings = config.parse(
        {"texts": {"default_language": "en", "fr": {"holding": "Un instant…"}}}, env={}
    )
    french = settings.texts.for_language("fr")
    assert french.holding == "Un instant…"
    assert french.agent_down == config.ENGLISH.agent_down  # from the default language
    assert settings.texts.for_language("ar-EG") == config.ARABIC
    assert settings.texts.for_language(None) == config.ENGLISH
    assert settings.texts.for_language("xx") == config.ENGLISH
    with pytest.raises(config.ConfigError) as err:
        config.parse({"texts": {"fr": {"holding_msg": "x"}}}, env={})
    assert err.value.key == "[texts.fr] holding_msg"
    with pytest.raises(config.ConfigError) as err:
        config.parse({"texts": {"en": {"transcript_echo": "heard you"}}}, env={})
    assert err.value.key == "[texts.en] transcript_echo"
    with pytest.raises(config.ConfigError) as err:
        config.parse({"texts": {"default_language": "de"}}, env={})
    assert err.value.key == "[texts] default_language"


def test_ready_requires_ids_and_secrets() -> None:
    settings = config.parse(READY_IDS, env=READY_ENV)
    config.validate_ready(settings)  # complete: no error
    with pytest.raises(config.ConfigError) as err:
        config.validate_ready(config.parse(READY_IDS, env={**READY_ENV, "ELEVENLABS_API_KEY": ""}))
    assert err.value.key == "ELEVENLABS_API_KEY"
    assert "elevenlabs-api-key" in err.value.why
    ids = {**READY_IDS, "agentforce": {**READY_IDS["agentforce"], "agent_id": ""}}
    with pytest.raises(config.ConfigError) as err:
        config.validate_ready(config.parse(ids, env=READY_ENV))
    assert err.value.key == "[agentforce] agent_id"


def test_ready_on_twilio_requires_twilio_ids_and_token_not_metas() -> None:
    ids = {
        "channel": {"provider": "twilio"},
        "twilio": {"account_sid": "AC" + "5" * 32, "public_url": "https://bot.example.com"},
        "agentforce": READY_IDS["agentforce"],
        "elevenlabs": READY_IDS["elevenlabs"],
    }
    env = {
        "AGENTFORCE_CLIENT_ID": "id",
        "AGENTFORCE_CLIENT_SECRET": "secret",
        "ELEVENLABS_API_KEY": "k",
        "TWILIO_AUTH_TOKEN": "t",
    }
    # Complete without a phone_number_id or any WHATSAPP_* secret: those are Meta's.
    config.validate_ready(config.parse(ids, env=env))
    with pytest.raises(config.ConfigError) as err:
        config.validate_ready(config.parse(ids, env={**env, "TWILIO_AUTH_TOKEN": ""}))
    assert err.value.key == "TWILIO_AUTH_TOKEN"
    assert "twilio-auth-token" in err.value.why
    for key in ("account_sid", "public_url"):
        missing = {**ids, "twilio": {**ids["twilio"], key: ""}}
        with pytest.raises(config.ConfigError) as err:
            config.validate_ready(config.parse(missing, env=env))
        assert err.value.key == f"[twilio] {key}"
    # And Meta does not need Twilio's token (READY_ENV has none).
    config.validate_ready(config.parse(READY_IDS, env=READY_ENV))


def test_credentials_directory_wins_over_environment(tmp_path: Path) -> None:
    (tmp_path / "whatsapp-app-secret").write_text("from-file\n")
    settings = config.parse(
        {}, env={"WHATSAPP_APP_SECRET": "from-env", "CREDENTIALS_DIRECTORY": str(tmp_path)}
    )
    assert settings.secrets.get("WHATSAPP_APP_SECRET") == "from-file"
    assert "from-file" not in repr(settings)  # secrets never printed


def test_check_config_exits_non_zero_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[timeouts]\nagent = "soon"\n')
    assert main(["check-config", "--config", str(bad)]) == 2
    assert "[timeouts] agent" in capsys.readouterr().err

    broken = tmp_path / "broken.toml"
    broken.write_text("[server\n")
    assert main(["check-config", "--config", str(broken)]) == 2
    assert "not valid TOML" in capsys.readouterr().err

    good = tmp_path / "good.toml"
    good.write_text(
        '[whatsapp]\nphone_number_id = "1"\n[agentforce]\n'
        'token_url = "https://a.my.salesforce.com/services/oauth2/token"\n'
        'instance_endpoint = "https://a.my.salesforce.com"\nagent_id = "0Xx1"\n'
        '[elevenlabs]\nvoice_id = "v"\n'
    )
    for name, value in READY_ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["check-config", "--config", str(good)]) == 0
    assert "config ok" in capsys.readouterr().out


# The sections whose every number must be > 0 (before the constraints were declared on the
# fields, validate.py held this list; each field of theirs now says so in its type).
_ALL_POSITIVE = ("server", "timeouts", "lanes", "inbox", "http", "voice", "breakers")
_ALL_POSITIVE += ("agentforce", "whatsapp", "twilio", "redis")


def _numbers(name: str) -> list[str]:
    cls = config.section_types()[name]
    hints = typing.get_type_hints(cls)  # without Annotated: the plain int / float
    return [f.name.rstrip("_") for f in dataclasses.fields(cls) if hints[f.name] in (int, float)]


@pytest.mark.parametrize(
    ("section", "key"), [(name, key) for name in _ALL_POSITIVE for key in _numbers(name)]
)
def test_every_number_of_these_sections_must_be_positive(section: str, key: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.parse({section: {key: 0}}, env={})
    assert err.value.key == f"[{section}] {key}"


def test_enumerated_values_are_typed() -> None:
    settings = config.parse({"voice": {"reply": "always"}, "log": {"level": "debug"}}, env={})
    assert settings.voice.reply is config.VoiceReply.ALWAYS
    assert settings.log.level is config.LogLevel.DEBUG
    with pytest.raises(config.ConfigError) as err:
        config.parse({"log": {"level": 3}}, env={})
    assert (err.value.key, err.value.why) == ("[log] level", "must be a string, got 3")
    with pytest.raises(config.ConfigError) as err:
        config.parse({"redis": {"mode": "ring"}}, env={})
    assert err.value.why == "must be one of standalone | sentinel | cluster, got 'ring'"


def test_provider_sections_come_from_the_registry() -> None:
    from daemon.channels import registry

    names = config.section_types()
    for provider in registry.PROVIDERS:
        assert names[provider.section] is provider.settings
    settings = config.parse({"twilio": {"media_ttl": 60}}, env={})
    assert settings.section(registry.get("twilio").settings).media_ttl == 60.0
    assert config.replace(settings, twilio={"media_ttl": 5}).providers["twilio"].media_ttl == 5
