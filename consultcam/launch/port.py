"""The Medtech launch port: what the launch service asks of Medtech ALEX, and what it gets back.

The adapter is `consultcam.launch.alex_api.AlexLaunchApi` (built by `bootstrap.build_runtime` when
CONSULTCAM_EMR_URL is `alex+https://…`); tests run it against the ALEX test double (tests/medtech).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, Protocol

__all__ = ["AlexPatient", "LaunchContext", "LaunchFailure", "MedtechLaunch", "Why"]

#: Why ALEX gave no answer a launch can use:
#: - "bad-signature": ALEX would not decode the context with this signature (forged, mangled, unknown);
#: - "alex-unreachable": no answer at all (refused, timed out, DNS);
#: - "alex-credentials": the token endpoint or ALEX refused our client credentials (401/403);
#: - "alex-error": ALEX answered 429/5xx, or something we cannot read (not the documented shape);
#: - "patient-not-found": ALEX has no such patient at that facility (404).
Why = Literal["bad-signature", "alex-unreachable", "alex-credentials", "alex-error", "patient-not-found"]


class LaunchFailure(Exception):
    """ALEX gave no usable answer; `why` says which kind of failure (see `Why`). The message never holds
    the context, the signature or a token."""

    def __init__(self, why: Why, message: str) -> None:
        super().__init__(message)
        self.why: Why = why


@dataclass(frozen=True)
class LaunchContext:
    """A decoded launch context: ALEX's `{patientId, facilityCode, providerId, createdTime}`.

    `patient_id` is the FHIR Patient id open in Medtech Evolution, None when no patient is open;
    `facility_code` (e.g. "F2N060-E", the `mt-facilityid` header) and `provider_id` (the GP, e.g.
    "PRV123") are FHIR ids; `created_at` is when Medtech made the context, an aware UTC datetime."""

    patient_id: str | None
    facility_code: str
    provider_id: str
    created_at: datetime


@dataclass(frozen=True)
class AlexPatient:
    """The patient as ALEX's `GET /FHIR/Patient/{id}` gives them: FHIR id, a display name ("Given
    Family", from the official name, else the usual one, else the first), the NHI (system
    https://standards.digital.health.nz/ns/nhi-id) and the birth date when the record has a full one."""

    id: str
    name: str
    nhi: str | None
    birth_date: date | None


class MedtechLaunch(Protocol):
    """Medtech ALEX, as far as a launch needs it. Both calls raise `LaunchFailure`."""

    async def decode(self, context: str, signature: str) -> LaunchContext:
        """Decode a launch's `context` with its `signature` (ALEX vendor forms)."""
        ...

    async def read_patient(self, patient_id: str, facility_code: str) -> AlexPatient:
        """Read the patient `patient_id` at `facility_code`."""
        ...

    async def close(self) -> None:
        """Release the HTTP connections (at shutdown)."""
        ...
