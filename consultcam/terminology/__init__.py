"""Coded data: SNOMED CT concept id checks, and the curated body sites, laterality and views a clinician picks
for a photo (`consultcam/data/body-sites.json`, loaded and checked once, at import), plus the body sites of a
practice's extension file (`CONSULTCAM_BODY_SITES_EXTENSION`, checked the same way when the settings are
read). The server owns these terms: image metadata keeps a code or value, and every word said about it
(in the API, the ZIP, the record) is looked up here (`terminology.metadata`), never taken from a client.

Sources: SNOMED CT Technical Implementation Guide §6.1 (SCTID): 6–18 digits, the last a Verhoeff check digit,
the two before it the partition identifier (00 = concept in the international release short form,
10 = concept in an extension long form). The data file names the SNOMED CT edition its ids and terms were
checked against, and where.

A data file that is not as described fails at import with `TerminologyDataError` naming the file and the
entry, so a bad edit stops the app at start-up rather than putting a wrong code into a patient's record.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

SNOMED_CT = "http://snomed.info/sct"

#: How many body sites the curated list holds (issue 5: "the 24 most used body sites").
BODY_SITE_COUNT = 24
#: The laterality choices, in the order the pages show them; "not-applicable" has no code.
LATERALITY_VALUES = ("left", "right", "bilateral", "not-applicable")
#: The photo views, in the order the pages show them.
VIEW_VALUES = ("overview", "close-up", "dermoscopy")
#: The most body sites an extension file may add (the pages show every site as a chip or search result).
MAX_EXTENSION_SITES = 200
#: Words that make a body site lateralised. Sites are laterality-free: the side is chosen on its own, so a
#: "Left forearm" site could contradict the laterality chosen with it.
_SIDE_WORD = re.compile(r"\b(left|right|bilateral|both)\b", re.IGNORECASE)

_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_P1 = (1, 5, 7, 6, 2, 8, 3, 0, 9, 4)
# Row i of the position table is the permutation _P1 applied i times (Verhoeff 1969).
_P = [tuple(range(10))]
for _ in range(7):
    _P.append(tuple(_P1[v] for v in _P[-1]))


def verhoeff_valid(digits: str) -> bool:
    """True when the last digit of `digits` is the Verhoeff check digit of the rest."""
    check = 0
    for i, char in enumerate(reversed(digits)):
        check = _D[check][_P[i % 8][int(char)]]
    return check == 0


def is_snomed_concept_id(sctid: str) -> bool:
    """True when `sctid` is a well-formed SNOMED CT concept id (6–18 digits, no leading zero, concept
    partition 00 or 10, Verhoeff check digit correct). It does not prove the concept exists in a release."""
    return (
        sctid.isdigit()
        and 6 <= len(sctid) <= 18
        and sctid[0] != "0"
        and sctid[-3:-1] in ("00", "10")
        and verhoeff_valid(sctid)
    )


# -- the curated data ------------------------------------------------------------------------------------


_SEMANTIC_TAG = re.compile(r"\s*\([^()]*\)\s*$")


def site_words(display: str) -> str:
    """A SNOMED CT body-structure term in the words a GP would say: the semantic tag and a leading
    "Structure of" go, e.g. 'Structure of forearm (body structure)' → 'Forearm'. Only the prefix goes:
    "Retinal structure" must not become "Retinal"."""
    words = " ".join(_SEMANTIC_TAG.sub("", display).split())
    if words.lower().startswith("structure of "):
        words = words[len("structure of ") :]
    return words[:1].upper() + words[1:]


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

    value: str
    display: str
    code: str | None = None
    preferred_term: str | None = None
    without_site: str | None = None


@dataclass(frozen=True)
class View:
    """A photo view: `value` as stored in image metadata and the words shown."""

    value: str
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


def default_data_path() -> Path:
    """Where the packaged data file lives: `consultcam/data/body-sites.json`."""
    return Path(str(resources.files("consultcam").joinpath("data", "body-sites.json")))


def load_terminology(path: Path | str | None = None, *, extension: Path | str | None = None) -> Terminology:
    """Read and check the body-site data file (default: the packaged one) and, when given, a practice's
    extension file (`load_extension`).

    Rules: `source` names the SNOMED CT system, edition (`version`) and how the ids were `checked`; exactly
    `BODY_SITE_COUNT` body sites, each `{code, display, label}` with a SNOMED CT concept id (check digit
    included, `is_snomed_concept_id`), laterality-free words, no code or term twice; laterality exactly
    `LATERALITY_VALUES` in that order, coded ones with a concept id, preferred term and `withoutSite` words,
    "not-applicable" without a code; views exactly `VIEW_VALUES` in that order. Raises
    `TerminologyDataError` saying which file and entry is wrong.
    """
    file = Path(path) if path is not None else default_data_path()
    data = _read(file)
    try:
        terminology = _parse(data)
    except TerminologyDataError as exc:
        raise TerminologyDataError(f"{file}: {exc}") from None
    return load_extension(extension, terminology) if extension is not None else terminology


def load_extension(path: Path | str, base: Terminology | None = None) -> Terminology:
    """`base` (default: the packaged list) with the body sites of a practice's extension file appended.

    The file has the data file's shape without laterality or views (those are the API's fixed values):
    `{"source": {system, name, version, checked}, "bodySites": [{code, display, label}, …]}`, 1 to
    `MAX_EXTENSION_SITES` sites, checked as the packaged ones are (concept id with its Verhoeff check digit,
    laterality-free words) and none repeating a code or term of `base`. Raises `TerminologyDataError`
    naming the file and the entry.
    """
    base = TERMINOLOGY if base is None else base
    file = Path(path)
    data = _read(file)
    try:
        if not isinstance(data, dict):
            raise TerminologyDataError("the file must hold one JSON object")
        present = sorted({"laterality", "views"} & set(data))
        if present:
            raise TerminologyDataError(
                f"an extension may only add body sites; remove {' and '.join(present)} (they are fixed)"
            )
        source = _source(data.get("source"))
        sites = _body_sites(data.get("bodySites"), count=None, taken=base.body_sites)
    except TerminologyDataError as exc:
        raise TerminologyDataError(f"{file}: {exc}") from None
    return Terminology(
        source=base.source,
        body_sites=base.body_sites + sites,
        laterality=base.laterality,
        views=base.views,
        extension_source=source,
    )


def _read(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TerminologyDataError(f"{file}: the body-site data file is missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TerminologyDataError(f"{file}: cannot read the body-site data file as JSON ({exc})") from exc


def _parse(data: Any) -> Terminology:
    if not isinstance(data, dict):
        raise TerminologyDataError("the file must hold one JSON object")
    return Terminology(
        source=_source(data.get("source")),
        body_sites=_body_sites(data.get("bodySites"), count=BODY_SITE_COUNT),
        laterality=_laterality(data.get("laterality")),
        views=_views(data.get("views")),
    )


def _source(value: Any) -> dict[str, str]:
    source = _object(value, "source")
    for key in ("system", "name", "version", "checked"):
        _text(source.get(key), f"source.{key}")
    if source["system"] != SNOMED_CT:
        raise TerminologyDataError(f"source.system must be {SNOMED_CT!r}, not {source['system']!r}")
    return {k: v for k, v in source.items() if isinstance(v, str)}


def _body_sites(items: Any, *, count: int | None, taken: tuple[BodySite, ...] = ()) -> tuple[BodySite, ...]:
    """The sites of `items`: exactly `count` of them, or (None) 1 to MAX_EXTENSION_SITES added to `taken`."""
    entries = _list(items, "bodySites")
    if count is not None and len(entries) != count:
        raise TerminologyDataError(f"bodySites must list exactly {count} sites, not {len(entries)}")
    if count is None and not 1 <= len(entries) <= MAX_EXTENSION_SITES:
        raise TerminologyDataError(
            f"bodySites must list 1 to {MAX_EXTENSION_SITES} sites, not {len(entries)}"
        )
    sites: list[BodySite] = []
    codes: dict[str, str] = {site.code: f"packaged site {site.code}" for site in taken}
    terms: dict[str, str] = {site.display.casefold(): f"packaged site {site.code}" for site in taken}
    for i, item in enumerate(entries):
        where = f"bodySites[{i}]"
        entry = _object(item, where)
        site = BodySite(
            _concept_id(entry.get("code"), f"{where}.code"),
            _text(entry.get("display"), f"{where}.display"),
            _text(entry.get("label"), f"{where}.label"),
        )
        for seen, key, what in ((codes, site.code, "code"), (terms, site.display.casefold(), "display")):
            if key in seen:
                raise TerminologyDataError(
                    f"{where}.{what} {getattr(site, what)!r} repeats {seen[key]}: each site once"
                )
            seen[key] = f"bodySites[{i}]"
        for what in ("display", "label"):
            if _SIDE_WORD.search(getattr(site, what)):
                raise TerminologyDataError(
                    f"{where}.{what} {getattr(site, what)!r} names a side: list the laterality-free body "
                    "structure (laterality is chosen separately and post-coordinated)"
                )
        sites.append(site)
    return tuple(sites)


def _laterality(items: Any) -> tuple[Laterality, ...]:
    entries = [_object(item, f"laterality[{i}]") for i, item in enumerate(_list(items, "laterality"))]
    values = tuple(entry.get("value") for entry in entries)
    if values != LATERALITY_VALUES:
        raise TerminologyDataError(f"laterality values must be {list(LATERALITY_VALUES)}, not {list(values)}")
    result: list[Laterality] = []
    for i, entry in enumerate(entries):
        where = f"laterality[{i}]"
        display = _text(entry.get("display"), f"{where}.display")
        if entry["value"] == "not-applicable":
            if entry.get("code") is not None:
                raise TerminologyDataError(f"{where}: 'not-applicable' has no SNOMED CT code")
            result.append(Laterality(entry["value"], display))
            continue
        code = _concept_id(entry.get("code"), f"{where}.code")
        term = _text(entry.get("preferredTerm"), f"{where}.preferredTerm")
        alone = _text(entry.get("withoutSite"), f"{where}.withoutSite")
        result.append(Laterality(entry["value"], display, code, term, alone))
    return tuple(result)


def _views(items: Any) -> tuple[View, ...]:
    entries = [_object(item, f"views[{i}]") for i, item in enumerate(_list(items, "views"))]
    values = tuple(entry.get("value") for entry in entries)
    if values != VIEW_VALUES:
        raise TerminologyDataError(f"views values must be {list(VIEW_VALUES)}, not {list(values)}")
    return tuple(
        View(entry["value"], _text(entry.get("display"), f"views[{i}].display"))
        for i, entry in enumerate(entries)
    )


def _concept_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not is_snomed_concept_id(value):
        raise TerminologyDataError(
            f"{where} {value!r} is not a SNOMED CT concept id (6-18 digits, concept partition, Verhoeff "
            "check digit): copy the id again from the SNOMED CT browser"
        )
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TerminologyDataError(f"{where} must be non-empty text, not {value!r}")
    return value.strip()


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TerminologyDataError(f"{where} must be a JSON object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise TerminologyDataError(f"{where} must be a JSON list")
    return value


#: The packaged data, checked once at import.
TERMINOLOGY = load_terminology()

_active = TERMINOLOGY


def active() -> Terminology:
    """The terms this process accepts and speaks: the packaged list, plus the practice's extension once
    `use` has installed it (at start-up, from the settings)."""
    return _active


def use(terminology: Terminology) -> None:
    """Make `terminology` the process's terms (`Runtime.create` installs `Settings.terminology`), so
    requests, commits and the terminology endpoint all see the same list."""
    global _active
    _active = terminology


#: SNOMED CT qualifier values for laterality (code, preferred term), from the data file; issue 4's Medtech
#: mapping (consultcam/data/medtech.json) uses the same codes.
LATERALITY_CODES: dict[str, tuple[str, str]] = {
    side.value: (side.code, side.preferred_term)
    for side in TERMINOLOGY.laterality
    if side.code is not None and side.preferred_term is not None
}
#: The word a clinician puts before a body site ("Bilateral forearm"): 51440002's synonym "Bilateral".
LATERALITY_WORDS: dict[str, str] = {side.value: side.display for side in TERMINOLOGY.laterality if side.code}

__all__ = [
    "BODY_SITE_COUNT",
    "LATERALITY_CODES",
    "LATERALITY_VALUES",
    "LATERALITY_WORDS",
    "MAX_EXTENSION_SITES",
    "SNOMED_CT",
    "TERMINOLOGY",
    "VIEW_VALUES",
    "BodySite",
    "Laterality",
    "Terminology",
    "TerminologyDataError",
    "View",
    "active",
    "default_data_path",
    "is_snomed_concept_id",
    "load_extension",
    "load_terminology",
    "site_words",
    "use",
    "verhoeff_valid",
]
