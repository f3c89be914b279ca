"""Twilio's webhooks are form posts (reference/whatsapp.md §6): the body as (name, value)
pairs, read strictly, and the pairs grouped by name."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qsl

from daemon.channels.base import BadWebhook

# A webhook is a few dozen fields; a body with thousands of them is not Twilio.
_MAX_FIELDS = 1000

Params = Mapping[str, Sequence[str]] | Iterable[tuple[str, str]]


def grouped(params: Params) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    if isinstance(params, Mapping):
        for name, values in params.items():
            grouped.setdefault(name, []).extend([values] if isinstance(values, str) else values)
    else:
        for name, value in params:
            grouped.setdefault(name, []).append(value)
    return grouped


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """An ``application/x-www-form-urlencoded`` body as (name, value) pairs, in order.

    Blank values are kept (Twilio sends ``Body=`` for media) because the signature covers
    them. Strict: bytes that are not UTF-8, or a field without ``=``, raise BadWebhook.
    """
    try:
        text = body.decode("utf-8")
        return parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=_MAX_FIELDS,
        )
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise BadWebhook(f"body is not a form: {type(exc).__name__}") from None


def first(params: Params) -> dict[str, str]:
    """The first value of every name: Twilio sends each field once."""
    return {name: values[0] for name, values in grouped(params).items() if values}
