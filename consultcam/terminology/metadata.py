"""The record's words for a photo's coded metadata, looked up from its codes in the active terminology.

Image metadata keeps a body site's SNOMED CT code, a laterality value and a view value. Whatever words a
client sent with them, or an older consultcam stored beside them, are never read: every writer (the API's
image shape, the ZIP's file names, FHIR Media and DocumentReference, DICOM CodeMeaning, the ALEX note) asks
`photo_terms` and speaks the data file's words. A code that is not in the list (a disorder, an id never
issued, a site of an extension the practice removed) is `UnknownTerm`, so it stops a commit rather than
reaching the record as a body site. The words the pages show (short names, "Left forearm") are
`terminology.words`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consultcam.terminology.current import active
from consultcam.terminology.model import BodySite, Laterality, Terminology, View
from consultcam.terminology.snomed import SNOMED_CT
from consultcam.terminology.words import site_words, with_side

PICK_A_SITE = "pick one from GET /api/terminology/body-sites (the chips on the pages)"

__all__ = ["PICK_A_SITE", "PhotoTerms", "UnknownTerm", "canonical_metadata", "photo_terms"]


class UnknownTerm(ValueError):
    """A stored or sent code or value that the terminology does not list; the message says which and what to
    do."""


@dataclass(frozen=True)
class PhotoTerms:
    """A photo's body site, side and view as the data file names them (each None when not chosen;
    `side` is also None for "not-applicable", which says nothing about a side)."""

    site: BodySite | None
    side: Laterality | None
    view: View | None

    @property
    def site_coding(self) -> dict[str, str] | None:
        """The body site as a FHIR R4 Coding {system, code, display} with the data file's preferred term."""
        if self.site is None:
            return None
        return {"system": SNOMED_CT, "code": self.site.code, "display": self.site.display}

    @property
    def site_text(self) -> str | None:
        """The site and side in words for people and for systems that read only text (FHIR R4
        CodeableConcept.text): "Left forearm structure", "Forearm structure", "Both sides"; None for neither.
        The side's word goes first, the site's preferred term after it (without "Structure of" or a
        semantic tag)."""
        if self.site is None:
            return self.side.without_site if self.side else None
        words = site_words(self.site.display)
        return with_side(self.side.display, words) if self.side else words

    @property
    def file_words(self) -> str:
        """The site and side for a file name: "left forearm", "back of trunk", "" for no site (the side
        alone names no photo). The trailing "structure" of a preferred term goes."""
        if self.site is None:
            return ""
        words = site_words(self.site.display)
        if words.lower().endswith(" structure"):
            words = words[: -len(" structure")]
        return f"{self.side.value} {words}" if self.side else words


def photo_terms(metadata: Mapping[str, Any] | None, terminology: Terminology | None = None) -> PhotoTerms:
    """The terms of stored or sent image metadata `{bodySite?: {code, …}, laterality?, view?, …}`, from
    `terminology` (default: the active one). Only `bodySite.code` and the values are read.

    Raises UnknownTerm when the body site is not a SNOMED CT coding of a listed code, or the laterality or
    view is not one of the defined values; the message names the field and says what to do.
    """
    terms = terminology or active()
    metadata = metadata or {}
    site = None
    if (coding := metadata.get("bodySite")) is not None:
        if not isinstance(coding, Mapping) or coding.get("system", SNOMED_CT) != SNOMED_CT:
            raise UnknownTerm(f"the body site must be a SNOMED CT coding: {PICK_A_SITE}")
        code = coding.get("code")
        site = terms.body_site(code.strip() if isinstance(code, str) else code)
        if site is None:
            raise UnknownTerm(
                f"body site code {code!r} is not one of the practice's body sites: choose the body site "
                f"again ({PICK_A_SITE})"
            )
    side = None
    if (value := metadata.get("laterality")) is not None:
        side = terms.side(value)
        if side is None:
            raise UnknownTerm(f"laterality {value!r} is not one of {_values(terms.laterality)}")
        if side.code is None:  # not-applicable: no side to say
            side = None
    view = None
    if (value := metadata.get("view")) is not None:
        view = terms.view(value)
        if view is None:
            raise UnknownTerm(f"view {value!r} is not one of {_values(terms.views)}")
    return PhotoTerms(site, side, view)


def canonical_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Stored metadata as the API shows it: the body site's display replaced by the data file's term. A
    code that is no longer listed keeps only {system, code}, so no client's words are shown as if they were
    the term; the commit then asks for the site to be chosen again."""
    result = dict(metadata or {})
    coding = result.get("bodySite")
    if isinstance(coding, Mapping):
        code = coding.get("code")
        site = active().body_site(code)
        result["bodySite"] = (
            {"system": SNOMED_CT, "code": site.code, "display": site.display}
            if site is not None
            else {"system": SNOMED_CT, "code": code}
        )
    return result


def _values(items: tuple[Laterality, ...] | tuple[View, ...]) -> str:
    return ", ".join(repr(item.value) for item in items)
