"""JSON as Graph sends it, read without surprises: no integer literal can fail a delivery."""

from __future__ import annotations

import json
from typing import Any

# Integers in the JSON longer than this are not read as numbers: CPython refuses to convert
# more than 4300 digits (a ValueError that would fail the whole delivery), and no field of a
# webhook needs more than a timestamp's or an error code's few digits.
_MAX_INT_DIGITS = 30


class OversizedNumber:
    """An integer literal too long to be any webhook field (``_MAX_INT_DIGITS``); it is no
    ``int`` and no ``str``, so every field check treats it as a wrong type."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"OversizedNumber({self.digits} digits)"


def _parse_int(literal: str) -> int | OversizedNumber:
    return int(literal) if len(literal) <= _MAX_INT_DIGITS else OversizedNumber(len(literal))


def loads(body: bytes | str) -> Any:
    """``json.loads`` that never fails on a long integer literal (see OversizedNumber)."""
    return json.loads(body, parse_int=_parse_int)


def as_text(value: object) -> str:
    """``value`` when it is a string, else "" (a field of any JSON type read as text)."""
    return value if isinstance(value, str) else ""
