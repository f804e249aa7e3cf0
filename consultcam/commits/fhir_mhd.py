"""A commit as an IHE MHD *Provide Document Bundle* (ITI-65), Minimal Metadata: what document registries take.

Sources: IHE ITI MHD 4.2.x (profiles.ihe.net/ITI/MHD): ITI-65 §2:3.65.4.1.2 (message semantics), the
StructureDefinitions IHE.MHD.Minimal.ProvideBundle, IHE.MHD.Minimal.SubmissionSet (List),
IHE.MHD.Minimal.DocumentReference, IHE.MHD.UniqueIdIdentifier and IHE.MHD.EntryUUID.Identifier; ITI TF-3
§4.5 (identifiers as `urn:ietf:rfc:3986`); FHIR R4 Bundle transaction, Binary and Attachment; ITU-T X.667
§6.3 (an OID `2.25.<integer>` from a UUID).

Why Minimal Metadata rather than Comprehensive: the Comprehensive (XDS-on-FHIR) profiles require the class,
confidentiality, format, language, facility type and practice setting codes of an XDS Affinity Domain, each
domain's own value sets. consultcam knows none of them, and guessing would get the Bundle refused. Minimal
metadata asks for what we know and lets us add the rest we know (type, subject, author, encounter, body site).

The Bundle (entry order: the SubmissionSet, one DocumentReference per photo, one Binary per photo):

* SubmissionSet `List`: code `submissionset`, status current, mode working, identifiers uniqueId
  (`urn:oid:2.25.…` of the commit id, use usual) and entryUUID (`urn:uuid:<commit id>`, use official), the
  `ihe-sourceId` extension, subject the Patient, date the commit time, source the practitioner, one entry per
  DocumentReference.
* `DocumentReference`: masterIdentifier the document's uniqueId (`urn:oid:2.25.…` of the image id),
  identifiers entryUUID (a `urn:uuid:` derived from the image id) and consultcam's image id, status
  current, type LOINC 72170-4, subject, date, author, description; `content.attachment` with
  contentType, url (`urn:uuid:` of the Binary in the Bundle), size and SHA-1 hash of the raw JPEG, title,
  creation, and no `data` (MHD forbids it); `content.format` IHE `urn:ihe:iti:xds:2017:mimeTypeSufficient`;
  context with the encounter, the period (capture time) and the body site as `context.event` (SNOMED CT,
  the data file's words: R4 DocumentReference has no bodySite, and the eventCodeList is where XDS-I puts
  anatomic regions).
* `Binary`: the JPEG (contentType, data base64), securityContext the Patient.

Binaries outside the Bundle (`referencing_binaries`): where the Bundle is larger than the server takes in
one request, each photo is uploaded first as a Binary of its own and the Bundle's DocumentReferences point
at it (`Binary/<id>` on the server), with no Binary entries and no conditional creates. ITI-65
§2:3.65.4.1.2 allows "zero or more Binary Resources" in the Bundle and the Minimal ProvideBundle profile's
Documents slice is 0..*, so meta.profile stays MINIMAL_PROVIDE_BUNDLE; but the same section says "When the
DocumentReference.content.attachment.url points at a Binary Resource, the Binary Resource shall be in the
Bundle": this variant departs from that sentence (docs/connectors.md). It is not the UnContained Reference
Option (MHD §1:33.2.3), which is about the author, authenticator, sourcePatientInfo and List.source being
references rather than contained resources; §2:3.65.4.1.2.1 says "UnContained Minimal is the same as Minimal
Metadata".

Repeated commits: ids are derived from the commit and image ids, so an attempt writes the same Bundle, and
the SubmissionSet and DocumentReferences are conditional creates on their identifiers (`ifNoneExist`).
"""

from __future__ import annotations

import base64
import copy
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.list import List as FhirList
from pydantic import ValidationError

from consultcam.commits.connectors.base import CommitContext, CommitItem
from consultcam.commits.fhir_document import PHOTOGRAPHIC_IMAGE
from consultcam.commits.fhir_media import IMAGE_IDENTIFIER_SYSTEM, build_media, check_context, photo_name

