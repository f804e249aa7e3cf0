"""Commits larger than a FHIR server takes in one request, still all or nothing and never twice.

Servers cap request bodies (Medplum's sample configuration: 1 MB of JSON; proxies in front of any server
do too), and a photo inline in a Media is its bytes again as base64 (+33 %): eight 1 MB photos in one
transaction are about 11 MB. `commit_within_limit` chooses how to write:

1. The body fits `max_request_bytes` (`CONSULTCAM_FHIR_MAX_REQUEST_BYTES`): as before, one transaction or
   conditional creates (`fhir_commit.py`).
2. It does not (known from the setting, or learnt from a 413 answer), or one attachment is larger than
   MAX_INLINE_BYTES, and the CapabilityStatement lists `create` for Binary: **Binary first**. Each
   photo's bytes are POSTed raw to [base]/Binary (FHIR R4 binary.html#rest: a body that is not FHIR is
   the Binary's content: no base64, no JSON limit), then the small resources, their Attachment's `url`
   "Binary/<id>" instead of `data` (size and hash stay: the bytes are the same), in one transaction (or
   conditional creates). When anything fails for good, the Binaries this attempt created are deleted
   again (compensation).
3. Neither: the conditional-create entries in several transactions, each within the limit; when one
   fails, the resources the earlier ones created are deleted again.

The limit plans the requests; it never refuses on its own: a single photo larger than it is still sent
(alone), and the server's answer is the final word.

Never twice: before uploading, the photos already in the record (by their image identifier, from an
earlier, interrupted attempt) are looked up; they get no new Binary, their entries no bytes, and their
conditional create finds them. A Binary whose POST got no answer may have been stored (a Binary has no
identifier to find it by): it is not retried and, unreferenced, holds no photo in the patient's record.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
from collections.abc import Sequence
from typing import Any

from consultcam.commits.connectors.base import (
    CommitContext,
    CommitFailed,
    CommitItem,
    ImageResult,
    ProgressCallback,
    all_failed,
)
from consultcam.commits.connectors.fhir_client import (
    Capabilities,
    FhirFailure,
    FhirSession,
    json_body,
    raise_for_status,
)
from consultcam.commits.connectors.fhir_commit import (
    RequestTooLarge,
    commit_one_by_one,
    commit_transaction,
    compensate,
    delete_all,
    send_transaction,
    what_to_do,
)
from consultcam.commits.fhir_media import IMAGE_IDENTIFIER_SYSTEM, assemble_transaction_bundle, photo_name

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "MAX_INLINE_BYTES", "commit_within_limit", "request_bytes"]

log = logging.getLogger(__name__)

#: 1 MiB: Medplum's sample `maxJsonSize`, and nginx's default client_max_body_size. Conservative: a server
#: that takes more only gets a commit in a few more requests.
DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
#: The largest attachment sent inline where the server takes Binary: Medplum's validator refuses a
#: base64Binary of more than 1 MiB (a converted TIFF is several MB); large content belongs in a Binary.
MAX_INLINE_BYTES = 1024 * 1024
_BUNDLE_OVERHEAD = 1024  # the transaction Bundle around its entries: type, identifier, timestamp
_SEARCH_CHUNK = 20  # image identifiers per search (URLs stay short)


def request_bytes(body: Any) -> int:
    """The size in bytes of `body` sent as JSON (an upper bound of what httpx sends)."""
    return len(json.dumps(body, ensure_ascii=False).encode("utf-8"))


async def commit_within_limit(
    fhir: FhirSession,
    context: CommitContext,
    items: Sequence[CommitItem],
    entries: list[dict[str, Any]],
    progress: ProgressCallback,
    resource: str,
    capabilities: Capabilities,
    max_request_bytes: int,
) -> list[ImageResult]:
    """Write every item or none within `max_request_bytes` per request (see the module docstring); one
    "committed" result per item, in order. Raises CommitFailed (nothing left behind, or naming what is)."""
    sizes = [request_bytes(entry) for entry in entries]
    largest = sum(sizes) + _BUNDLE_OVERHEAD if capabilities.transaction else max(sizes)
    binary = "Binary" in capabilities.creatable
    inline_too_large = any(_attachment(entry).get("size", 0) > MAX_INLINE_BYTES for entry in entries)
    if largest <= max_request_bytes and not (binary and inline_too_large):
        try:
            return await _commit(fhir, context, items, entries, progress, resource, capabilities)
        except _TooLarge:
            log.info(
                "FHIR commit: the server refused %d bytes (413); writing it in smaller requests", largest
            )
            max_request_bytes = min(max_request_bytes, largest // 2)
    if binary:
        return await _binary_first(fhir, context, items, entries, progress, resource, capabilities)
    return await _in_batches(
        fhir, context, items, entries, sizes, progress, resource, capabilities, max_request_bytes
    )


class _TooLarge(Exception):
    """The server answered 413 to a request consultcam thought would fit."""


async def _commit(
    fhir: FhirSession,
    context: CommitContext,
    items: Sequence[CommitItem],
    entries: list[dict[str, Any]],
    progress: ProgressCallback,
    resource: str,
    capabilities: Capabilities,
) -> list[ImageResult]:
    """The plain commit of `fhir_commit.py`; _TooLarge for a 413 to the first request."""
    try:
        if capabilities.transaction:
            return await commit_transaction(fhir, context, items, entries, progress)
        return await commit_one_by_one(fhir, items, entries, progress, resource)
    except RequestTooLarge as refused:
        raise _TooLarge from refused


# -- Binary first -------------------------------------------------------------------------------------------


async def _binary_first(
    fhir: FhirSession,
    context: CommitContext,
    items: Sequence[CommitItem],
    entries: list[dict[str, Any]],
    progress: ProgressCallback,
    resource: str,
    capabilities: Capabilities,
) -> list[ImageResult]:
    """Each photo's bytes as a Binary (raw POST), then the resources referring to them by one transaction
    or conditional creates; the Binaries deleted again when anything fails for good."""
    existing = await _already_saved(fhir, items, resource)
    small: list[dict[str, Any]] = []
    uploaded: list[str] = []
    for index, (item, original) in enumerate(zip(items, entries, strict=True)):
        entry = copy.deepcopy(original)
        attachment = _attachment(entry)
        content = base64.b64decode(attachment.pop("data"))
        if item.image_id not in existing:
            try:
                binary_id = await _upload(fhir, content, attachment["contentType"], item)
            except FhirFailure as failure:
                await compensate(fhir, items, index, failure, uploaded, {}, unsure=_UNSURE)
            uploaded.append(binary_id)
            attachment["url"] = binary_id
        small.append(entry)
    try:
        if capabilities.transaction:
            return await commit_transaction(fhir, context, items, small, progress)
        return await commit_one_by_one(fhir, items, small, progress, resource)
    except CommitFailed:  # nothing refers to them (not after any other error: a Media might)
        left = await delete_all(fhir, uploaded)
        if left:
            log.warning(
                "FHIR commit: %d Binary resources could not be deleted: %s", len(left), ", ".join(left)
            )
        raise


_UNSURE = (
    "committing again will not save any photo twice (a copy of the image may stay on the server, unused)"
)


def _attachment(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry's photo Attachment (Media.content, DocumentReference.content[0].attachment), for changing."""
    resource = entry["resource"]
    if resource["resourceType"] == "DocumentReference":
        attachment: dict[str, Any] = resource["content"][0]["attachment"]
    else:
        attachment = resource["content"]
    return attachment


