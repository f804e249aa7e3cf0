"""IHE MHD publishing within a server's request limit, still one atomic ITI-65 transaction.

A Provide Document Bundle carries every photo inline as a Binary (base64, +33 %): eight 1 MB photos are an
11 MB request, and servers cap request bodies (Medplum's sample configuration: 1 MB of JSON; proxies in
front of any server do too). MHD has no second way to write (one transaction a submission, ITI-65
§2:3.65.4.1.3), so unlike `fhir_limits.py` there are no batches. `publish_within_limit` chooses:

1. The Bundle fits `max_request_bytes` (`CONSULTCAM_FHIR_MAX_REQUEST_BYTES`) and no photo is larger than
   MAX_INLINE_BYTES: the Bundle as built, Binaries inline (`mhd.publish`).
2. It does not (known from the setting, or learnt from a 413 answer) and the CapabilityStatement lists
   `create` for Binary: **Binary first**. Each photo's bytes are POSTed raw to [base]/Binary
   (`fhir_binary.py`), then the Provide Document Bundle without Binary entries, each DocumentReference's
   attachment.url the uploaded "Binary/<id>" (size and hash unchanged: `fhir_mhd.referencing_binaries`,
   where the departure from ITI-65 §2:3.65.4.1.2 this makes is explained). When the transaction fails for
   good, the uploaded Binaries are deleted again (compensation); when its answer was lost, the SubmissionSet
   is looked up first: there, the commit succeeded; not there, the Binaries are deleted; unknown, they stay
   (unreferenced: no photo in the record) and the GP is told a repeat saves nothing twice.
3. Neither: refused before anything is sent (MHD_TOO_LARGE), saying what the administrator can do.

Never twice: a later attempt first looks for the commit's SubmissionSet (`mhd.published_earlier`, in the
connector); before uploading, photos whose DocumentReference is already in the record get no Binary.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, NoReturn

from consultcam.commits.connectors.base import (
    CommitFailed,
    CommitItem,
    ImageResult,
    ProgressCallback,
    all_failed,
    preparation_failed,
)
from consultcam.commits.connectors.fhir_binary import UNSURE, already_saved, upload_binaries
from consultcam.commits.connectors.fhir_client import Capabilities, FhirFailure, FhirSession
from consultcam.commits.connectors.fhir_commit import ADMIN, RequestTooLarge, delete_all, what_to_do
from consultcam.commits.connectors.fhir_limits import MAX_INLINE_BYTES, request_bytes
from consultcam.commits.connectors.mhd import find_submission_set, publish, send_provide_bundle
from consultcam.commits.fhir_mhd import binary_contents, referencing_binaries

__all__ = ["MHD_TOO_LARGE", "publish_within_limit"]

log = logging.getLogger(__name__)

#: Why a server without Binary create cannot take a large MHD commit: the words of the refusal.
MHD_TOO_LARGE = (
    "the photos together are larger than the document registry takes in one request, and it does not take "
    "images uploaded on their own (FHIR Binary create), which publishing as IHE MHD (one ITI-65 "
    "transaction) would need"
)


async def publish_within_limit(
    fhir: FhirSession,
    items: Sequence[CommitItem],
    bundle: dict[str, Any],
    progress: ProgressCallback,
    capabilities: Capabilities,
    max_request_bytes: int,
) -> list[ImageResult]:
    """Publish the Provide Document Bundle `bundle` (from `fhir_mhd.build_provide_bundle` for `items`) within
    `max_request_bytes` per request (see the module docstring); one "committed" result per item, in order,
    resource_id "DocumentReference/<id>". Raises CommitFailed: nothing left in the record, or naming what
    is."""
    size = await asyncio.to_thread(request_bytes, bundle)
    contents = await asyncio.to_thread(binary_contents, bundle)
    binary = "Binary" in capabilities.creatable
    inline_too_large = any(len(content) > MAX_INLINE_BYTES for _, content, _ in contents)
    if size <= max_request_bytes and not (binary and inline_too_large):
        try:
            return await publish(fhir, items, bundle, progress)
        except RequestTooLarge:
            log.info("MHD commit: the server refused %d bytes (413)", size)
            if not binary:
                _refuse_too_large(items, "it answered 413 (request entity too large)")
    elif not binary:
        _refuse_too_large(items, f"{size} bytes; the limit is {max_request_bytes}")
    return await _binary_first(fhir, items, bundle, contents, progress)


def _refuse_too_large(items: Sequence[CommitItem], why: str) -> NoReturn:
    """CommitFailed: nothing was sent, or nothing was saved (a refused transaction)."""
    raise CommitFailed(
        f"The photos were not sent: {MHD_TOO_LARGE} ({why}). Nothing was saved; {ADMIN} to raise the "
        "registry's request limit (and CONSULTCAM_FHIR_MAX_REQUEST_BYTES) or to allow Binary create, or "
        "commit fewer photos at a time.",
        all_failed(items, MHD_TOO_LARGE),
    )


async def _binary_first(
    fhir: FhirSession,
    items: Sequence[CommitItem],
    bundle: dict[str, Any],
    contents: list[tuple[str, bytes, str]],
    progress: ProgressCallback,
) -> list[ImageResult]:
    """Upload the photos as Binaries, then the Bundle referring to them; compensation as in the module
    docstring."""
    existing = await already_saved(fhir, items, "DocumentReference")
    binary_ids = await upload_binaries(
        fhir,
        items,
        (
            None if item.image_id in existing else (content, content_type)
            for item, (_, content, content_type) in zip(items, contents, strict=True)
        ),
    )
    uploaded = [binary_id for binary_id in binary_ids if binary_id is not None]
    urls = {full_url: binary_id for (full_url, _, _), binary_id in zip(contents, binary_ids, strict=True)}
    try:
        small = await asyncio.to_thread(referencing_binaries, bundle, urls)
    except ValueError as exc:
        await delete_all(fhir, uploaded)  # nothing refers to them yet
        raise preparation_failed(items, str(exc), "the document registry") from exc
    try:
        results = await send_provide_bundle(fhir, items, small)
    except FhirFailure as failure:
        results = await _undo(fhir, items, small, failure, uploaded)
    await progress(len(items), len(items))
    return results


async def _undo(
    fhir: FhirSession,
    items: Sequence[CommitItem],
    bundle: dict[str, Any],
    failure: FhirFailure,
    uploaded: list[str],
) -> list[ImageResult]:
    """After the transaction `bundle` failed: the results when it was stored after all (an answer lost on
    the way: the SubmissionSet is there); else the uploaded Binaries deleted when nothing can refer to them,
    and CommitFailed saying what is left."""
    known = not failure.transient  # a 4xx: the transaction was refused, nothing refers to the Binaries
    if failure.transient:
        try:
            found = await find_submission_set(fhir, items, bundle)
        except FhirFailure:
            found = None
        else:
            if found:
                log.info("MHD commit: the transaction's answer was lost, but its SubmissionSet is there")
                return found
            known = True
    left = await delete_all(fhir, uploaded) if known else []
    detail = f"{failure.words}: {failure.outcome}. "
    if not known:
        detail += f"Whether the photos were saved is not known; {UNSURE}."
    elif left:
        copies = "copy" if len(left) == 1 else "copies"
        detail += (
            f"Nothing was saved in the patient's record, but {len(left)} {copies} of the images uploaded "
            f"for it could not be removed from the server: {', '.join(left)}; {ADMIN} to delete "
            f"{'it' if len(left) == 1 else 'them'}."
        )
    else:
        detail += f"Nothing was saved; {what_to_do(failure)}"
    raise CommitFailed(detail, all_failed(items, failure.outcome))
