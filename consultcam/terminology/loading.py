"""Reading and checking the body-site data file (`consultcam/data/body-sites.json`) and a practice's
extension file (`CONSULTCAM_BODY_SITES_EXTENSION`). A file that is not as described fails with
`TerminologyDataError` naming the file and the entry, so a bad edit stops the app at start-up rather than
putting a wrong code into a patient's record. The packaged file is read once, at import (`TERMINOLOGY`).
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from consultcam.terminology.model import (
    BODY_SITE_COUNT,
    LATERALITY_VALUES,
    MAX_EXTENSION_SITES,
    VIEW_VALUES,
    BodySite,
    Laterality,
    Terminology,
    TerminologyDataError,
    View,
)
from consultcam.terminology.snomed import SNOMED_CT, is_snomed_concept_id

#: Words that make a body site lateralised. Sites are laterality-free: the side is chosen on its own, so a
#: "Left forearm" site could contradict the laterality chosen with it.
_SIDE_WORD = re.compile(r"\b(left|right|bilateral|both)\b", re.IGNORECASE)


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
