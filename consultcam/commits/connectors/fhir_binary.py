"""Photo bytes uploaded as FHIR `Binary` resources before the resources that refer to them.

Shared by the request-limit handling of the plain FHIR connector (`fhir_limits.py`, Media or
DocumentReference) and of IHE MHD publishing (`mhd_limits.py`): a photo inline in a resource is its bytes
again as base64 (+33 %), so a commit of several photos outgrows a server's request limit, and a raw `POST
[base]/Binary` carries each photo alone, unencoded (FHIR R4 binary.html#rest: a body that is not FHIR is the
Binary's content).

* `already_saved`: which photos an earlier, interrupted attempt already put in the record (search by the
  image identifier), so they get no second Binary (`fhir_limits.py`; MHD looks up its SubmissionSet instead,
  which one atomic transaction stored with every photo or not at all).
* `upload_binaries`: one Binary per photo that needs one; when one upload fails, the Binaries uploaded before
  it are deleted again and CommitFailed is raised (`fhir_commit.compensate`).

A Binary whose POST got no answer may have been stored (a Binary has no identifier to find it by): it is
never retried and, unreferenced, holds no photo in the patient's record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from consultcam.commits.connectors.base import CommitFailed, CommitItem, all_failed
from consultcam.commits.connectors.fhir_client import FhirFailure, FhirSession, json_body, raise_for_status
from consultcam.commits.connectors.fhir_commit import compensate, what_to_do
from consultcam.commits.fhir_media import IMAGE_IDENTIFIER_SYSTEM, photo_name

__all__ = ["UNSURE", "already_saved", "upload_binaries", "upload_binary"]

log = logging.getLogger(__name__)

#: The end of a CommitFailed sentence when a write's outcome is unknown and a Binary may be left unused.
UNSURE = "committing again will not save any photo twice (a copy of the image may stay on the server, unused)"
_SEARCH_CHUNK = 20  # image identifiers per search (URLs stay short)


async def upload_binary(fhir: FhirSession, content: bytes, content_type: str, item: CommitItem) -> str:
    """POST the bytes to [base]/Binary; "Binary/<id>" from the Location (or the body's id). FhirFailure
    otherwise (never retried once sent: a Binary cannot be found again by an identifier)."""
    response = await fhir.send(
        "POST", f"{fhir.base_url}/Binary", content=content, headers={"Content-Type": content_type}
    )
    raise_for_status(response, f"The patient record system refused {photo_name(item)}")
    binary_id = fhir.client.resource_id(response.headers.get("location"))
    if binary_id is None:
        body = json_body(response)
        if isinstance(body, dict) and body.get("id"):
            binary_id = f"Binary/{body['id']}"
    if binary_id is None or not binary_id.startswith("Binary/"):
        raise FhirFailure(
            "The patient record system saved a photo without saying where",
            f"{response.status_code} to POST Binary without a Location header",
            status=response.status_code,
        )
    return binary_id


async def upload_binaries(
    fhir: FhirSession, items: Sequence[CommitItem], contents: Iterable[tuple[bytes, str] | None]
) -> list[str | None]:
    """Upload each item's (bytes, content type) from `contents` (in item order; None: nothing to upload) as a
    Binary; "Binary/<id>" per item, None where nothing was uploaded. When an upload fails, the Binaries
    uploaded before it are deleted and CommitFailed names the photo (`compensate`)."""
    uploaded: list[str] = []
    ids: list[str | None] = []
    for index, (item, content) in enumerate(zip(items, contents, strict=True)):
        if content is None:
            ids.append(None)
            continue
        try:
            binary_id = await upload_binary(fhir, content[0], content[1], item)
        except FhirFailure as failure:
            await compensate(fhir, items, index, failure, uploaded, {}, unsure=UNSURE)
        uploaded.append(binary_id)
        ids.append(binary_id)
    return ids


async def already_saved(fhir: FhirSession, items: Sequence[CommitItem], resource: str) -> set[str]:
    """The image ids of `items` that already have a `resource` in the record (FHIR search by identifier, a
    comma-separated list: search.html#token). A server that refuses the search (4xx) is taken to hold none
    (its conditional creates still find them: no photo twice, a Binary perhaps); CommitFailed when it cannot
    answer (no answer, 5xx, 429 after the retries)."""
    found: set[str] = set()
    wanted = {item.image_id for item in items}
    for start in range(0, len(items), _SEARCH_CHUNK):
        values = ",".join(
            f"{IMAGE_IDENTIFIER_SYSTEM}|{i.image_id}" for i in items[start : start + _SEARCH_CHUNK]
        )
        try:
            response = await fhir.send("GET", f"{fhir.base_url}/{resource}?identifier={values}")
            raise_for_status(response, "The patient record system could not be searched")
        except FhirFailure as failure:
            if not failure.transient and failure.status not in (401, 403):
                log.warning(
                    "FHIR commit: search by identifier refused (%s): %s", failure.status, failure.outcome
                )
                continue
            raise CommitFailed(
                f"{failure.words}: {failure.outcome}. Nothing was saved; {what_to_do(failure)}",
                all_failed(items, failure.outcome),
            ) from None
        body = json_body(response)
        for entry in (body.get("entry") if isinstance(body, dict) else None) or []:
            resource_found = entry.get("resource") if isinstance(entry, dict) else None
            for identifier in (resource_found or {}).get("identifier") or []:
                if identifier.get("system") == IMAGE_IDENTIFIER_SYSTEM and identifier.get("value") in wanted:
                    found.add(identifier["value"])
    return found
