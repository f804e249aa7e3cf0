"""The `alex` connector's default: each photo filed in the patient's Medtech **Inbox Scan** folder as a FHIR
R4 DocumentReference (`POST DocumentReference`; TIFF for images, PDF for documents, each under 1 MB:
shared/DESIGN.md, "Medtech ALEX facts").

The DocumentReference: status current, type LOINC 72170-4 "Photographic image", identifier the image id
(IMAGE_IDENTIFIER_SYSTEM, as Media), `date` the commit time and the attachment's `creation` the capture time,
both with the Pacific/Auckland offset; subject Patient/{patient id} (with the NHI), author
Practitioner/{practitioner id} when the session has one; `description` the photo in words ("Lesion A — left
upper arm, close-up"), its notes and the session's consent (R4 DocumentReference has no `note`). The
attachment: the photo as a JPEG-compressed TIFF (or a PDF), `title` "01-lesion-a-left-upper-arm.tiff"
(position in the commit, then words), `size` and `hash` (base64 SHA-1, FHIR R4 Attachment.hash) of the bytes
sent. Every word comes from `consultcam.terminology`, never from a client.

Never twice, without conditional create (ALEX has none) or a search ALEX refuses: before writing, the one
search shape ALEX answers, `DocumentReference?patient.identifier=<NHI system>|<NHI>` (`alex_search.py`:
every `next` page, on the same server only), finds what an earlier attempt filed; a photo found there is
reported committed with that resource and not written again. A POST is never repeated blindly: after a
failure that may have been saved (no answer, 5xx, 429) the same search looks for it before the next try.

Without an NHI that search is impossible, so nothing can be checked: a commit's first attempt files the
photos (nothing of it can be in Medtech yet); a later attempt is refused before anything is sent, with what
to do (`no_nhi_retry_refused`), because the earlier one may have filed some of them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from fhir.resources.R4B.documentreference import DocumentReference
from pydantic import ValidationError

from consultcam.commits.connectors.alex_media import local_time
from consultcam.commits.connectors.alex_search import find_filed
from consultcam.commits.connectors.base import (
    CommitContext,
    CommitFailed,
    CommitItem,
    ImageResult,
    ProgressCallback,
    all_failed,
)
from consultcam.commits.connectors.fhir_client import (
    FhirFailure,
    FhirSession,
    id_of,
    json_body,
    raise_for_status,
)
from consultcam.commits.connectors.fhir_commit import compensate, delete_all
from consultcam.commits.fhir_document import PHOTOGRAPHIC_IMAGE
from consultcam.commits.fhir_media import (
    IMAGE_IDENTIFIER_SYSTEM,
    NHI_SYSTEM,
    consent_statement,
    optional_text,
)
from consultcam.images.processing.fitted import fit_pdf, fit_tiff
from consultcam.kit.http import RetryPolicy
from consultcam.kit.status import ImageCommitStatus
from consultcam.terminology.metadata import photo_terms
from consultcam.terminology.words import site_words, with_side

__all__ = [
    "FORMATS",
    "InboxDocument",
    "attachment_title",
    "commit_to_inbox",
    "describe",
    "inbox_document",
    "no_nhi_retry_refused",
]

#: Attachment formats Inbox Scan takes: format option → (MIME type, file extension).
FORMATS = {"tiff": ("image/tiff", "tiff"), "pdf": ("application/pdf", "pdf")}


@dataclass(frozen=True)
class InboxDocument:
    """One photo ready for Inbox Scan: the DocumentReference (JSON dict, validated) and its attachment's
    title, which the GP sees in Medtech and messages use to name it."""

    image_id: str
    title: str
    resource: dict[str, Any] = field(repr=False)


def inbox_document(
    context: CommitContext, item: CommitItem, position: int, medtech: Mapping[str, Any], fmt: str = "tiff"
) -> InboxDocument:
    """The photo at `position` (1-based) in the commit as an Inbox Scan DocumentReference (see the module
    docstring); `medtech` is medtech.json, `fmt` "tiff" or "pdf". CPU-bound (seconds for a large photo): run
    it off the event loop. Raises ValueError, in words, when the photo or its metadata cannot be used."""
    content_type, extension = FORMATS[fmt]
    image_id = str(uuid.UUID(str(item.image_id)))
    metadata = item.metadata if isinstance(item.metadata, dict) else {}
    zone = ZoneInfo(medtech["time_zone"])
    limit = int(medtech["max_image_bytes"])
    title = attachment_title(position, metadata, extension)
    words = describe(metadata, context.consent)
    if fmt == "pdf":
        fitted = fit_pdf(bytes(item.jpeg), limit, title=words.split(". ", 1)[0])
    else:
        fitted = fit_tiff(bytes(item.jpeg), limit)
    created = local_time(item.captured_at or item.created_at, zone).isoformat(timespec="seconds")
    subject: dict[str, Any] = {"reference": f"Patient/{context.patient.id}"}
    if context.patient.nhi:
        subject["identifier"] = {"system": NHI_SYSTEM, "value": context.patient.nhi.strip().upper()}
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "identifier": [{"system": IMAGE_IDENTIFIER_SYSTEM, "value": image_id}],
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [PHOTOGRAPHIC_IMAGE], "text": PHOTOGRAPHIC_IMAGE["display"]},
        "subject": subject,
        "date": local_time(context.committed_at, zone).isoformat(timespec="seconds"),
        "description": words,
        "content": [
            {
                "attachment": {
                    "contentType": content_type,
                    "data": base64.b64encode(fitted.data).decode("ascii"),
                    "size": len(fitted.data),
                    # FHIR R4 Attachment.hash: the base64 of the SHA-1 digest of the data.
                    "hash": base64.b64encode(
                        hashlib.sha1(fitted.data, usedforsecurity=False).digest()
                    ).decode("ascii"),
                    "title": title,
                    "creation": created,
                }
            }
        ],
    }
    if context.practitioner_id:
        resource["author"] = [{"reference": f"Practitioner/{context.practitioner_id}"}]
    try:
        DocumentReference.model_validate(resource)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()[:5]
        )
        raise ValueError(f"{title}: the DocumentReference is not valid FHIR R4 ({problems})") from exc
    return InboxDocument(image_id, title, resource)


def describe(metadata: Mapping[str, Any], consent: Any = None) -> str:
    """The photo in words for DocumentReference.description: label, side and body site, view, then the
    clinician's notes and the consent, e.g. "Lesion A — left upper arm, close-up. Consent to clinical
    photography given by the patient; agreed use: clinical care." Site, side and view words are the data
    file's (`photo_terms`: raises ValueError for a code not listed); "Clinical photograph" when nothing is
    known."""
    terms = photo_terms(metadata)
    place: str | None = None
    if terms.site is not None:
        site = site_words(terms.site.display)
        site = site[: -len(" structure")] if site.lower().endswith(" structure") else site
        place = with_side(terms.side.display, site) if terms.side else site
    elif terms.side is not None:
        place = terms.side.without_site
    where = [words for words in (place, terms.view.display if terms.view else None) if words]
    where = [where[0], *(_lower_first(words) for words in where[1:])] if where else []
    label = optional_text(metadata.get("label"), "label")
    head = ", ".join(where)
    if label:
        head = " ".join(label.split()) + (f" — {_lower_first(head)}" if head else "")
    sentences = [head or "Clinical photograph"]
    if notes := optional_text(metadata.get("notes"), "notes"):
        sentences.append(" ".join(notes.split()).rstrip("."))
    text = ". ".join(sentences) + "."
    if consent is not None:
        text += " " + consent_statement(consent)
    return text


def attachment_title(position: int, metadata: Mapping[str, Any], extension: str) -> str:
    """ "01-lesion-a-left-upper-arm.tiff": the position in the commit (two digits at least), the label and
    the side and site in lower-case ASCII letters, digits and hyphens (safe in any file system), "photo"
    when there are no words. A code not listed adds no words here (`describe` refuses it)."""
    words = [str(metadata.get("label") or "")]
    with contextlib.suppress(ValueError):
        words.append(photo_terms(metadata).file_words)
    ascii_text = unicodedata.normalize("NFKD", " ".join(words)).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:60].rstrip("-") or "photo"
    return f"{position:02d}-{slug}.{extension}"


def no_nhi_retry_refused(items: Sequence[CommitItem], titles: Sequence[str]) -> CommitFailed:
    """The CommitFailed for a later attempt of a commit for a patient without an NHI: ALEX finds filed
    photos only by NHI, so whether the earlier attempt filed some cannot be known; nothing is sent."""
    problem = (
        "this patient has no NHI number, and Medtech can look for photos already filed only by NHI, so "
        "consultcam cannot tell which of these photos the earlier, unfinished attempt filed in Inbox Scan"
    )
    return CommitFailed(
        f"The photos were not sent again: {problem}. Nothing was sent, so nothing is filed twice. Open the "
        f"patient's Inbox Scan in Medtech and look for {', '.join(titles)}; file any that are missing there "
        "by hand (download them from consultcam), then cancel this session.",
        all_failed(items, problem),
    )


# -- the commit --------------------------------------------------------------------------------------------


async def commit_to_inbox(
    fhir: FhirSession,
    context: CommitContext,
    items: Sequence[CommitItem],
    documents: Sequence[InboxDocument],
    progress: ProgressCallback,
    retry: RetryPolicy,
) -> list[ImageResult]:
    """File `documents` (one per item, in order) in Inbox Scan, every one or none: those found by the NHI
    search are reported with their existing resource and not written again; the others are created one at
    a time; when one fails for good, what this attempt created is deleted (`fhir_commit.compensate`, naming
    by id and title any document ALEX refuses to delete). Raises CommitFailed; FhirFailure from the first
    search (nothing written yet) is the caller's to report."""
    nhi = (context.patient.nhi or "").strip().upper() or None
    filed = await find_filed(fhir, nhi, [document.image_id for document in documents]) if nhi else {}
    created: list[str] = []
    found: dict[int, str] = {}
    names: dict[str, str] = {}
    results: list[ImageResult] = []
    for index, (item, document) in enumerate(zip(items, documents, strict=True)):
        resource_id = filed.get(document.image_id)
        if resource_id is not None:
            found[index] = resource_id
        else:
            try:
                resource_id = await _create(fhir, document, nhi, retry)
            except FhirFailure as failure:
                unsure = None
                if nhi is None:
                    unsure = (
                        f"{document.title} may have reached Medtech even so, and without an NHI consultcam "
                        "cannot check: look for it in the patient's Inbox Scan before committing again"
                    )
                await compensate(fhir, items, index, failure, created, found, names=names, unsure=unsure)
            created.append(resource_id)
            names[resource_id] = document.title
        results.append(ImageResult(item.image_id, ImageCommitStatus.COMMITTED, resource_id=resource_id))
        try:
            await progress(index + 1, len(items))
        except Exception:
            await delete_all(fhir, created)  # all or nothing, even when progress fails
            raise
    return results


