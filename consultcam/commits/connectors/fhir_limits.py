"""Commits larger than a FHIR server takes in one request, still all or nothing and never twice.

Servers cap request bodies (Medplum's sample configuration: 1 MB of JSON; proxies in front of any server
do too), and a photo inline in a Media is its bytes again as base64 (+33 %): eight 1 MB photos in one
transaction are about 11 MB. `commit_within_limit` chooses how to write:

1. The body fits `max_request_bytes` (`CONSULTCAM_FHIR_MAX_REQUEST_BYTES`): as before, one transaction or
   conditional creates (`fhir_commit.py`).
2. It does not (known from the setting, or learnt from a 413 answer), or one attachment is larger than
   MAX_INLINE_BYTES, and the CapabilityStatement lists `create` for Binary: **Binary first**. Each
   photo's bytes are POSTed raw to [base]/Binary (`fhir_binary.py`: no base64, no JSON limit), then the
   small resources, their Attachment's `url` "Binary/<id>" instead of `data` (size and hash stay: the
   bytes are the same), in one transaction (or conditional creates). When anything fails for
   good, the Binaries this attempt created are deleted again (compensation).
3. Neither: the conditional-create entries in several transactions, each within the limit; when one
   fails, the resources the earlier ones created are deleted again.

Servers also cap the entries of a transaction: Medplum's router (`@medplum/fhir-router` 5.2,
`maxSerializableTransactionEntries`) refuses one of more than 8 entries when any is a conditional create.
With `CONSULTCAM_FHIR_MAX_TRANSACTION_ENTRIES` set, a commit of more photos goes in several transactions of at
most that many entries each (after Binary first, where that applies), compensated as in 3.

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
from collections.abc import Iterator, Sequence
from typing import Any

from consultcam.commits.connectors.base import (
    CommitContext,
    CommitFailed,
    CommitItem,
    ImageResult,
    ProgressCallback,
)
from consultcam.commits.connectors.fhir_binary import already_saved, upload_binaries
from consultcam.commits.connectors.fhir_client import Capabilities, FhirFailure, FhirSession
from consultcam.commits.connectors.fhir_commit import (
    RequestTooLarge,
    commit_one_by_one,
    commit_transaction,
    compensate,
    delete_all,
    send_transaction,
)
from consultcam.commits.fhir_media import assemble_transaction_bundle

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "MAX_INLINE_BYTES", "commit_within_limit", "request_bytes"]

log = logging.getLogger(__name__)

#: 1 MiB: Medplum's sample `maxJsonSize`, and nginx's default client_max_body_size. Conservative: a server
#: that takes more only gets a commit in a few more requests.
DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
#: The largest attachment sent inline where the server takes Binary: Medplum's validator refuses a
#: base64Binary of more than 1 MiB (a converted TIFF is several MB); large content belongs in a Binary.
MAX_INLINE_BYTES = 1024 * 1024
_BUNDLE_OVERHEAD = 1024  # the transaction Bundle around its entries: type, identifier, timestamp


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
    max_entries: int | None = None,
) -> list[ImageResult]:
    """Write every item or none within `max_request_bytes` and, when set, `max_entries` entries per
    transaction (`CONSULTCAM_FHIR_MAX_TRANSACTION_ENTRIES`; see the module docstring); one "committed" result
    per item, in order. Raises CommitFailed (nothing left behind, or naming what is)."""
    sizes = [request_bytes(entry) for entry in entries]
    largest = sum(sizes) + _BUNDLE_OVERHEAD if capabilities.transaction else max(sizes)
    binary = "Binary" in capabilities.creatable
    inline_too_large = any(_attachment(entry).get("size", 0) > MAX_INLINE_BYTES for entry in entries)
    too_many = capabilities.transaction and max_entries is not None and len(entries) > max_entries
    if largest <= max_request_bytes and not too_many and not (binary and inline_too_large):
        try:
            return await _commit(fhir, context, items, entries, progress, resource, capabilities)
        except _TooLarge:
            log.info(
                "FHIR commit: the server refused %d bytes (413); writing it in smaller requests", largest
            )
            max_request_bytes = min(max_request_bytes, largest // 2)
    limits = (max_request_bytes, max_entries)
    if binary and (largest > max_request_bytes or inline_too_large):
        return await _binary_first(fhir, context, items, entries, progress, resource, capabilities, limits)
    return await _in_batches(fhir, context, items, entries, sizes, progress, resource, capabilities, limits)


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
    limits: tuple[int, int | None],
) -> list[ImageResult]:
    """Each photo's bytes as a Binary (raw POST, `fhir_binary.py`), then the resources referring to them by
    one transaction (several within `limits`: bytes, entries) or conditional creates; the Binaries deleted
    again when anything fails for good."""
    existing = await already_saved(fhir, items, resource)
    small = [copy.deepcopy(entry) for entry in entries]
    attachments = [_attachment(entry) for entry in small]

    def contents() -> Iterator[tuple[bytes, str] | None]:
        for item, attachment in zip(items, attachments, strict=True):
            content = base64.b64decode(attachment.pop("data"))
            yield None if item.image_id in existing else (content, attachment["contentType"])

    binary_ids = await upload_binaries(fhir, items, contents())
    for attachment, binary_id in zip(attachments, binary_ids, strict=True):
        if binary_id is not None:
            attachment["url"] = binary_id
    sizes = [request_bytes(entry) for entry in small]
    max_bytes, max_entries = limits
    one_transaction = sum(sizes) + _BUNDLE_OVERHEAD <= max_bytes and len(small) <= (max_entries or len(small))
    try:
        if capabilities.transaction and one_transaction:
            return await commit_transaction(fhir, context, items, small, progress)
        return await _in_batches(fhir, context, items, small, sizes, progress, resource, capabilities, limits)
    except CommitFailed:  # not after any other error: a stored resource might refer to them
        await _delete_unreferenced(fhir, items, binary_ids, resource)
        raise


async def _delete_unreferenced(
    fhir: FhirSession, items: Sequence[CommitItem], binary_ids: list[str | None], resource: str
) -> None:
    """After a failed write, delete the Binaries uploaded for photos that are not in the record. A write
    whose answer was lost may have been stored (a whole transaction, or one conditional create), its
    resource pointing at its Binary: those found by image identifier keep theirs, and when the search
    cannot answer, every Binary stays (unreferenced ones hold no photo in the record)."""
    try:
        stored = await already_saved(fhir, items, resource)
    except CommitFailed:
        log.warning("FHIR commit: the record could not be searched; %d Binaries kept", len(binary_ids))
        return
    unreferenced = [
        binary_id
        for item, binary_id in zip(items, binary_ids, strict=True)
        if binary_id is not None and item.image_id not in stored
    ]
    left = await delete_all(fhir, unreferenced)
    if left:
        log.warning("FHIR commit: %d Binary resources could not be deleted: %s", len(left), ", ".join(left))


def _attachment(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry's photo Attachment (Media.content, DocumentReference.content[0].attachment), for changing."""
    resource = entry["resource"]
    if resource["resourceType"] == "DocumentReference":
        attachment: dict[str, Any] = resource["content"][0]["attachment"]
    else:
        attachment = resource["content"]
    return attachment


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
    limits: tuple[int, int | None],
) -> list[ImageResult]:
    """The entries in consecutive transactions of at most `limits` bytes and entries each (an entry larger
    than the bytes alone); when one fails for good, delete what the earlier ones created (`compensate`)."""
    max_request_bytes, max_entries = limits
    if not capabilities.transaction:  # one resource a request already
        return await commit_one_by_one(fhir, items, entries, progress, resource)
    existing = await already_saved(fhir, items, resource)
    batches: list[list[int]] = [[]]
    for index, size in enumerate(sizes):
        full = max_entries is not None and len(batches[-1]) >= max_entries
        too_large = sum(sizes[i] for i in batches[-1]) + size + _BUNDLE_OVERHEAD > max_request_bytes
        if batches[-1] and (full or too_large):
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
