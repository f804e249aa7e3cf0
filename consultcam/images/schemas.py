"""Request and response shapes for clinical images (DESIGN.md, "An image").

The server owns the terms of image metadata (issue 10): a body site is accepted only by a code of the
active list (`consultcam.terminology`: the packaged 24 and a practice's extension), and is stored with the
data file's preferred term. A `display` sent with it is optional and must be that term (case and spacing
aside): words that disagree with their code ("Right forearm" for 14975008 |Forearm structure|) are refused
with 422 rather than guessed at, because either the code or the words are wrong and only the clinician
knows which. Laterality and view take only their defined values.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    computed_field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from consultcam.schemas import CamelModel
from consultcam.terminology import active
from consultcam.terminology.metadata import PICK_A_SITE, canonical_metadata
from consultcam.terminology.schemas import MetadataWordsOut
from consultcam.terminology.words import metadata_words

#: C0 and C1 controls, and the Unicode bidirectional overrides and isolates that can make text read
#: differently from how it is stored (CVE-2021-42574, "Trojan Source"). Notes may keep tab and line breaks.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def no_control_characters(value: str) -> str:
    """`value` unless it holds a control character (one line of text: no tab or line break either).
    FHIR R4 string allows none below U+0020 but tab and line breaks; DICOM LO allows none."""
    if _CONTROL.search(value):
        raise PydanticCustomError(
            "control_character",
            "must not contain control characters (such as a tab, a line break or a direction override); "
            "type it again as plain text",
        )
    return value


def _text_lines(value: str) -> str:
    if _CONTROL_BUT_LINES.search(value):
        raise PydanticCustomError(
            "control_character",
            "must not contain control characters other than tabs and line breaks; type it again as plain "
            "text",
        )
    return value


ShortText = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=120), AfterValidator(no_control_characters)
]
NotesText = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=2000), AfterValidator(_text_lines)
]


#: A SNOMED CT term as a client may echo it (checked against the list's, never stored as sent).
Term = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Coding(CamelModel):
    """A body site: a SNOMED CT coding (FHIR R4 Coding) whose code is one of the active list's. `display` is
    optional on input and, when sent, must be the list's term for the code; the stored and returned display
    is always the list's."""

    system: Literal["http://snomed.info/sct"] = "http://snomed.info/sct"  # terminology.SNOMED_CT
    code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=18)]
    display: Term | None = None

    @model_validator(mode="after")
    def _listed(self) -> Coding:
        site = active().body_site(self.code)
        if site is None:
            raise PydanticCustomError(
                "unknown_body_site",
                "{code} is not one of the practice's body sites (a body structure from the curated list): "
                + PICK_A_SITE,
                {"code": self.code},
            )
        if self.display is not None and _words(self.display) != _words(site.display):
            raise PydanticCustomError(
                "display_mismatch",
                "the words '{display}' are not the term of {code} ('{term}'); send the code alone and the "
                "server fills in its term (the side goes in laterality)",
                {"display": self.display, "code": site.code, "term": site.display},
            )
        self.display = site.display
        return self


def _words(text: str) -> str:
    return " ".join(text.split()).casefold()


class ImageMetadata(CamelModel):
    """What the clinician says about a photo (FHIR R4 Media.bodySite, view, note). Body site, laterality and
    view take the values in consultcam/data/body-sites.json (`consultcam.terminology`), the chips the pages
    show; label and notes are plain text."""

    body_site: Coding | None = None
    laterality: Literal["left", "right", "bilateral", "not-applicable"] | None = None
    view: Literal["overview", "close-up", "dermoscopy"] | None = None
    label: ShortText | None = None
    notes: NotesText | None = None


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


#: The warning an image carries (in `quality.warnings`) when the phone's capture time was not believed.
CAPTURE_TIME_IGNORED = "capture-time-ignored"


class RegisterRequest(CamelModel):
    """`POST /api/sessions/{id}/images`: the upload has arrived; verify and record it. `capturedAt` is the
    phone's clock (RFC 3339 with an offset), believed only inside the session's window
    (`plausible_captured_at`)."""

    image_id: str
    captured_at: datetime | None = None
    metadata: ImageMetadata | None = None

    def plausible_captured_at(
        self, session_created_at: datetime, now: datetime, *, before: timedelta, skew: timedelta
    ) -> tuple[datetime | None, list[str]]:
        """The capture time to record, and the warnings to add to the image.

        Believed when it has an offset and lies between `session_created_at - before` (a photo queued on
        the phone, or taken just before the session was opened) and `now + skew` (clock skew). Otherwise it
        is not recorded, the photo keeps its upload time (`createdAt`, what the record says when there is
        no capture time) and the warning CAPTURE_TIME_IGNORED is returned: a phone with a wrong clock
        loses no photo, and no impossible time reaches the record. No capture time sent: (None, []).
        """
        captured = self.captured_at
        if captured is None:
            return None, []
        if captured.tzinfo is None or captured.utcoffset() is None:
            return None, [CAPTURE_TIME_IGNORED]
        earliest = _aware(session_created_at) - before
        if not earliest <= captured <= _aware(now) + skew:
            return None, [CAPTURE_TIME_IGNORED]
        return captured, []


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # SQLite gives naive UTC


class ImagePatch(CamelModel):
    """`PATCH …/images/{imageId}`: metadata fields replace the stored ones; `edits` replaces all edits."""

    metadata: ImageMetadata | None = None
    edits: dict[str, Any] | None = None


class ImageUrls(CamelModel):
    full: str
    thumbnail: str


class ImageOut(CamelModel):
    """One clinical image; `urls` are short-lived presigned GET URLs (absent in events). `metadata.bodySite`
    carries the list's term for its code, whatever a row stored before issue 10 holds
    (`terminology.metadata.canonical_metadata`); `words` says the metadata as the pages show it."""

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

    @field_validator("metadata")
    @classmethod
    def _terms(cls, value: dict[str, Any]) -> dict[str, Any]:
        return canonical_metadata(value)

    @computed_field  # type: ignore[prop-decorator]  # mypy does not follow pydantic's decorated property
    @property
    def words(self) -> MetadataWordsOut:
        """`metadata` in the words the pages show ("Forearm", "Left forearm", "Close-up"), made by the
        server from the codes (`terminology.words`), so no page keeps a table of its own."""
        words = metadata_words(self.metadata)
        return MetadataWordsOut(
            body_site=words.body_site, laterality=words.laterality, view=words.view, place=words.place
        )


class ImageList(CamelModel):
    images: list[ImageOut]