async def _upload(fhir: FhirSession, content: bytes, content_type: str, item: CommitItem) -> str:
    """POST the bytes to [base]/Binary; "Binary/<id>" from the Location. FhirFailure otherwise (never retried
    once sent: a Binary cannot be found again by an identifier)."""
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


async def _already_saved(fhir: FhirSession, items: Sequence[CommitItem], resource: str) -> set[str]:
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


# -- several transactions -----------------------------------------------------------------------------------


async def _in_batches(
    fhir: FhirSession,
    context: CommitContext,
    items: Sequence[CommitItem],
    entries: list[dict[str, Any]],
    sizes: list[int],
    progress: ProgressCallback,
    resource: str,
    capabilities: Capabilities,
    max_request_bytes: int,
) -> list[ImageResult]:
    """The entries in consecutive transactions of at most `max_request_bytes` each (an entry larger than
    that alone); when one fails for good, delete what the earlier ones created (`compensate`)."""
    if not capabilities.transaction:  # one resource a request already
        return await commit_one_by_one(fhir, items, entries, progress, resource)
    existing = await _already_saved(fhir, items, resource)
    batches: list[list[int]] = [[]]
    for index, size in enumerate(sizes):
        if batches[-1] and sum(sizes[i] for i in batches[-1]) + size + _BUNDLE_OVERHEAD > max_request_bytes:
            batches.append([])
        batches[-1].append(index)
    results: list[ImageResult] = []
    created: list[str] = []
    found = {i: "an existing resource" for i, item in enumerate(items) if item.image_id in existing}
    for batch in batches:
        batch_items = [items[i] for i in batch]
        bundle = await asyncio.to_thread(assemble_transaction_bundle, context, [entries[i] for i in batch])
        try:
            answered = await send_transaction(fhir, bundle, batch_items)
        except FhirFailure as failure:
            await compensate(fhir, items, batch[0], failure, created, found)
        for index, result in zip(batch, answered, strict=True):
            if items[index].image_id in existing:
                found[index] = result.resource_id or found[index]
            elif result.resource_id:
                created.append(result.resource_id)
        results.extend(answered)
        try:
            await progress(len(results), len(items))
        except Exception:
            await delete_all(fhir, created)  # all or nothing, even when progress fails
            raise
    return results
