"""Clinical images as FHIR R4 Media resources, and the transaction Bundle that carries a commit.

Sources: FHIR R4 Media (hl7.org/fhir/R4/media.html), Attachment (datatypes.html#Attachment), Bundle
transaction with conditional create (http.html#transaction, http.html#ccreate), SNOMED CT in FHIR
(snomedct.html). Validation uses fhir.resources' R4B models, whose Media, Bundle and datatypes are R4's.

Decisions a receiving EMR relies on:

* Identifier: every Media carries identifier {IMAGE_IDENTIFIER_SYSTEM, <image id>} and the Bundle entry is
  a conditional create on it (ifNoneExist), so committing the same photo twice never makes two records.
  The system is a URN rather than a URL because it must never change (a new system would defeat the
  de-duplication for every record already written) and must not depend on a hostname we might lose; the
  value is the image's uuid4, unique across every installation.
* Laterality: R4 Media has no laterality element. A CodeableConcept's codings must each stand for the
  same concept (datatypes.html#CodeableConcept), so the bare qualifier "7771000 |Left|" is NOT added as a
  second coding: it is not a body site. Instead bodySite carries (1) the body site coding the clinician
  chose (its code, with the list's term), (2) a SNOMED CT post-coordinated expression of the same site
  refined by laterality, "<site>:272741003=7771000" (snomedct.html allows expressions in Coding.code), and
  (3) text such as
  "Left forearm structure" for people and for systems that read only text.
* Words: every display and text about the site, side and view is the data file's
  (`consultcam.terminology.metadata.photo_terms`), looked up from the stored code and values. Words a
  client sent, or an older row kept, are never read; a code that is not in the list fails the photo.
* Times: createdDateTime is when the photo was taken (else when it was uploaded), keeping its offset;
  issued is the commit time. Naive datetimes are read as UTC, because SQLite hands them back naive.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.media import Media
from pydantic import ValidationError

from consultcam.commits.connectors.base import CommitContext, CommitItem
from consultcam.commits.dicom_iods import photo_iod
from consultcam.sessions.nhi import is_valid_nhi
from consultcam.terminology import LATERALITY_CODES, SNOMED_CT, is_snomed_concept_id
from consultcam.terminology.metadata import PhotoTerms, UnknownTerm, photo_terms

IMAGE_IDENTIFIER_SYSTEM = "urn:consultcam:image-id"
NHI_SYSTEM = "https://standards.digital.health.nz/ns/nhi-id"
MEDIA_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/media-type"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
LATERALITY_ATTRIBUTE = "272741003"  # SNOMED CT |Laterality (attribute)|

LATERALITY_VALUES = (*LATERALITY_CODES, "not-applicable")
_CONSENT_USE = {"clinical": "clinical care", "teaching": "teaching", "publication": "publication"}
_CONSENT_GIVER = {"patient": "the patient", "guardian": "the patient's guardian"}

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # FHIR R4 datatypes.html#id

__all__ = [
    "IMAGE_IDENTIFIER_SYSTEM",
    "NHI_SYSTEM",
    "SNOMED_CT",
    "assemble_transaction_bundle",
    "build_media",
    "build_transaction_bundle",
    "bundle_entry",
    "check_context",
    "conditional_create_entry",
    "is_sctid",
    "photo_name",
    "validate_body_site",
]


def build_media(context: CommitContext, item: CommitItem) -> dict[str, Any]:
    """One clinical image as a FHIR R4 Media resource (JSON dict), validated with fhir.resources.

    Shape: {resourceType "Media", identifier [{system IMAGE_IDENTIFIER_SYSTEM, value <image id>}],
    status "completed", type photo, modality XC (DMS for a dermoscopy view), view?, subject Patient (+ NHI
    identifier, display name), encounter, createdDateTime, issued, operator?, bodySite?, width, height,
    content Attachment {contentType "image/jpeg", data base64, size bytes, hash base64 SHA-1, title,
    creation}, note?}.
    Raises ValueError naming the photo when the input or the result is not valid (FHIR R4 Media).
    """
    check_context(context)
    try:
        image_id = _uuid(item.image_id, "image id")
        media = _media(context, item, image_id)
    except ValueError as exc:
        raise ValueError(f"{photo_name(item)}: {exc}") from exc
    _validate(Media, media, f"{photo_name(item)}: the Media resource")
    return media


def bundle_entry(context: CommitContext, item: CommitItem) -> dict[str, Any]:
    """A transaction Bundle entry that creates the item's Media unless one with its identifier exists.

    Shape: {fullUrl "urn:uuid:<image id>", resource Media, request {method "POST", url "Media",
    ifNoneExist "identifier=<IMAGE_IDENTIFIER_SYSTEM>|<image id>"}} (FHIR R4 http.html#ccreate).
    """
    return conditional_create_entry(build_media(context, item))


def conditional_create_entry(resource: dict[str, Any]) -> dict[str, Any]:
    """The transaction entry that creates `resource` (a Media or DocumentReference carrying the image
    identifier first) unless one of its type with that identifier exists."""
    image_id = resource["identifier"][0]["value"]
    return {
        "fullUrl": f"urn:uuid:{image_id}",
        "resource": resource,
        "request": {
            "method": "POST",
            "url": resource["resourceType"],
            "ifNoneExist": f"identifier={IMAGE_IDENTIFIER_SYSTEM}|{image_id}",
        },
    }


def assemble_transaction_bundle(context: CommitContext, entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Wrap entries from bundle_entry() in a FHIR R4 transaction Bundle and validate it.

    Bundle.identifier is the commit id (urn:uuid) and Bundle.timestamp the commit time, so an exported
    file names its commit attempt. Raises ValueError when there are no entries, a photo appears twice,
    or the Bundle is not valid (FHIR R4 Bundle, http.html#transaction).
    """
    check_context(context)
    if not entries:
        raise ValueError("there are no photos to commit")
    full_urls = [entry["fullUrl"] for entry in entries]
    if len(set(full_urls)) != len(full_urls):
        raise ValueError("the same photo appears twice in one commit")
    bundle = {
        "resourceType": "Bundle",
        "identifier": {
            "system": "urn:ietf:rfc:3986",
            "value": f"urn:uuid:{_uuid(context.commit_id, 'commit id')}",
        },
        "type": "transaction",
        "timestamp": _instant(context.committed_at, "commit time"),
        "entry": list(entries),
    }
    _validate(Bundle, bundle, "the transaction Bundle")
    return bundle


def build_transaction_bundle(context: CommitContext, items: Sequence[CommitItem]) -> dict[str, Any]:
    """A FHIR R4 transaction Bundle (JSON dict) with one conditional-create Media entry per item.

    Each entry: fullUrl "urn:uuid:<image id>", request POST Media with ifNoneExist
    "identifier=<IMAGE_IDENTIFIER_SYSTEM>|<image id>", so a repeated commit never duplicates (FHIR R4
    http.html#ccreate). Validated with fhir.resources before return; raises ValueError otherwise.
    """
    if not items:
        raise ValueError("there are no photos to commit")
    return assemble_transaction_bundle(context, [bundle_entry(context, item) for item in items])


def check_context(context: CommitContext) -> None:
    """Raise ValueError unless the commit context can be referenced from FHIR (ids, NHI, consent, times)."""
    if not context.patient.id:
        raise ValueError("the patient id is missing; reopen the session from the patient's record")
    _fhir_id(context.patient.id, "patient id")
    if not context.encounter_id:
        raise ValueError("the encounter id is missing; reopen the session from the patient's record")
    _fhir_id(context.encounter_id, "encounter id")
    if context.practitioner_id:
        _fhir_id(context.practitioner_id, "practitioner id")
    if context.patient.nhi:  # "" from a form means no NHI, as None does
        _nhi(context.patient.nhi)
    _uuid(context.commit_id, "commit id")
    _instant(context.committed_at, "commit time")
    if context.consent is not None:
        consent_statement(context.consent)


def validate_body_site(value: Any) -> dict[str, str]:
    """A stored body site as the record gets it: {system, code, display} with the data file's preferred
    term for the code (`terminology.metadata`); any `display` in `value` is ignored.

    Raises ValueError unless `value` is a SNOMED CT coding whose code is in the active list (the packaged
    body sites and a practice's extension): a well-formed id is not enough (a disorder, or an id never
    issued, passes the SCTID check digit but is no body site).
    """
    if not isinstance(value, dict):
        raise ValueError("body site must be a SNOMED CT coding {system, code}")
    terms = _terms({"bodySite": value})
    assert terms.site_coding is not None
    return terms.site_coding


def is_sctid(code: str) -> bool:
    """True when `code` is a well-formed SNOMED CT concept id (see `terminology.is_snomed_concept_id`)."""
    return is_snomed_concept_id(code)


# -- the resource -------------------------------------------------------------------------------------


def _media(context: CommitContext, item: CommitItem, image_id: str) -> dict[str, Any]:
    metadata = item.metadata or {}
    if not isinstance(metadata, dict):
        raise ValueError("image metadata must be an object")
    jpeg = item.jpeg
    if not isinstance(jpeg, bytes | bytearray) or not jpeg.startswith(b"\xff\xd8\xff"):
        raise ValueError("the image is not a JPEG")
    for dimension in ("width", "height"):
        pixels = getattr(item, dimension)
        if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels <= 0:
            raise ValueError(f"{dimension} must be a positive number of pixels, not {pixels!r}")
    label = optional_text(metadata.get("label"), "label")
    terms = _terms(metadata)
    created = _datetime(item.captured_at or item.created_at, "capture time")

    media: dict[str, Any] = {
        "resourceType": "Media",
        "identifier": [{"system": IMAGE_IDENTIFIER_SYSTEM, "value": image_id}],
        "status": "completed",
        "type": {"coding": [{"system": MEDIA_TYPE_SYSTEM, "code": "image", "display": "Image"}]},
        # The DICOM modality the dicomweb connector writes for the same photo (`dicom_iods.photo_iod`):
        # DMS for a dermoscopy view, XC for any other phone photo (DICOM PS3.16 CID 29).
        "modality": {"coding": [_modality(terms)]},
        "subject": _subject(context),
        # A launch's made-up encounter key names no Encounter in the record: no reference to it.
        **(
            {"encounter": {"reference": f"Encounter/{context.encounter_id}"}}
            if context.encounter_in_record
            else {}
        ),
        "createdDateTime": created,
        "issued": _instant(context.committed_at, "commit time"),
        "width": item.width,
        "height": item.height,
        "content": {
            "contentType": "image/jpeg",
            "data": base64.b64encode(jpeg).decode("ascii"),
            "size": len(jpeg),
            # FHIR R4 Attachment.hash is the base64 of the SHA-1 digest of the data.
            "hash": base64.b64encode(hashlib.sha1(jpeg, usedforsecurity=False).digest()).decode("ascii"),
            "title": label or "Clinical photograph",
            "creation": created,
        },
    }
    if terms.view is not None:
        media["view"] = {"text": terms.view.display}
    if context.practitioner_id:
        media["operator"] = {"reference": f"Practitioner/{context.practitioner_id}"}
    if body_site := _body_site(terms):
        media["bodySite"] = body_site
    notes = [label, optional_text(metadata.get("notes"), "notes")]
    if context.consent is not None:
        notes.append(consent_statement(context.consent))
    if annotations := [{"text": text} for text in notes if text]:
        media["note"] = annotations
    return media


def _subject(context: CommitContext) -> dict[str, Any]:
    patient = context.patient
    subject: dict[str, Any] = {"reference": f"Patient/{patient.id}"}
    if patient.nhi:
        subject["identifier"] = {"system": NHI_SYSTEM, "value": _nhi(patient.nhi)}
    if patient.name and patient.name.strip():
        subject["display"] = " ".join(patient.name.split())
    return subject


#: DICOM PS3.16 Annex D (DCM) display names of the modalities a photo can have.
_MODALITY_DISPLAY = {"XC": "External-camera Photography", "DMS": "Dermoscopy"}


def _modality(terms: PhotoTerms) -> dict[str, str]:
    code = photo_iod(terms).modality
    return {"system": DICOM_DCM, "code": code, "display": _MODALITY_DISPLAY[code]}


def _terms(metadata: dict[str, Any]) -> PhotoTerms:
    try:
        return photo_terms(metadata)
    except UnknownTerm as exc:
        raise ValueError(str(exc)) from None


def _body_site(terms: PhotoTerms) -> dict[str, Any] | None:
    """FHIR R4 Media.bodySite: the site's coding, its lateralised expression and readable text, all in the
    data file's words; the side alone is text only ("Left side")."""
    text = terms.site_text
    coding = terms.site_coding
    if coding is None:
        return {"text": text} if text else None
    if terms.side is None:
        return {"coding": [coding], "text": text}
    expression = {
        "system": SNOMED_CT,
        "code": f"{coding['code']}:{LATERALITY_ATTRIBUTE}={terms.side.code}",
        "display": text,
    }
    return {"coding": [coding, expression], "text": text}


def consent_statement(consent: Any) -> str:
    """The recorded consent as one sentence for a resource's note (FHIR R4 Media.note, DICOM Image
    Comments): `consent` is the session's {scope, givenBy, …} (other keys, such as recordedAt, are ignored).
    Raises ValueError for an unknown scope or giver."""
    if not isinstance(consent, dict):
        raise ValueError("consent must be an object {scope, givenBy}")
    scope, given_by = consent.get("scope"), consent.get("givenBy")
    if scope not in _CONSENT_USE:
        raise ValueError(f"consent scope must be one of {', '.join(_CONSENT_USE)}, not {scope!r}")
    if given_by is not None and given_by not in _CONSENT_GIVER:
        raise ValueError(f"consent givenBy must be one of {', '.join(_CONSENT_GIVER)}, not {given_by!r}")
    who = f" by {_CONSENT_GIVER[given_by]}" if given_by else ""
    return f"Consent to clinical photography given{who}; agreed use: {_CONSENT_USE[scope]}."


# -- small checks -------------------------------------------------------------------------------------


def _validate(model: type[Media] | type[Bundle], resource: dict[str, Any], what: str) -> None:
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        # loc and msg only: the input may be megabytes of base64 or patient details.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()[:5]
        )
        raise ValueError(f"{what} is not valid FHIR R4 ({problems})") from exc