__all__ = [
    "FORMAT_MIME_SUFFICIENT",
    "MHD_LIST_TYPES",
    "MINIMAL_PROVIDE_BUNDLE",
    "RFC3986",
    "SOURCE_ID_EXTENSION",
    "binary_contents",
    "build_provide_bundle",
    "document_entries",
    "referencing_binaries",
    "source_id_for",
    "uuid_oid",
]

MHD = "https://profiles.ihe.net/ITI/MHD"
#: Bundle.meta.profile for the Minimal Metadata actor (ITI-65 §2:3.65.4.1.2.1).
MINIMAL_PROVIDE_BUNDLE = f"{MHD}/StructureDefinition/IHE.MHD.Minimal.ProvideBundle"
MHD_LIST_TYPES = f"{MHD}/CodeSystem/MHDlistTypes"
SOURCE_ID_EXTENSION = f"{MHD}/StructureDefinition/ihe-sourceId"
#: ITI TF-3 §4.5.1: OIDs and UUIDs in a FHIR Identifier have the system urn:ietf:rfc:3986.
RFC3986 = "urn:ietf:rfc:3986"
FORMAT_CODES = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"
FORMAT_MIME_SUFFICIENT = {
    "system": FORMAT_CODES,
    "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient",
    "display": "mimeType Sufficient",
}
# A fixed namespace for the uuid5 ids of the Binary entries and of the source id (never change it: a retry
# must find the same ids).
_NAMESPACE = uuid.UUID("6f1c5e0a-3b2d-5a8e-9c47-2d1b8e4f7a90")


def build_provide_bundle(
    context: CommitContext, items: Sequence[CommitItem], *, source_id: str | None = None
) -> dict[str, Any]:
    """The ITI-65 Provide Document Bundle (JSON dict) for one commit: a `transaction` Bundle with
    meta.profile MINIMAL_PROVIDE_BUNDLE, the SubmissionSet List, then one DocumentReference per item (in
    order), then one Binary per item (see the module docstring for every element). `source_id` is the
    SubmissionSet's sourceId, an OID (`urn:oid:…`); by default `source_id_for(context)`.

    Every resource is validated with fhir.resources (R4B, whose List, DocumentReference, Binary and Bundle are
    R4's). Raises ValueError naming the photo (or the commit) when the input or the result is not valid.
    """
    if not items:
        raise ValueError("there are no photos to commit")
    check_context(context)
    documents = [document_entries(context, item) for item in items]
    submission_set = _submission_set(context, [document for document, _ in documents], source_id)
    bundle = {
        "resourceType": "Bundle",
        "meta": {"profile": [MINIMAL_PROVIDE_BUNDLE]},
        "identifier": {"system": RFC3986, "value": f"urn:uuid:{_uuid(context.commit_id)}"},
        "type": "transaction",
        "timestamp": submission_set["resource"]["date"],
        "entry": [submission_set, *(d for d, _ in documents), *(b for _, b in documents)],
    }
    full_urls = [entry["fullUrl"] for entry in bundle["entry"]]
    if len(set(full_urls)) != len(full_urls):
        raise ValueError("the same photo appears twice in one commit")
    _validate(Bundle, bundle, "the MHD Provide Document Bundle")
    return bundle


