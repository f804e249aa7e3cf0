"""The FHIR side of the Medtech ALEX double: what ALEX's `/FHIR/...` answers, as plain functions over a store.

Rules (from what Medtech told the seeds' product, January 2026: DESIGN "Medtech ALEX facts", issue 12):

* Searches: only `Patient?identifier=<system>|<value>` and `<Type>?patient.identifier=<NHI system>|<NHI>`;
  every other shape (`?identifier=`, `?patient=`, `?subject=`, extra parameters, none) → 403, as ALEX
  answered the seeds' product even with the right roles.
* `POST DocumentReference` (Inbox Scan): valid per fhir.resources (R4B), every attachment inline (no Binary),
  `image/tiff` or `application/pdf` whose bytes really are TIFF or PDF, under 1,000,000 bytes decoded; a
  `size` or `hash` given must describe those bytes (FHIR R4 Attachment: hash is the SHA-1 of the data).
* Status in its required binding and DocumentReference.content non-empty (fhir.resources checks neither).
* `POST Media`: `identifier` mandatory; the attachment inline, under 1,000,000 bytes, bytes as labelled.
* `subject.reference` must be `Patient/<a known id>`. Conditional create is not supported: `If-None-Exist` is
  ignored (a retried create duplicates, so consultcam must find earlier copies itself).
* Reads of a deleted resource answer 410, of an unknown one 404; deleting a deleted one 204, an unknown 404.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

NHI_SYSTEM = "https://standards.digital.health.nz/ns/nhi-id"
FHIR_JSON = "application/fhir+json"
MAX_ATTACHMENT = 1_000_000  # bytes, decoded: an attachment of this size or more is refused
MAX_BODY = 8_000_000  # bytes: a request body of this size or more is refused with 413
TYPES = ("Patient", "DocumentReference", "Media")
WRITABLE = ("DocumentReference", "Media")
_STATUSES = {  # required bindings: DocumentReferenceStatus, EventStatus
    "DocumentReference": ("current", "superseded", "entered-in-error"),
    "Media": (
        "preparation",
        "in-progress",
        "not-done",
        "on-hold",
        "stopped",
        "completed",
        "entered-in-error",
        "unknown",
    ),
}
_INBOX_SCAN_TYPES = {"image/tiff": "TIFF", "application/pdf": "PDF"}
_MEDIA_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/tiff": "TIFF"}
_MAGIC = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF-", "PDF"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF8", "GIF"),
)


class Answer(Exception):
    """An HTTP answer raised from anywhere in the double: status, JSON body (or None), extra headers."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def outcome(text: str, code: str = "processing", severity: str = "error") -> dict[str, Any]:
    """A FHIR R4 OperationOutcome with one issue saying `text`."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": text}],
    }


def refuse(status: int, text: str, code: str = "processing") -> Answer:
    """An Answer carrying an OperationOutcome (`raise refuse(422, "...")`)."""
    return Answer(status, outcome(text, code))


@dataclass
class Store:
    """The resources ALEX holds: {type: {id: resource}}, and the ids deleted so far (type, id)."""

    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {t: {} for t in TYPES})
    deleted: set[tuple[str, str]] = field(default_factory=set)

    def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Store `resource` under a new opaque hex id, with meta.versionId "1" and meta.lastUpdated."""
        rid = uuid.uuid4().hex
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        meta = {**(resource.get("meta") or {}), "versionId": "1", "lastUpdated": now}
        stored = {"resourceType": resource["resourceType"], "id": rid, "meta": meta}
        stored |= {name: value for name, value in resource.items() if name not in stored}
        self.resources.setdefault(resource["resourceType"], {})[rid] = stored
        return stored


def add_patient(store: Store, nhi: str, family: str, given: list[str], birth_date: str) -> str:
    """Store a Patient with an NHI identifier; returns its id."""
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": NHI_SYSTEM, "value": nhi}],
        "name": [{"family": family, "given": given}],
        "birthDate": birth_date,
    }
    return str(store.put(patient)["id"])


