"""Edge fixtures: ``provider`` runs a test once per WhatsApp provider (as in integration)."""

from __future__ import annotations

import pytest

PROVIDERS = ["meta", "twilio"]


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name
