"""Request and response shapes for clinical images (DESIGN.md, "An image")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator

from consultcam.schemas import CamelModel
from consultcam.terminology import SNOMED_CT, is_snomed_concept_id

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=120)]


class Coding(CamelModel):
    """A SNOMED CT coding (FHIR R4 Coding); the id must be a well-formed concept id with its check digit."""

    system: Literal["http://snomed.info/sct"] = SNOMED_CT
    code: str
    display: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]

    @field_validator("code")
    @classmethod
    def _sctid(cls, value: str) -> str:
        if not is_snomed_concept_id(value):
            raise ValueError(f"{value!r} is not a SNOMED CT concept id (digits with a Verhoeff check digit)")
        return value


class ImageMetadata(CamelModel):
    """What the clinician says about a photo (FHIR R4 Media.bodySite, view, note). Laterality and view take
    the values in consultcam/data/body-sites.json (`consultcam.terminology`), the chips the pages show."""

    body_site: Coding | None = None
    laterality: Literal["left", "right", "bilateral", "not-applicable"] | None = None
    view: Literal["overview", "close-up", "dermoscopy"] | None = None
    label: ShortText | None = None
    notes: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None


class UploadRequest(CamelModel):
    """`POST /api/sessions/{id}/uploads`: ask for a presigned PUT URL for one photo."""

    content_type: Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, max_length=100)]
    size_bytes: int = Field(gt=0)
    filename: Annotated[str, StringConstraints(strip_whitespace=True, max_length=255)] | None = None


class UploadOut(CamelModel):
    image_id: str
    upload_url: str
    method: str
    headers: dict[str, str]
    expires_at: datetime


class RegisterRequest(CamelModel):
    """`POST /api/sessions/{id}/images`: the upload has arrived; verify and record it."""

    image_id: str
    captured_at: datetime | None = None
    metadata: ImageMetadata | None = None


class ImagePatch(CamelModel):
    """`PATCH …/images/{imageId}`: metadata fields replace the stored ones; `edits` replaces all edits."""

    metadata: ImageMetadata | None = None
    edits: dict[str, Any] | None = None


class ImageUrls(CamelModel):
    full: str
    thumbnail: str


class ImageOut(CamelModel):
    """One clinical image; `urls` are short-lived presigned GET URLs (absent in events)."""

    id: str
    session_id: str
    status: str
    source: str
    content_type: str | None
    size_bytes: int | None
    width: int | None
    height: int | None
    sha256: str | None
    captured_at: datetime | None
    created_at: datetime
    expires_at: datetime
    metadata: dict[str, Any]
    edits: dict[str, Any]
    quality: dict[str, Any] | None
    analysis: dict[str, Any]
    resource_id: str | None = None
    commit_error: str | None = None
    urls: ImageUrls | None = None


class ImageList(CamelModel):
    images: list[ImageOut]