async def _create(fhir: FhirSession, document: InboxDocument, nhi: str | None, retry: RetryPolicy) -> str:
    """POST the DocumentReference; "DocumentReference/<id>". After a failure that may have been saved, the
    NHI search looks for it before the next try (never a blind repeat); without an NHI it is final."""
    last: FhirFailure | None = None
    for tries in range(1, max(1, retry.attempts) + 1):
        try:
            return await _post(fhir, document)
        except FhirFailure as failure:
            if not failure.transient or nhi is None:
                raise
            last = failure
        await asyncio.sleep(min(retry.wait_max, retry.wait_initial * 2 ** (tries - 1)))
        landed = await find_filed(fhir, nhi, [document.image_id])
        if document.image_id in landed:
            return landed[document.image_id]
    assert last is not None
    raise last


async def _post(fhir: FhirSession, document: InboxDocument) -> str:
    """One POST DocumentReference (one try: a repeat could file the photo twice)."""
    response = await fhir.send("POST", f"{fhir.base_url}/DocumentReference", json=document.resource)
    raise_for_status(response, f"Medtech refused {document.title}")
    resource_id = fhir.client.resource_id(response.headers.get("location")) or id_of(json_body(response))
    if resource_id is None:
        raise FhirFailure(
            "Medtech saved a photo without saying where",
            f"{response.status_code} without a Location header for {document.title}",
            status=response.status_code,
        )
    return resource_id


def _lower_first(words: str) -> str:
    """ "Close-up" → "close-up"; an abbreviation ("MCP joint") stays as it is."""
    return words[:1].lower() + words[1:] if words[1:2].islower() else words
