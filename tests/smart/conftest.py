"""The `ehr` fixture: a fresh SMART EHR double (its own process) per test, killed after it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.smart.double import EhrDouble


@pytest.fixture
def ehr() -> Iterator[EhrDouble]:
    """A running EHR double (tests/smart/double.py): public client "consultcam", v2 scopes, no data yet."""
    with EhrDouble() as double:
        yield double
