"""The shape of the coded data: body sites, laterality and views as the data file holds them, once checked
(`terminology.loading`), and the rules every list obeys."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

#: How many body sites the curated list holds (issue 5: "the 24 most used body sites").
BODY_SITE_COUNT = 24
#: A laterality choice as image metadata stores it.
LateralityValue = Literal["left", "right", "bilateral", "not-applicable"]
#: A photo view as image metadata stores it.
ViewValue = Literal["overview", "close-up", "dermoscopy"]
#: The laterality choices, in the order the pages show them; "not-applicable" has no code.
LATERALITY_VALUES: tuple[LateralityValue, ...] = ("left", "right", "bilateral", "not-applicable")
#: The photo views, in the order the pages show them.
VIEW_VALUES: tuple[ViewValue, ...] = ("overview", "close-up", "dermoscopy")
#: The most body sites an extension file may add (the pages show every site as a chip or search result).
MAX_EXTENSION_SITES = 200


class TerminologyDataError(ValueError):
    """The body-site data file is missing, is not JSON, or breaks a rule; the message names the file and the
    entry at fault."""


@dataclass(frozen=True)
class BodySite:
    """One SNOMED CT body structure: concept id, its preferred term, and the short word a chip shows
    ("Forearm" for "Forearm structure"; not sent to the record)."""

    code: str
    display: str
    label: str


@dataclass(frozen=True)
class Laterality:
    """A laterality choice: `value` as stored in image metadata, the words shown, and (except for
    "not-applicable") the SNOMED CT qualifier value id with its preferred term and `without_site`, the words
    for the side when no body site is chosen ("Left side"; FHIR R4 Media.bodySite.text)."""

    value: LateralityValue
    display: str
    code: str | None = None
    preferred_term: str | None = None
    without_site: str | None = None


@dataclass(frozen=True)
class View:
    """A photo view: `value` as stored in image metadata and the words shown."""

    value: ViewValue
    display: str


@dataclass(frozen=True)
class Terminology:
    """The checked contents of the data file: its source (edition, how the ids were checked), the body sites
    (most used first; a practice's extension sites after the packaged ones), laterality and views.
    `extension_source` is the extension file's source, None without one."""

    source: dict[str, str]
    body_sites: tuple[BodySite, ...]
    laterality: tuple[Laterality, ...]
    views: tuple[View, ...]
    extension_source: dict[str, str] | None = None

    @cached_property
    def _sites_by_code(self) -> dict[str, BodySite]:
        return {site.code: site for site in self.body_sites}

    def body_site(self, code: object) -> BodySite | None:
        """The listed body site with this SNOMED CT concept id, or None (any other code, or not text)."""
        return self._sites_by_code.get(code) if isinstance(code, str) else None

    def side(self, value: object) -> Laterality | None:
        """The laterality choice with this value ("left" …), or None."""
        return next((side for side in self.laterality if side.value == value), None)

    def view(self, value: object) -> View | None:
        """The view with this value ("close-up" …), or None."""
        return next((view for view in self.views if view.value == value), None)
