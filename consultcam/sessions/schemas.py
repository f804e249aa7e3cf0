"""Request and response shapes for capture sessions and pairing (DESIGN.md, "HTTP API")."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator

from consultcam.commits.schemas import LastCommitOut
from consultcam.images.schemas import ImageOut
from consultcam.schemas import CamelModel
from consultcam.sessions.nhi import normalise_nhi

Identifier = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/@|-]+$"),
]


class PatientIn(CamelModel):
    """The patient as the EMR knows them. `nhi` is checked (format and check character)."""

    id: Identifier
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    nhi: str | None = None
    birth_date: date | None = None

    @field_validator("nhi")
    @classmethod
    def _nhi(cls, value: str | None) -> str | None:
        return normalise_nhi(value) if value and value.strip() else None

    @field_validator("birth_date")
    @classmethod
    def _not_future(cls, value: date | None) -> date | None:
        if value and value > date.today():
            raise ValueError("birth date is in the future; check it against the patient record")
        return value


class SessionCreate(CamelModel):
    """`POST /api/sessions`: the encounter open in the EMR."""

    encounter_id: Identifier
    patient: PatientIn
    practitioner_id: Identifier | None = None
    facility_id: Identifier | None = None


class PatientOut(CamelModel):
    id: str
    name: str
    nhi: str | None
    birth_date: date | None


class PairingOut(CamelModel):
    """A fresh QR code: `url` holds the pairing token, so it is shown once and never logged."""

    url: str
    expires_at: datetime
    qr_svg: str


ConsentScope = Literal["clinical", "teaching", "publication"]
ConsentGiver = Literal["patient", "guardian"]


class ConsentIn(CamelModel):
    """`PUT /api/sessions/{id}/consent`: the patient's consent to clinical photography, as asked before the
    first photo. `scope`: the agreed use (clinical record only, teaching, publication); `givenBy`: the
    patient, or their guardian."""

    scope: ConsentScope
    given_by: ConsentGiver


class ConsentOut(CamelModel):
    """Consent as recorded with the session (and carried into each committed resource's note)."""

    scope: ConsentScope
    given_by: ConsentGiver
    recorded_at: datetime
    recorded_by: Literal["phone", "clinician"]


class PhoneOut(CamelModel):
    id: str
    user_agent: str
    paired_at: datetime
    last_seen_at: datetime


class SessionOut(CamelModel):
    """A capture session as clinicians and its phone see it. `consent` is null until recorded;
    `consentRequired`, `requiredMetadata` and `phoneCanCommit` are the practice's settings
    (CONSULTCAM_CONSENT_REQUIRED, _REQUIRED_METADATA, _PHONE_CAN_COMMIT), so the pages follow them."""

    id: str
    status: Literal["open", "committing", "committed", "cancelled", "expired"]
    encounter_id: str
    patient: PatientOut
    practitioner_id: str | None
    facility_id: str | None
    created_at: datetime
    expires_at: datetime
    max_images: int
    warn_images: int
    image_count: int
    consent: ConsentOut | None = None
    consent_required: bool
    required_metadata: list[str]
    phone_can_commit: bool
    commit_error: str | None = None
    last_commit: LastCommitOut | None = None  # issue 10: running, committed, failed or interrupted
    pairing: PairingOut | None = None
    phone: PhoneOut | None = None
    images: list[ImageOut] | None = None


class PairRequest(CamelModel):
    token: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class CaptureSettings(CamelModel):
    """What the phone needs to prepare photos before upload (issue 2: ≤ 2048 px long edge, ≤ 1 MB JPEG), and
    the practice's capture rules (issue 5: consent first, required metadata, commit from the phone)."""

    max_edge_px: int
    max_bytes: int
    max_images: int
    warn_images: int
    max_upload_bytes: int
    accepted_types: list[str]
    consent_required: bool
    required_metadata: list[str]
    phone_can_commit: bool


class PairResponse(CamelModel):
    session: SessionOut
    phone_token: str = Field(repr=False, description="The phone credential; also set as an HttpOnly cookie.")
    capture_settings: CaptureSettings