def document_entries(context: CommitContext, item: CommitItem) -> tuple[dict[str, Any], dict[str, Any]]:
    """(DocumentReference entry, Binary entry) for one photo: both `POST`, fullUrl `urn:uuid:`; the
    DocumentReference's attachment.url is the Binary's fullUrl and it is created unless one with the image id
    exists (ifNoneExist). Raises ValueError naming the photo (from `build_media`'s checks, or validation)."""
    media = build_media(context, item)  # checks the photo and its metadata; the record's words
    image_id = media["identifier"][0]["value"]
    binary_url = _derived("binary", image_id)
    attachment = {key: value for key, value in media["content"].items() if key != "data"}
    attachment["url"] = binary_url
    document: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "masterIdentifier": _unique_id(image_id),
        "identifier": [
            {"use": "official", "system": RFC3986, "value": _derived("entry", image_id)},  # entryUUID
            {"system": IMAGE_IDENTIFIER_SYSTEM, "value": image_id},
        ],
        "status": "current",
        "type": {"coding": [PHOTOGRAPHIC_IMAGE], "text": PHOTOGRAPHIC_IMAGE["display"]},
        "subject": media["subject"],
        "date": media["issued"],
        "content": [{"attachment": attachment, "format": FORMAT_MIME_SUFFICIENT}],
        "context": {"period": {"start": media["createdDateTime"]}},
    }
    if "operator" in media:
        document["author"] = [media["operator"]]
    if "encounter" in media:
        document["context"]["encounter"] = [media["encounter"]]
    site = media.get("bodySite")
    if site and site.get("coding"):
        document["context"]["event"] = [site]
    description = [note["text"] for note in media.get("note", [])[:1]]
    if site and site.get("text"):
        description.append(site["text"])
    if description:
        document["description"] = " — ".join(description)
    binary = {
        "resourceType": "Binary",
        "contentType": media["content"]["contentType"],
        "securityContext": {"reference": media["subject"]["reference"]},
        "data": media["content"]["data"],
    }
    what = photo_name(item)
    _validate(DocumentReference, document, f"{what}: the DocumentReference")
    _validate(Binary, binary, f"{what}: the Binary")
    return (
        {
            "fullUrl": f"urn:uuid:{image_id}",
            "resource": document,
            "request": {
                "method": "POST",
                "url": "DocumentReference",
                "ifNoneExist": f"identifier={IMAGE_IDENTIFIER_SYSTEM}|{image_id}",
            },
        },
        {"fullUrl": binary_url, "resource": binary, "request": {"method": "POST", "url": "Binary"}},
    )


def binary_contents(bundle: dict[str, Any]) -> list[tuple[str, bytes, str]]:
    """(the Binary entry's fullUrl, its raw bytes, its contentType) for each DocumentReference of the
    Provide Document Bundle `bundle` (from `build_provide_bundle`), in DocumentReference (item) order: the
    Binary each one's attachment.url points at. Raises ValueError when one points at no Binary entry."""
    binaries = {e["fullUrl"]: e["resource"] for e in bundle["entry"] if e["request"]["url"] == "Binary"}
    contents = []
    for entry in bundle["entry"]:
        if entry["request"]["url"] != "DocumentReference":
            continue
        url = entry["resource"]["content"][0]["attachment"].get("url")
        if url not in binaries:
            raise ValueError("a DocumentReference's attachment.url points at no Binary in the Bundle")
        binary = binaries[url]
        contents.append((url, base64.b64decode(binary["data"]), binary["contentType"]))
    return contents


def plain_creates(bundle: dict[str, Any]) -> dict[str, Any]:
    """A copy of the Provide Document Bundle `bundle` whose entries are plain creates (no ifNoneExist), for a
    server that takes only short transactions of conditional creates (Medplum: 8 entries); the sender keeps
    it single by looking up the SubmissionSet instead (`mhd_limits.py`)."""
    result = copy.deepcopy(bundle)
    for entry in result["entry"]:
        entry["request"].pop("ifNoneExist", None)
    return result


def referencing_binaries(bundle: dict[str, Any], uploaded: Mapping[str, str]) -> dict[str, Any]:
    """The Provide Document Bundle `bundle` without its Binary entries, for Binaries uploaded before it:
    `uploaded` maps each Binary entry's fullUrl to the Binary on the server ("Binary/<id>"), which becomes
    the DocumentReference's attachment.url (contentType, size, hash and title unchanged: the bytes are the
    same). Every entry is a plain create (no ifNoneExist): servers bound the size of transactions with
    conditional creates (Medplum: 8 entries), and the sender keeps it single by looking up the SubmissionSet
    instead (`mhd_limits.py`). `bundle` is not changed.

    Raises ValueError when a Binary entry has no mapping, or the result is not valid FHIR R4. The departure
    from ITI-65 §2:3.65.4.1.2 this makes is in the module docstring."""
    binaries = {entry["fullUrl"] for entry in bundle["entry"] if entry["request"]["url"] == "Binary"}
    if not binaries <= uploaded.keys():
        raise ValueError("a Binary of the Bundle was not uploaded")
    result = {key: value for key, value in bundle.items() if key != "entry"}
    entries = []
    for entry in bundle["entry"]:
        if entry["fullUrl"] in binaries:
            continue
        entry = copy.deepcopy(entry)
        entry["request"].pop("ifNoneExist", None)
        if entry["request"]["url"] == "DocumentReference":
            attachment = entry["resource"]["content"][0]["attachment"]
            attachment["url"] = uploaded[attachment["url"]]
        entries.append(entry)
    result["entry"] = entries
    _validate(Bundle, result, "the MHD Provide Document Bundle")
    return result


