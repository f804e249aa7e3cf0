"""The FHIR side of the SMART EHR double: a small FHIR R4 server over an in-memory store.

Rules (FHIR R4 http.html; SMART App Launch 2.x scopes-and-launch-context.html):

* Reads `Patient/{id}`, `Encounter/{id}`, `Practitioner/{id}` need a read scope for the type (`.rs`/`.r` v2,
  `.read`/`.*` v1, or `*`); with a `patient/` scope only the token's patient and its encounters (403).
* Creates (`POST Media`, `POST DocumentReference`, or a transaction Bundle `POST {iss}` of such creates)
  need a create scope (`.c` v2, `.write` v1): 403 otherwise; must be valid per fhir.resources R4B (422);
  subject must be the token's patient (403). `If-None-Exist: identifier=<system>|<value>` (also
  `ifNoneExist` in a Bundle entry): one match → 200 with it, none → create, more → 412.
  A transaction is all or nothing.
* Search `GET {Type}?identifier=<system>|<value>` (and `&patient=<id>`); `DELETE {Type}/{id}` (204, 404).
* Media may be switched off (`media=False`): absent from the CapabilityStatement, `POST Media` 404.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

NHI_SYSTEM = "https://standards.digital.health.nz/ns/nhi-id"
FHIR_JSON = "application/fhir+json"
READABLE = ("Patient", "Encounter", "Practitioner", "Media", "DocumentReference")
WRITABLE = ("Media", "DocumentReference")


class Answer(Exception):
    """An HTTP answer raised from anywhere in the double: status, body (JSON, or str for HTML), headers."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def outcome(text: str, code: str = "processing") -> dict[str, Any]:
    """A FHIR R4 OperationOutcome with one error issue saying `text`."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }


def refuse(status: int, text: str, code: str = "processing") -> Answer:
    return Answer(status, outcome(text, code))


@dataclass
class Store:
    """{type: {id: resource}}; ids are short numbers as strings."""

    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {t: {} for t in READABLE})
    media: bool = True

    def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        kind = resource["resourceType"]
        rid = resource.get("id") or uuid.uuid4().hex[:12]
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        stored = {"resourceType": kind, "id": rid, "meta": {"versionId": "1", "lastUpdated": now}}
        stored |= {k: v for k, v in resource.items() if k not in stored}
        self.resources.setdefault(kind, {})[rid] = stored
        return stored


def allows(scopes: list[str], kind: str, action: str) -> str | None:
    """The scope context ("patient"/"user") that lets a token do `action` ("r" read, "c" create) on `kind`,
    or None. v2 `.cruds` letters, v1 `.read`/`.write`/`.*` (SMART 2.x scopes-and-launch-context.html)."""
    for scope in scopes:
        match = re.match(r"^(patient|user|system)/([A-Za-z*]+)\.([a-z*]+)$", scope)
        if not match or match[2] not in (kind, "*"):
            continue
        perm = match[3]
        v1 = {"read": "rs", "write": "cud", "*": "cruds"}.get(perm)
        if action in (v1 if v1 is not None else perm):
            return match[1]
    return None


def capability_statement(store: Store, root: str) -> dict[str, Any]:
    """The CapabilityStatement: transaction, conditional create, the SMART oauth-uris extension."""
    kinds = [k for k in READABLE if k != "Media" or store.media]
    oauth = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-01",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [{"coding": [{"code": "SMART-on-FHIR"}]}],
                    "extension": [
                        {
                            "url": oauth,
                            "extension": [
                                {"url": "authorize", "valueUri": root + "/auth/authorize"},
                                {"url": "token", "valueUri": root + "/auth/token"},
                            ],
                        }
                    ],
                },
                "resource": [
                    {
                        "type": kind,
                        "interaction": [{"code": "read"}]
                        + (
                            [{"code": "create"}, {"code": "delete"}, {"code": "search-type"}]
                            * (kind in WRITABLE)
                        ),
                        "conditionalCreate": kind in WRITABLE,
                    }
                    for kind in kinds
                ],
                "interaction": [{"code": "transaction"}],
            }
        ],
    }


def read(store: Store, kind: str, rid: str, scopes: list[str], patient: str | None) -> dict[str, Any]:
    context = allows(scopes, kind, "r")
    if context is None:
        raise refuse(403, f"the token's scopes do not allow reading {kind}", "forbidden")
    resource = store.resources.get(kind, {}).get(rid)
    if resource is None:
        raise refuse(404, f"{kind}/{rid} is not known", "not-found")
    if context == "patient" and _patient_of(resource) not in (None, patient):
        raise refuse(403, f"{kind}/{rid} is not in the launch's patient compartment", "forbidden")
    return resource


def _patient_of(resource: dict[str, Any]) -> str | None:
    if resource["resourceType"] == "Patient":
        return str(resource["id"])
    reference = str((resource.get("subject") or {}).get("reference") or "")
    return reference.removeprefix("Patient/") if reference.startswith("Patient/") else None


def search(store: Store, kind: str, query: str, base: str, scopes: list[str]) -> dict[str, Any]:
    if allows(scopes, kind, "r") is None and allows(scopes, kind, "c") is None:
        raise refuse(403, f"the token's scopes do not allow searching {kind}", "forbidden")
    found = matches(store, kind, query)
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(found),
        "entry": [
            {"fullUrl": f"{base}/{kind}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in found
        ],
    }


def matches(store: Store, kind: str, query: str) -> list[dict[str, Any]]:
    """Resources of `kind` matching `identifier=<system>|<value>` (and `patient=<id>`, `subject=...`)."""
    found = list(store.resources.get(kind, {}).values())
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "identifier":
            system, bar, code = value.partition("|")
            if not bar:
                system, code = "", system
            found = [
                r
                for r in found
                if any(
                    i.get("value") == code and (not system or i.get("system") == system)
                    for i in r.get("identifier") or []
                )
            ]
        elif name in ("patient", "subject"):
            found = [r for r in found if _patient_of(r) == value.removeprefix("Patient/")]
        else:
            raise refuse(400, f"search parameter {name} is not supported", "not-supported")
    return found


def create(
    store: Store, kind: str, resource: Any, scopes: list[str], patient: str | None, if_none_exist: str | None
) -> tuple[int, dict[str, Any]]:
    """Check and store one create; (201, stored) or (200, the existing match of If-None-Exist)."""
    check_create(store, kind, resource, scopes, patient)
    if if_none_exist:
        found = matches(store, kind, if_none_exist)
        if len(found) > 1:
            raise refuse(412, f"If-None-Exist matched {len(found)} resources", "duplicate")
        if found:
            return 200, found[0]
    return 201, store.put(resource)


def check_create(store: Store, kind: str, resource: Any, scopes: list[str], patient: str | None) -> None:
    if kind not in WRITABLE or (kind == "Media" and not store.media):
        raise refuse(404, f"creating a {kind} is not supported by this server", "not-supported")
    if not isinstance(resource, dict) or resource.get("resourceType") != kind:
        raise refuse(400, f"POST {kind} takes a {kind} resource", "invalid")
    context = allows(scopes, kind, "c")
    if context is None:
        raise refuse(403, f"the token's scopes do not allow creating {kind}", "forbidden")
    validate(resource)
    subject = _patient_of(resource)
    if subject not in store.resources["Patient"]:
        raise refuse(422, f"{kind}.subject must reference a known Patient", "business-rule")
    if context == "patient" and subject != patient:
        raise refuse(403, f"{kind}.subject is not the launch's patient", "forbidden")


def transaction(
    store: Store, bundle: Any, base: str, scopes: list[str], patient: str | None
) -> dict[str, Any]:
    """A transaction Bundle of creates, all or nothing; the transaction-response Bundle."""
    if (
        not isinstance(bundle, dict)
        or bundle.get("resourceType") != "Bundle"
        or bundle.get("type") != "transaction"
    ):
        raise refuse(400, "POST to the base takes a transaction Bundle", "invalid")
    validate(bundle)
    plan: list[tuple[str, dict[str, Any], str | None]] = []
    for index, entry in enumerate(bundle.get("entry") or []):
        request = entry.get("request") or {}
        kind = str(request.get("url", "")).split("?")[0]
        if request.get("method") != "POST":
            raise refuse(400, f"entry {index}: only POST entries are supported", "not-supported")
        check_create(store, kind, entry.get("resource"), scopes, patient)
        plan.append((kind, entry["resource"], request.get("ifNoneExist")))
    answers = []
    for kind, resource, if_none_exist in plan:  # every check passed: now apply all
        found = matches(store, kind, if_none_exist) if if_none_exist else []
        stored = found[0] if found else store.put(resource)
        status = "200 OK" if found else "201 Created"
        location = f"{base}/{kind}/{stored['id']}/_history/1"
        answers.append({"response": {"status": status, "location": location}, "resource": stored})
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": answers}


def delete(store: Store, kind: str, rid: str, scopes: list[str]) -> None:
    if kind not in WRITABLE or (allows(scopes, kind, "c") is None and allows(scopes, kind, "d") is None):
        raise refuse(403, f"the token's scopes do not allow deleting {kind}", "forbidden")
    if store.resources.get(kind, {}).pop(rid, None) is None:
        raise refuse(404, f"{kind}/{rid} is not known", "not-found")


def validate(resource: dict[str, Any]) -> None:
    """fhir.resources R4B validation; 422 with the first problems otherwise."""
    kind = resource["resourceType"]
    try:
        get_fhir_model_class(kind).model_validate(resource)
    except (ValidationError, ValueError) as exc:
        errors = exc.errors()[:5] if isinstance(exc, ValidationError) else [{"loc": (), "msg": str(exc)}]
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        raise refuse(422, f"invalid {kind}: {problems}", "structure") from None
