"""Fixtures of the system tier: the cached guest image (built on first use, ~1 min)."""

from __future__ import annotations

import pytest

from gateway.testing.guest_image import GuestImage, ensure_image


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    """The Debian guest image; built once per machine and input hash, then reused."""
    return ensure_image()
