"""Request and response shapes for capture sessions and pairing (DESIGN.md, "HTTP API")."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from consultcam.commits.schemas import LastCommitOut
from consultcam.config import PRACTICE_TIMEZONE
from consultcam.images.schemas import ImageOut, no_control_characters
from consultcam.schemas import CamelModel
from consultcam.sessions.nhi import normalise_nhi

#: FHIR R4 `id` datatype (hl7.org/fhir/R4/datatypes.html#id): what a reference such as "Encounter/<id>"
#: can carry. An id the record could not take is refused when the session is opened, not at the commit.
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
#: A birth date further back than this is a typo (1850 for 1950), not a patient.
OLDEST_AGE_YEARS = 130
NAME_MAX_LENGTH = 200


def _fhir_id(value: str) -> str:
    if not _FHIR_ID.fullmatch(value):
        raise PydanticCustomError(
            "fhir_id",
            "'{value}' is not a FHIR id: 1 to 64 letters, digits, '-' or '.' (no spaces, '/', ':', '_' or "
            "'|'); use the id the practice system gives, without a resource type or system",
            {"value": value[:80]},
        )
    return value


def _plain_name(value: str) -> str:
    """One line of plain text with runs of spaces made one, 1 to NAME_MAX_LENGTH characters. Control
    characters are refused first, so a tab or line break is not silently turned into a space."""
    name = " ".join(no_control_characters(value).split())
    if not name:
        raise PydanticCustomError("empty_name", "is empty: enter the patient's name as the record has it")
    if len(name) > NAME_MAX_LENGTH:
        raise PydanticCustomError(
            "long_name",
            "is longer than {limit} characters: enter the name as the record has it",
            {"limit": NAME_MAX_LENGTH},
        )
    return name


#: A FHIR R4 id (spaces around it removed).
FhirId = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_fhir_id)]
#: A person's name as the record shows it: plain text on one line, 1-200 characters.
PersonName = Annotated[str, AfterValidator(_plain_name)]


class PatientIn(CamelModel):
    """The patient as the EMR knows them, checked so that every field can be committed: `id` a FHIR id,
    `nhi` a valid NHI (either format, with its check character; HISO 10046:2023), `name` plain text,
    `birthDate` a real date neither in the future (in the practice's time zone) nor over 130 years ago."""

    id: FhirId
    name: PersonName
    nhi: str | None = None
    birth_date: date | None = None

    @field_validator("nhi")
    @classmethod
    def _nhi(cls, value: str | None) -> str | None:
        if not value or not value.strip():
            return None
        try:
            return normalise_nhi(value)
        except ValueError as exc:
            raise PydanticCustomError("nhi", str(exc).replace("{", "(").replace("}", ")")) from None

    @field_validator("birth_date")
    @classmethod
    def _plausible(cls, value: date | None) -> date | None:
        if value is None:
            return value
        today = datetime.now(PRACTICE_TIMEZONE).date()
        if value > today:
            raise PydanticCustomError(
                "birth_date_future",
                "birth date {value} is in the future; check it against the patient record",
                {"value": value.isoformat()},
            )
        if value.year < today.year - OLDEST_AGE_YEARS:
            raise PydanticCustomError(
                "birth_date_past",
                "birth date {value} is more than {years} years ago; check the year against the patient "
                "record",
                {"value": value.isoformat(), "years": OLDEST_AGE_YEARS},
            )
        return value


class SessionCreate(CamelModel):
    """`POST /api/sessions`: the encounter open in the EMR. Every id is a FHIR R4 id, as the commit needs
    (Encounter/<id>, Patient/<id>, Practitioner/<id>; ALEX's facility header)."""

    encounter_id: FhirId
    patient: PatientIn
    practitioner_id: FhirId | None = None
    facility_id: FhirId | None = None


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
    (CONSULTCAM_CONSENT_REQUIRED, _REQUIRED_METADATA, _PHONE_CAN_COMMIT), so the pages follow them.
    `encounterInRecord` is false when `encounterId` is a launch's made-up day key, not an Encounter of the
    record (`consultcam.sessions.encounters`): the pages then say "Today's consultation"."""

    id: str
    status: Literal["open", "committing", "committed", "cancelled", "expired"]
    encounter_id: str
    encounter_in_record: bool
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