def capability_statement() -> dict[str, Any]:
    """ALEX's CapabilityStatement: read/create/delete/search, no transaction, no conditional create."""
    searches = {
        "Patient": [{"name": "identifier", "type": "token"}],
        "DocumentReference": [{"name": "patient.identifier", "type": "token"}],
        "Media": [{"name": "patient.identifier", "type": "token"}],
    }
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-14",
        "publisher": "Medtech ALEX test double",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {
                        "type": kind,
                        "interaction": [
                            {"code": c}
                            for c in (
                                ("read", "search-type")
                                if kind == "Patient"
                                else ("read", "create", "delete", "search-type")
                            )
                        ],
                        "conditionalCreate": False,
                        "searchParam": searches[kind],
                    }
                    for kind in TYPES
                ],
            }
        ],
    }


def read(store: Store, kind: str, rid: str) -> dict[str, Any]:
    """GET /FHIR/{kind}/{id}: the resource; 410 when deleted, 404 when never known."""
    resource = store.resources.get(kind, {}).get(rid)
    if resource is not None:
        return resource
    if (kind, rid) in store.deleted:
        raise refuse(410, f"{kind}/{rid} has been deleted", "deleted")
    raise refuse(404, f"{kind}/{rid} is not known", "not-found")


def delete(store: Store, kind: str, rid: str) -> None:
    """DELETE /FHIR/{kind}/{id}: 204 (also when already deleted, FHIR R4 http.html#delete); 404 unknown."""
    if kind not in WRITABLE:
        raise refuse(405, f"deleting a {kind} is not supported", "not-supported")
    if store.resources.get(kind, {}).pop(rid, None) is not None or (kind, rid) in store.deleted:
        store.deleted.add((kind, rid))
        return
    raise refuse(404, f"{kind}/{rid} is not known", "not-found")


def search(store: Store, kind: str, query: str, base: str) -> dict[str, Any]:
    """GET /FHIR/{kind}?{query}: a searchset Bundle for the two shapes ALEX answers; 403 for any other."""
    params = parse_qsl(query, keep_blank_values=True)
    shape = [name for name, _ in params]
    if kind == "Patient" and shape == ["identifier"]:
        system, bar, value = params[0][1].partition("|")
        if not bar:
            system, value = "", system
        ids = [
            rid
            for rid, patient in store.resources["Patient"].items()
            if any(
                i.get("value") == value and (not system or i.get("system") == system)
                for i in patient.get("identifier") or []
            )
        ]
    elif kind in WRITABLE and shape == ["patient.identifier"] and params[0][1].startswith(NHI_SYSTEM + "|"):
        nhi = params[0][1].partition("|")[2]
        patients = {f"Patient/{pid}" for pid in search_ids(store, nhi)}
        ids = [
            rid
            for rid, resource in store.resources[kind].items()
            if (resource.get("subject") or {}).get("reference") in patients
        ]
    else:
        raise refuse(
            403,
            f"search {kind}?{query} is not permitted: ALEX answers only "
            f"Patient?identifier=<system>|<value> and <Resource>?patient.identifier={NHI_SYSTEM}|<NHI>",
            "forbidden",
        )
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(ids),
        "link": [{"relation": "self", "url": f"{base}/{kind}?{query}"}],
        "entry": [
            {
                "fullUrl": f"{base}/{kind}/{rid}",
                "resource": store.resources[kind][rid],
                "search": {"mode": "match"},
            }
            for rid in ids
        ],
    }


def search_ids(store: Store, nhi: str) -> list[str]:
    """Ids of the patients whose NHI identifier is `nhi`."""
    return [
        pid
        for pid, patient in store.resources["Patient"].items()
        if any(
            i.get("system") == NHI_SYSTEM and i.get("value") == nhi for i in patient.get("identifier") or []
        )
    ]