def _uuid(value: Any, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"{what} {value!r} is not a uuid") from None


def _fhir_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not _FHIR_ID.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a FHIR id (1–64 letters, digits, '-' or '.')")


def _nhi(value: str) -> str:
    nhi = value.strip().upper() if isinstance(value, str) else ""
    if not is_valid_nhi(nhi):
        raise ValueError(f"NHI {value!r} is not a valid NHI number (format or check character)")
    return nhi


def optional_text(value: Any, what: str) -> str | None:
    """`value` trimmed, None when absent or blank; raises ValueError naming `what` when it is not text."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text")
    return value.strip() or None


def _datetime(value: Any, what: str) -> str:
    """FHIR dateTime with its offset (FHIR requires one whenever a time is given)."""
    if not isinstance(value, datetime):
        raise ValueError(f"{what} is missing")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.isoformat(timespec="seconds"))


def _instant(value: Any, what: str) -> str:
    """FHIR instant in UTC."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(UTC)
    return _datetime(value, what)


def photo_name(item: CommitItem) -> str:
    """ "photo '<label>'" or "photo <first 8 characters of the image id>": how messages name a photo."""
    label = item.metadata.get("label") if isinstance(item.metadata, dict) else None
    if isinstance(label, str) and label.strip():
        return f"photo {label.strip()!r}"
    return f"photo {str(item.image_id)[:8]}"
