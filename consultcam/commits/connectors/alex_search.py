"""The duplicate search of the `alex` connector's Inbox Scan commit: which photos of a commit an earlier
attempt already filed, found with the one search shape ALEX answers for documents,
`DocumentReference?patient.identifier=<NHI system>|<NHI>` (shared/DESIGN.md, "Medtech ALEX facts"; FHIR R4
search and Bundle.link), matched on our identifier (IMAGE_IDENTIFIER_SYSTEM + image id). ALEX answers 403 to
`?identifier=`, `?patient=` and `?subject=`, and has no conditional create, so this is the only way.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from consultcam.commits.connectors.fhir_client import (
    FhirFailure,
    FhirSession,
    id_of,
    json_body,
    raise_for_status,
)
from consultcam.commits.fhir_media import IMAGE_IDENTIFIER_SYSTEM, NHI_SYSTEM

__all__ = ["MAX_PAGES", "find_filed", "next_page"]

#: Most pages of search results read before giving up (a patient's whole inbox, 20 or so to a page).
MAX_PAGES = 100


async def find_filed(fhir: FhirSession, nhi: str | None, image_ids: Sequence[str]) -> dict[str, str]:
    """image id → "DocumentReference/<id>" for those of `image_ids` already in the patient's record, by
    `GET DocumentReference?patient.identifier=<NHI system>|<nhi>` and its `next` pages (FHIR R4 search,
    Bundle.link); entered-in-error ones do not count. {} without an NHI. Raises FhirFailure when ALEX
    refuses or answers something else, or a `next` link leaves the server (the token goes nowhere else)."""
    if not nhi:
        return {}
    wanted = set(image_ids)
    query = urlencode({"patient.identifier": f"{NHI_SYSTEM}|{nhi}"})
    url: str | None = f"{fhir.base_url}/DocumentReference?{query}"
    found: dict[str, str] = {}
    for _ in range(MAX_PAGES):
        if url is None:
            return found
        response = await fhir.send("GET", url)
        raise_for_status(response, "Medtech did not answer the search for photos already filed")
        bundle = json_body(response)
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise FhirFailure(
                "Medtech gave an answer consultcam does not understand",
                "the search for photos already filed did not return a Bundle",
                status=response.status_code,
            )
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            image_id = _our_image_id(resource)
            if image_id in wanted and image_id not in found:
                resource_id = id_of(resource) or fhir.client.resource_id(entry.get("fullUrl"))
                if resource_id:
                    found[image_id] = resource_id
        url = next_page(fhir, bundle)
    raise FhirFailure(
        "Medtech's answer to the search for photos already filed did not end",
        f"more than {MAX_PAGES} pages of results",
    )


def _our_image_id(resource: Any) -> str | None:
    """The image id in a DocumentReference's identifier with our system, unless entered in error."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "DocumentReference":
        return None
    if resource.get("status") == "entered-in-error":
        return None
    for identifier in resource.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == IMAGE_IDENTIFIER_SYSTEM:
            try:
                return str(uuid.UUID(str(identifier.get("value"))))
            except ValueError:
                return None
    return None


def next_page(fhir: FhirSession, bundle: dict[str, Any]) -> str | None:
    """The Bundle's `next` link, made absolute against the base; FhirFailure when it leaves the server."""
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            url: str = urljoin(fhir.base_url + "/", str(link["url"]))
            base, there = urlsplit(fhir.base_url), urlsplit(url)
            if (there.scheme, there.netloc) != (base.scheme, base.netloc):
                raise FhirFailure(
                    "Medtech's search answer pointed to another server",
                    "a next link outside the ALEX base URL was not followed",
                )
            return url
    return None