def source_id_for(context: CommitContext) -> str:
    """The SubmissionSet sourceId (`ihe-sourceId`, an OID): `urn:oid:2.25.…` of a uuid5 of the facility id
    (or of consultcam itself without one), the same for every commit from that facility, so a registry can
    tell its submissions apart (MHD IHE.MHD.Minimal.SubmissionSet: sourceId 1..1)."""
    return uuid_oid(uuid.uuid5(_NAMESPACE, f"source:{context.facility_id or 'consultcam'}"))


def uuid_oid(value: uuid.UUID | str) -> str:
    """`urn:oid:2.25.<the UUID as one integer>` (ITU-T X.667 §6.3): an OID without a registered root,
    at most 48 characters. Raises ValueError when `value` is not a UUID."""
    return f"urn:oid:2.25.{_uuid(value).int}"


# -- the SubmissionSet ----------------------------------------------------------------------------------


def _submission_set(
    context: CommitContext, documents: Sequence[dict[str, Any]], source_id: str | None
) -> dict[str, Any]:
    commit_id = _uuid(context.commit_id)
    source = source_id or source_id_for(context)
    if not source.startswith("urn:oid:"):
        raise ValueError("the SubmissionSet sourceId must be an OID (urn:oid:…)")
    first = documents[0]["resource"]
    submission_set: dict[str, Any] = {
        "resourceType": "List",
        "extension": [{"url": SOURCE_ID_EXTENSION, "valueIdentifier": {"system": RFC3986, "value": source}}],
        "identifier": [
            {"use": "usual", "system": RFC3986, "value": uuid_oid(commit_id)},  # uniqueId
            {"use": "official", "system": RFC3986, "value": f"urn:uuid:{commit_id}"},  # entryUUID
        ],
        "status": "current",
        "mode": "working",
        "title": "Clinical photographs",
        "code": {"coding": [{"system": MHD_LIST_TYPES, "code": "submissionset"}]},
        "subject": first["subject"],
        "date": first["date"],
        "entry": [{"item": {"reference": document["fullUrl"]}} for document in documents],
    }
    if "author" in first:
        submission_set["source"] = first["author"][0]
    _validate(FhirList, submission_set, "the SubmissionSet List")
    return {
        "fullUrl": _derived("submissionset", commit_id),
        "resource": submission_set,
        "request": {
            "method": "POST",
            "url": "List",
            "ifNoneExist": f"identifier={RFC3986}|urn:uuid:{commit_id}",
        },
    }


# -- small checks ---------------------------------------------------------------------------------------


def _unique_id(image_id: str) -> dict[str, Any]:
    """IHE.MHD.UniqueIdIdentifier (MHD 4.2.x): use usual, system urn:ietf:rfc:3986, an OID urn."""
    return {"use": "usual", "system": RFC3986, "value": uuid_oid(image_id)}


def _derived(what: str, value: Any) -> str:
    """`urn:uuid:` of a uuid5 of `what` and `value`: the same for every attempt of a commit. An identifier's
    value is never an entry's fullUrl, because some servers replace a fullUrl wherever its text appears."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{what}:{value}')}"


def _uuid(value: Any) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a uuid") from None


def _validate(model: Any, resource: dict[str, Any], what: str) -> None:
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        # loc and msg only: the input may be megabytes of base64 or patient details.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()[:5]
        )
        raise ValueError(f"{what} is not valid FHIR R4 ({problems})") from exc
