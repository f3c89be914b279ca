"""Edge fixtures: ``provider`` runs a test once per WhatsApp provider (as in integration),
where the attack applies to both (the signature header and the body limit differ)."""

from __future__ import annotations

import pytest

PROVIDERS = ["meta", "twilio"]


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name
