"""Response shapes for the coded data (CONTRACT issue 5: `GET /api/terminology/body-sites`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from consultcam.schemas import CamelModel
from consultcam.terminology.model import LateralityValue, ViewValue


class SourceOut(CamelModel):
    """Where the list comes from: the SNOMED CT edition its ids and terms were checked against, and how."""

    system: str
    name: str
    version: str
    release_date: str | None = None
    checked: str


class BodySiteOut(CamelModel):
    """A SNOMED CT body structure as a FHIR R4 Coding (concept id and preferred term) plus `label`, its short
    name, the one the pages show ("Forearm"; `terminology.words`); only `system`, `code` and `display`
    belong in image metadata."""

    system: Literal["http://snomed.info/sct"]
    code: str
    display: str
    label: str


class LateralityOut(CamelModel):
    """A laterality choice; "not-applicable" has no `system` or `code` (left out of the JSON). `display` goes
    before a site's short name ("Left forearm", `terminology.words.with_side`) or stands alone."""

    value: LateralityValue
    display: str
    system: Literal["http://snomed.info/sct"] | None = None
    code: str | None = None


class ViewOut(CamelModel):
    """A photo view: the value image metadata stores and its words."""

    value: ViewValue
    display: str


class BodySitesOut(CamelModel):
    """The curated choices: 24 body sites (most used first) and a practice's extension sites after them,
    laterality and views. `extension` is the extension file's source (left out without one)."""

    source: SourceOut
    extension: SourceOut | None = None
    body_sites: list[BodySiteOut] = Field(min_length=1)
    laterality: list[LateralityOut]
    views: list[ViewOut]


class MetadataWordsOut(CamelModel):
    """A photo's metadata in the words the pages show (`terminology.words.metadata_words`), each null when
    not chosen or no longer listed: `body_site` the site's short name ("Forearm"), `laterality` ("Left",
    "Not applicable"), `view` ("Close-up"), `place` the side and site together ("Left forearm"; without a
    site, the side alone: "Left")."""

    body_site: str | None = None
    laterality: str | None = None
    view: str | None = None
    place: str | None = None
