"""The image as a FHIR R4 DocumentReference, for EMR inboxes that file documents rather than Media.

Source: FHIR R4 DocumentReference and Attachment; LOINC 72170-4 "Photographic image". The Media it mirrors is
built (and its input validated) by `consultcam.commits.fhir_media`.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from fhir.resources.R4B.documentreference import DocumentReference
from pydantic import ValidationError

from consultcam.commits.connectors.base import CommitContext, CommitItem
from consultcam.commits.fhir_media import build_media, conditional_create_entry, photo_name
from consultcam.images.processing.documents import convert_for_document

__all__ = ["PHOTOGRAPHIC_IMAGE", "build_document_reference", "document_reference_entry"]

LOINC = "http://loinc.org"
PHOTOGRAPHIC_IMAGE = {"system": LOINC, "code": "72170-4", "display": "Photographic image"}


def build_document_reference(context: CommitContext, item: CommitItem, fmt: str = "jpeg") -> dict[str, Any]:
    """The image as a FHIR R4 DocumentReference (type LOINC 72170-4 "Photographic image", status current).

    Carries the same identifier, subject, encounter and Attachment as build_media (which validates the
    input); author is the practitioner, date the commit time, description the label and body site. `fmt`
    "pdf" or "tiff" converts the attachment for inboxes that take only those (contentType, size and SHA-1
    hash follow the converted bytes; FHIR R4 Attachment). Raises ValueError when the result is not valid.
    """
    media = build_media(context, item)
    if fmt != "jpeg":
        title = media["content"].get("title", "Clinical photograph")
        converted, content_type = convert_for_document(item.jpeg, fmt, title=title)
        media["content"] = {
            **media["content"],
            "contentType": content_type,
            "data": base64.b64encode(converted).decode("ascii"),
            "size": len(converted),
            "hash": base64.b64encode(hashlib.sha1(converted).digest()).decode("ascii"),  # noqa: S324 (FHIR R4 Attachment.hash is SHA-1)
        }
    description = [note["text"] for note in media.get("note", [])[:1]]
    if site := media.get("bodySite", {}).get("text"):
        description.append(site)
    document: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "identifier": media["identifier"],
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [PHOTOGRAPHIC_IMAGE], "text": "Photographic image"},
        "subject": media["subject"],
        "date": media["issued"],
        "content": [{"attachment": media["content"]}],
        "context": {
            **({"encounter": [media["encounter"]]} if "encounter" in media else {}),
            "period": {"start": media["createdDateTime"]},
        },
    }
    if "operator" in media:
        document["author"] = [media["operator"]]
    if description:
        document["description"] = " — ".join(description)
    try:
        DocumentReference.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()[:5]
        )
        raise ValueError(
            f"{photo_name(item)}: the DocumentReference is not valid FHIR R4 ({problems})"
        ) from exc
    return document


def document_reference_entry(context: CommitContext, item: CommitItem, fmt: str = "jpeg") -> dict[str, Any]:
    """A transaction entry that creates the DocumentReference unless one with the image id exists."""
    return conditional_create_entry(build_document_reference(context, item, fmt))
