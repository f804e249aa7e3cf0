"""The words people read for coded metadata, made here and only here: the pages show what the server sends.

Two forms of a body site, each with its use:
- the short name (`BodySite.label`, "Forearm"): what a GP reads on a chip, a card, a caption or a list of
  sites; it comes from the data file beside the code, so an extension's sites bring their own;
- the SNOMED CT preferred term ("Forearm structure"): kept in the record (FHIR R4 Coding.display, DICOM
  CodeMeaning, and the text that goes with a post-coordinated code); see `terminology.metadata`.

A side goes before the site as the data file says it ("Left forearm", "Bilateral hand"), or stands alone
without a site ("Left"). (The record says a side without a site in its own words, "Left side": FHIR R4
Media.bodySite.text, `terminology.metadata`.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consultcam.terminology.current import active
from consultcam.terminology.model import Terminology

_SEMANTIC_TAG = re.compile(r"\s*\([^()]*\)\s*$")


def site_words(display: str) -> str:
    """A SNOMED CT body-structure term in the words a GP would say: the semantic tag and a leading
    "Structure of" go, e.g. 'Structure of forearm (body structure)' → 'Forearm'. Only the prefix goes:
    "Retinal structure" must not become "Retinal"."""
    words = " ".join(_SEMANTIC_TAG.sub("", display).split())
    if words.lower().startswith("structure of "):
        words = words[len("structure of ") :]
    return words[:1].upper() + words[1:]


def with_side(side: str, site: str) -> str:
    """The side's word before a site's words: ("Left", "Forearm") → "Left forearm". The site's first letter
    goes to lower case unless the word is an abbreviation ("MCP joint" stays as it is)."""
    rest = site[:1].lower() + site[1:] if site[1:2].islower() else site
    return f"{side} {rest}"


@dataclass(frozen=True)
class MetadataWords:
    """What the pages show for a photo's metadata (each None when not chosen, or when the code is no longer
    listed): `body_site` the site's short name ("Forearm"); `laterality` the choice's words ("Left",
    "Not applicable"); `view` the view's words ("Close-up"); `place` the side and site together ("Left
    forearm", "Forearm", "Left"; "not-applicable" adds nothing)."""

    body_site: str | None = None
    laterality: str | None = None
    view: str | None = None
    place: str | None = None


def metadata_words(
    metadata: Mapping[str, Any] | None, terminology: Terminology | None = None
) -> MetadataWords:
    """The words of stored image metadata `{bodySite?: {code, …}, laterality?, view?, …}`, from
    `terminology` (default: the active one). Only `bodySite.code` and the values are read; a code or value
    the terminology does not list has no words (never an error: the API shows what it can, and a commit
    asks for the site again, see `terminology.metadata.photo_terms`)."""
    terms = terminology or active()
    metadata = metadata or {}
    coding = metadata.get("bodySite")
    site = terms.body_site(coding.get("code")) if isinstance(coding, Mapping) else None
    side = terms.side(metadata.get("laterality"))
    view = terms.view(metadata.get("view"))
    place = site.label if site else None
    if side is not None and side.code is not None:  # "not-applicable" says nothing about a side
        place = with_side(side.display, site.label) if site else side.display
    return MetadataWords(
        body_site=site.label if site else None,
        laterality=side.display if side else None,
        view=view.display if view else None,
        place=place,
    )
