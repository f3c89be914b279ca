"""Inbound <-> JSON: a turn record keeps the whole message, so the turn can run again after a
restart (daemon/state/sqlite/, daemon/state/redis/journal.py)."""

from __future__ import annotations

import json

from daemon.model import Inbound, Kind, Media, User


def inbound_to_json(message: Inbound) -> str:
    media = message.media
    data: dict[str, object] = {
        "message_id": message.message_id,
        "user": {"key": message.user.key, "address": message.user.address},
        "kind": message.kind.value,
        "text": message.text,
        "media": None
        if media is None
        else {
            "id": media.id,
            "mime_type": media.mime_type,
            "sha256": media.sha256,
            "voice": media.voice,
        },
        "original_type": message.original_type,
        "timestamp": message.timestamp,
        "channel_ref": message.channel_ref,
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def inbound_from_json(text: str) -> Inbound:
    """The message ``inbound_to_json`` wrote; ``ValueError`` when ``text`` is not one.

    Fields with a default in ``Inbound`` may be missing, so rows written before a field was
    added still load.
    """
    data = _object(json.loads(text), "inbound")
    user = _object(data.get("user"), "user")
    media: Media | None = None
    if data.get("media") is not None:
        raw = _object(data["media"], "media")
        media = Media(
            id=_string(raw, "id"),
            mime_type=_string(raw, "mime_type"),
            sha256=_optional_string(raw, "sha256"),
            voice=_boolean(raw, "voice", default=False),
        )
    return Inbound(
        message_id=_string(data, "message_id"),
        user=User(key=_string(user, "key"), address=_string(user, "address")),
        kind=Kind(_string(data, "kind")),
        text=_string(data, "text", default=""),
        media=media,
        original_type=_string(data, "original_type", default=""),
        timestamp=_integer(data, "timestamp", default=0),
        channel_ref=_string(data, "channel_ref", default=""),
    )


def _object(value: object, what: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ValueError(f"{what}: expected an object, got {type(value).__name__}")
    return value


def _string(data: dict[str, object], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a string, got {type(value).__name__}")
    return value


def _optional_string(data: dict[str, object], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key}: expected a string or null, got {type(value).__name__}")
    return value


def _boolean(data: dict[str, object], key: str, *, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key}: expected a boolean, got {type(value).__name__}")
    return value


def _integer(data: dict[str, object], key: str, *, default: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key}: expected an integer, got {type(value).__name__}")
    return value
