"""Coded data: SNOMED CT concept id checks, and the curated body sites, laterality and views a clinician picks
for a photo (`consultcam/data/body-sites.json`, loaded and checked once, at import), plus the body sites of a
practice's extension file (`CONSULTCAM_BODY_SITES_EXTENSION`, checked the same way when the settings are
read). The server owns these terms: image metadata keeps a code or value, and every word said about it
(in the API, the pages, the ZIP, the record) is looked up here, never taken from a client.

Where things are:
- `snomed`: SNOMED CT concept id checks (SCTID, Verhoeff check digit);
- `model`: the checked data (`Terminology`, `BodySite`, `Laterality`, `View`) and the list's fixed values;
- `loading`: reading and checking the data file and an extension file (`TerminologyDataError`);
- `current`: the process's active list (`active`, `use`);
- `words`: the words people read (short body-site names, side and view words) for the pages and the API;
- `metadata`: a photo's codes looked up for the record (`photo_terms`), strict about unknown codes;
- `endpoints`, `schemas`: `GET /api/terminology/body-sites`.
"""

from __future__ import annotations

from consultcam.terminology.current import active, use
from consultcam.terminology.loading import TERMINOLOGY, load_extension
from consultcam.terminology.model import Terminology, TerminologyDataError
from consultcam.terminology.snomed import SNOMED_CT, is_snomed_concept_id
from consultcam.terminology.words import site_words

#: SNOMED CT qualifier values for laterality (code, preferred term), from the data file; issue 4's Medtech
#: mapping (consultcam/data/medtech.json) uses the same codes.
LATERALITY_CODES: dict[str, tuple[str, str]] = {
    side.value: (side.code, side.preferred_term)
    for side in TERMINOLOGY.laterality
    if side.code is not None and side.preferred_term is not None
}
#: The word a clinician puts before a body site ("Bilateral forearm"): 51440002's synonym "Bilateral".
LATERALITY_WORDS: dict[str, str] = {side.value: side.display for side in TERMINOLOGY.laterality if side.code}

#: What the rest of the app takes from the package; everything else is imported from its own module.
__all__ = [
    "LATERALITY_CODES",
    "LATERALITY_WORDS",
    "SNOMED_CT",
    "TERMINOLOGY",
    "Terminology",
    "TerminologyDataError",
    "active",
    "is_snomed_concept_id",
    "load_extension",
    "site_words",
    "use",
]
