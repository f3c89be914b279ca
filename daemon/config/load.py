"""config.toml into ``Settings``: every value checked against its field's type, every
error naming the key.

Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import enum
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daemon.channels import registry
from daemon.config.sections import TextsConfig, toml_name
from daemon.config.settings import ConfigError, Secrets, Settings, provider_defaults, secret_names
from daemon.config.validate import validate_values
from daemon.texts import BUILT_IN_TEXTS, ENGLISH, TextTable


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check one TOML value against the dataclass annotation; name the key when it fails."""
    origin = typing.get_origin(annotation)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be a whole number, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
        return value
    if isinstance(annotation, type) and issubclass(annotation, enum.StrEnum):
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
        choices = [member.value for member in annotation]
        if value not in choices:
            raise ConfigError(key, f"must be one of {' | '.join(choices)}, got {value!r}")
        return annotation(value)
    if origin is tuple:
        item_type = typing.get_args(annotation)[0]
        if isinstance(item_type, type) and dataclasses.is_dataclass(item_type):  # [[a.b]] arrays
            if not isinstance(value, list):
                raise ConfigError(key, f"must be an array of tables, got {value!r}")
            return tuple(
                _section(f"{key}[{i}]", item_type, item, labelled=True)
                for i, item in enumerate(value)
            )
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, f"must be a list of strings, got {value!r}")
        return tuple(value)
    raise ConfigError(key, f"unsupported type {annotation!r}")  # pragma: no cover


def _section(name: str, cls: type[Any], table: Any, *, labelled: bool = False) -> Any:
    """One table. ``labelled``: ``name`` is already a key label ("[cache] faq[0]")."""
    where = name if labelled else f"[{name}]"
    if not isinstance(table, dict):
        raise ConfigError(where, "must be a table")
    hints = typing.get_type_hints(cls)
    fields = {toml_name(f): f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        f = fields.get(key)
        label = f"{where}.{key}" if labelled else f"[{name}] {key}"
        if f is None:
            known = ", ".join(sorted(fields))
            raise ConfigError(label, f"unknown key (known: {known})")
        kwargs[f.name] = _coerce(label, value, hints[f.name])
    return cls(**kwargs)


def _texts_section(name: str, cls: type[Any], table: Any) -> TextsConfig:
    """``[texts]``: ``default_language`` plus one sub-table per language."""
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}]", "must be a table")
    default = table.get("default_language", "en")
    if not isinstance(default, str):
        raise ConfigError(f"[{name}] default_language", f"must be a string, got {default!r}")
    tables = dict(BUILT_IN_TEXTS)
    raw_tables = {k: v for k, v in table.items() if k != "default_language"}
    for code, values in raw_tables.items():
        if not isinstance(values, dict):
            raise ConfigError(
                f"[{name}] {code}",
                "unknown key: [texts] holds default_language and [texts.<language>] tables",
            )
    # The default language first, so other partial tables can fall back to it.
    ordered = sorted(raw_tables, key=lambda code: code != default)
    for code in ordered:
        values = raw_tables[code]
        base = tables.get(code) or tables.get(default) or ENGLISH
        known = {f.name for f in dataclasses.fields(TextTable)}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(
                    f"[{name}.{code}] {key}", f"unknown key (known: {', '.join(sorted(known))})"
                )
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"[{name}.{code}] {key}", "must be a non-empty string")
        tables[code] = dataclasses.replace(base, **values)
    if default not in tables:
        raise ConfigError(f"[{name}] default_language", f"no [texts.{default}] table")
    for code, t in tables.items():
        if "{transcript}" not in t.transcript_echo:
            raise ConfigError(f"[{name}.{code}] transcript_echo", "must contain {transcript}")
    return TextsConfig(default_language=default, tables=tables)


def _secrets(env: Mapping[str, str]) -> Secrets:
    values: dict[str, str] = {}
    cred_dir = env.get("CREDENTIALS_DIRECTORY", "")
    for name in secret_names():
        value = env.get(name, "")
        if cred_dir:
            path = Path(cred_dir) / name.lower().replace("_", "-")
            if path.is_file():
                value = path.read_text(encoding="utf-8").strip()
        values[name] = value
    return Secrets(values)


def section_types() -> dict[str, type[Any]]:
    """Every section's name in config.toml and its dataclass: the core ones, then each
    provider's (daemon/channels/registry.py)."""
    hints = typing.get_type_hints(Settings)
    core = {f.name: hints[f.name] for f in dataclasses.fields(Settings)}
    del core["providers"], core["secrets"]
    return core | {p.section: p.settings for p in registry.PROVIDERS}


def parse(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from an already-parsed TOML document and an environment."""
    env = os.environ if env is None else env
    types = section_types()
    sections: dict[str, Any] = {}
    providers = provider_defaults()
    for name, table in data.items():
        if name not in types:
            raise ConfigError(f"[{name}]", f"unknown section (known: {', '.join(sorted(types))})")
        parse_section = _texts_section if name == "texts" else _section
        parsed = parse_section(name, types[name], table)
        if name in providers:
            providers[name] = parsed
        else:
            sections[name] = parsed
    settings = Settings(**sections, providers=providers, secrets=_secrets(env))
    validate_values(settings)
    return settings


def load(path: str | Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read a config file (None: defaults only) and validate its values."""
    if path is None:
        return parse({}, env)
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), f"cannot read: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), f"not valid TOML: {exc}") from exc
    return parse(data, env)


def replace(s: Settings, **sections: Any) -> Settings:
    """A copy of ``s`` with whole sections or single keys replaced: ``replace(s,
    timeouts={"agent": 1.0})``. For tests, the demo and the simulators."""
    changes: dict[str, Any] = {}
    providers = dict(s.providers)
    for name, value in sections.items():
        current = providers[name] if name in providers else getattr(s, name)
        new = dataclasses.replace(current, **value) if isinstance(value, dict) else value
        if name in providers:
            providers[name] = new
        else:
            changes[name] = new
    return dataclasses.replace(s, **changes, providers=providers)
