"""The `alex` fixture: a fresh Medtech ALEX double (its own process) per test, killed after it; and for tests
that call it directly: `http` (an httpx.Client), `patient` (a Patient's id, NHI ZZZ0016), `auth` (headers)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.medtech.double import AlexDouble
from tests.medtech.wire import FACILITY, NHI, token


@pytest.fixture
def alex() -> Iterator[AlexDouble]:
    """A running ALEX double (tests/medtech/double.py) with no patients, launches or resources yet."""
    with AlexDouble() as double:
        yield double


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0, trust_env=False) as client:
        yield client


@pytest.fixture
def patient(alex: AlexDouble) -> str:
    """Jane Smith, NHI ZZZ0016, born 1980-04-02: her ALEX id."""
    return alex.add_patient(nhi=NHI, family="Smith", given="Jane", birth_date="1980-04-02")


@pytest.fixture
def auth(alex: AlexDouble, http: httpx.Client) -> dict[str, str]:
    """The headers every FHIR call needs: a bearer token from the double's token endpoint, the facility."""
    return {"Authorization": f"Bearer {token(alex, http)}", "mt-facilityid": FACILITY}
