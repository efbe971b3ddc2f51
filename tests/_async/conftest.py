"""Fixtures of the twin suite: a facade on a fresh store of the backend under test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from omniq import AsyncOmniQ, Settings


@pytest.fixture
async def omniq(settings: Settings) -> AsyncIterator[AsyncOmniQ]:
    """An open facade; closed after the test."""
    facade = AsyncOmniQ(settings)
    await facade.open()
    yield facade
    await facade.close()
