"""Fixtures for the Medtech launch tests: the ALEX test double (its own process, real HTTP) and settings
that point consultcam's `alex+http` EMR URL and ALEX credentials at it, on each database backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.medtech.double import AlexDouble


@pytest.fixture
def alex() -> Iterator[AlexDouble]:
    """A fresh ALEX test double for this test (its own patients, launches and request log)."""
    with AlexDouble() as double:
        yield double


@pytest.fixture
def settings_overrides(alex: AlexDouble) -> dict[str, Any]:
    """CONSULTCAM_EMR_URL=alex+http://…/FHIR and the CONSULTCAM_ALEX_* credentials of the double."""
    return {name.removeprefix("CONSULTCAM_").lower(): value for name, value in alex.env().items()}