def create(store: Store, kind: str, resource: Any) -> dict[str, Any]:
    """POST /FHIR/{kind} (DocumentReference or Media): checks ALEX's rules, stores, returns what it stored.

    Raises Answer: 400 not a resource of `kind`; 422 (OperationOutcome) invalid per fhir.resources R4B, an
    attachment not TIFF/PDF (DocumentReference) or not as labelled, not inline, ≥ 1,000,000 bytes, a wrong
    size or hash, Media without identifier, a subject that is not a known Patient.
    """
    if kind not in WRITABLE:
        raise refuse(405, f"creating a {kind} is not supported", "not-supported")
    if not isinstance(resource, dict) or resource.get("resourceType") != kind:
        raise refuse(400, f"POST /FHIR/{kind} takes a {kind} resource", "invalid")
    _validate(resource)
    if kind == "Media":
        if not resource.get("identifier"):
            raise refuse(422, "Media.identifier is mandatory", "required")
        _check_attachment("Media.content", resource["content"], _MEDIA_TYPES)
    else:
        for index, content in enumerate(resource["content"]):
            _check_attachment(
                f"DocumentReference.content[{index}].attachment", content["attachment"], _INBOX_SCAN_TYPES
            )
    reference = (resource.get("subject") or {}).get("reference") or ""
    patient_id = reference.removeprefix("Patient/")
    if not reference.startswith("Patient/") or patient_id not in store.resources["Patient"]:
        raise refuse(
            422, f"{kind}.subject must reference a known Patient (got {reference!r})", "business-rule"
        )
    return store.put(resource)


def _validate(resource: dict[str, Any]) -> None:
    """fhir.resources (R4B) structure, plus what it leaves out: the required status bindings and
    DocumentReference.content's 1..* (FHIR R4 documentreference.html, media.html)."""
    kind = resource["resourceType"]
    model = get_fhir_model_class(kind)
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise refuse(422, f"invalid {kind}: {problems}", "structure") from None
    if resource.get("status") not in _STATUSES[kind]:
        raise refuse(
            422, f"invalid {kind}: status must be one of {', '.join(_STATUSES[kind])}", "code-invalid"
        )
    if kind == "DocumentReference" and not resource["content"]:
        raise refuse(422, "invalid DocumentReference: content needs at least one attachment", "required")


def _check_attachment(where: str, attachment: dict[str, Any], allowed: dict[str, str]) -> None:
    content_type = str(attachment.get("contentType") or "").split(";")[0].strip().lower()
    if content_type not in allowed:
        raise refuse(
            422,
            f"{where}.contentType {content_type or 'missing'}: only {' or '.join(allowed)} accepted",
            "not-supported",
        )
    if not attachment.get("data"):
        raise refuse(
            422, f"{where}.data is required: ALEX takes attachments inline (no url, no Binary)", "required"
        )
    try:
        data = base64.b64decode(attachment["data"], validate=True)
    except (binascii.Error, ValueError):
        raise refuse(422, f"{where}.data is not base64", "structure") from None
    found = next((name for magic, name in _MAGIC if data.startswith(magic)), "unknown bytes")
    if found != allowed[content_type]:
        raise refuse(422, f"{where}: labelled {content_type} but the data is {found}", "not-supported")
    if len(data) >= MAX_ATTACHMENT:
        raise refuse(
            422,
            f"{where}: {len(data)} bytes; each attachment must be under {MAX_ATTACHMENT} bytes",
            "too-costly",
        )
    if "size" in attachment and attachment["size"] != len(data):
        raise refuse(422, f"{where}.size {attachment['size']} but the data is {len(data)} bytes", "value")
    if "hash" in attachment and attachment["hash"] != base64.b64encode(hashlib.sha1(data).digest()).decode():
        raise refuse(422, f"{where}.hash is not the base64 SHA-1 of the data", "value")
