"""The `alex` connector's Media mode (`alex+https://…/FHIR?resource=Media`): the photo as a FHIR R4 Media, as
consultcam wrote it before Inbox Scan (a JPEG Medtech shows only as a "View link"; shared/DESIGN.md,
"Medtech ALEX facts").

* Media.identifier is the image id (as for every FHIR connector); the patient's NHI uses the NHI system.
* createdDateTime (and the attachment's creation) carry the Pacific/Auckland offset.
* Images over the limit are re-encoded to fit: JPEG quality stepped down, then the image scaled down
  (never up); width, height, size and hash describe the bytes actually sent.
* ALEX's inbox ignores Media.bodySite, so the label, body site words and laterality also go into the
  first note, e.g. "Lesion A — Upper arm structure (SNOMED CT 40983000), laterality: left (7771000)".
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from consultcam.commits.connectors.base import CommitContext, CommitItem, preparation_failed
from consultcam.commits.connectors.fhir import build_entries
from consultcam.images.processing.fitted import fit_jpeg
from consultcam.terminology import site_words
from consultcam.terminology.metadata import photo_terms

__all__ = ["local_time", "media_entries", "site_note"]


async def media_entries(
    context: CommitContext, items: Sequence[CommitItem], medtech: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The conditional-create Media entries in Medtech's terms (`medtech`: medtech.json): local times in
    Pacific/Auckland, a JPEG under the size limit, the site note first. Raises CommitFailed listing every
    photo's problem before anything is sent."""
    prepared: list[CommitItem] = []
    errors: dict[int, str] = {}
    for index, item in enumerate(items):
        try:
            prepared.append(await asyncio.to_thread(_prepare, item, medtech))
        except ValueError as exc:
            errors[index] = str(exc)
            prepared.append(item)
    if errors:
        raise preparation_failed(items, errors, "Medtech", "retake the photo or commit again")
    entries = await build_entries(context, prepared)
    for item, entry in zip(prepared, entries, strict=True):
        _add_site_note(entry["resource"], item.metadata or {})
    return entries


def _prepare(item: CommitItem, medtech: Mapping[str, Any]) -> CommitItem:
    """The item in Medtech's terms: local times in Pacific/Auckland, a JPEG under the size limit."""
    zone = ZoneInfo(medtech["time_zone"])
    jpeg, width, height = item.jpeg, item.width, item.height
    limit = int(medtech["max_image_bytes"])
    if isinstance(jpeg, bytes | bytearray) and len(jpeg) >= limit:
        fitted = fit_jpeg(bytes(jpeg), limit)
        jpeg, width, height = fitted.data, fitted.width, fitted.height
    return dataclasses.replace(
        item,
        jpeg=jpeg,
        width=width,
        height=height,
        captured_at=None if item.captured_at is None else local_time(item.captured_at, zone),
        created_at=local_time(item.created_at, zone),
    )


def site_note(metadata: Mapping[str, Any]) -> str | None:
    """Label, body site and laterality in words, for an inbox that ignores Media.bodySite.

    "Lesion A — Upper arm structure (SNOMED CT 40983000), laterality: left (7771000)"; None when there is
    nothing to say. The site's words and the side's code and word are the data file's, looked up from the
    stored code and value (`terminology.metadata.photo_terms`); raises ValueError for a code not listed.
    """
    terms = photo_terms(metadata)
    parts: list[str] = []
    label = metadata.get("label")
    if isinstance(label, str) and label.strip():
        parts.append(" ".join(label.split()))
    where = ""
    if terms.site is not None:
        where = f"{site_words(terms.site.display)} (SNOMED CT {terms.site.code})"
    if terms.side is not None:
        laterality = f"laterality: {terms.side.display.lower()} ({terms.side.code})"
        where = f"{where}, {laterality}" if where else laterality[:1].upper() + laterality[1:]
    if where:
        parts.append(where)
    return " — ".join(parts) or None


def _add_site_note(media: dict[str, Any], metadata: Mapping[str, Any]) -> None:
    """Put site_note() first in Media.note, in place of the label-only note it includes."""
    text = site_note(metadata)
    if not text:
        return
    notes = list(media.get("note") or [])
    label = metadata.get("label")
    if notes and isinstance(label, str) and notes[0].get("text") == label.strip():
        notes = notes[1:]
    media["note"] = [{"text": text}, *notes]


def local_time(moment: datetime, zone: ZoneInfo) -> datetime:
    """An aware datetime in `zone`; naive ones are read as UTC (as fhir_media does)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone)
