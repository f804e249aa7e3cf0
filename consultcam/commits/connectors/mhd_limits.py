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
   where the departure from ITI-65 §2:3.65.4.1.2 this makes is explained). Its entries are plain creates:
   Medplum refuses a transaction of more than 8 entries when any is a conditional create ("Transaction
   requires strict isolation but has too many entries"), and a SubmissionSet with eight DocumentReferences
   is nine. So it is never resent blindly: after no answer or a 5xx the SubmissionSet is looked up; there,
   the commit succeeded; answered not there, the Bundle is sent again; unknown, the Binaries stay
   (unreferenced: no photo in the record) and the GP is told a repeat saves nothing twice. When the
   transaction fails for good, the uploaded Binaries are deleted again (compensation).
3. Neither: refused before anything is sent (MHD_TOO_LARGE), saying what the administrator can do.

A Bundle that fits but has more entries than `CONSULTCAM_FHIR_MAX_TRANSACTION_ENTRIES` (Medplum: 8 with a
conditional create; a SubmissionSet, four DocumentReferences and their Binaries are nine) goes inline as plain
creates (`fhir_mhd.plain_creates`), looked up and sent as in 2.

Never twice: before uploading anything, the commit's SubmissionSet is looked up (by its entryUUID): an
earlier attempt that stored it stored every photo (one atomic transaction), and nothing is sent again. The
per-photo lookup of `fhir_binary.already_saved` is not needed here for the same reason.
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
from consultcam.commits.connectors.fhir_binary import UNSURE, upload_binaries
from consultcam.commits.connectors.fhir_client import Capabilities, FhirFailure, FhirSession
from consultcam.commits.connectors.fhir_commit import ADMIN, RequestTooLarge, delete_all, what_to_do
from consultcam.commits.connectors.fhir_limits import MAX_INLINE_BYTES, request_bytes
from consultcam.commits.connectors.mhd import find_submission_set, publish, send_provide_bundle
from consultcam.commits.fhir_mhd import binary_contents, plain_creates, referencing_binaries

__all__ = ["MHD_TOO_LARGE", "publish_within_limit"]

log = logging.getLogger(__name__)

_SENDS = 3  # tries of the Bundle of plain creates, each after the SubmissionSet was found not stored

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
    attempt: int = 1,
    max_entries: int | None = None,
) -> list[ImageResult]:
    """Publish the Provide Document Bundle `bundle` (from `fhir_mhd.build_provide_bundle` for `items`) within
    `max_request_bytes` per request (see the module docstring); `attempt` is the commit's attempt number
    (`CommitContext.attempt`); one "committed" result per item, in order,
    resource_id "DocumentReference/<id>". Raises CommitFailed: nothing left in the record, or naming what
    is."""
    size = await asyncio.to_thread(request_bytes, bundle)
    contents = await asyncio.to_thread(binary_contents, bundle)
    binary = "Binary" in capabilities.creatable
    inline_too_large = any(len(content) > MAX_INLINE_BYTES for _, content, _ in contents)
    if size <= max_request_bytes and not (binary and inline_too_large):
        if max_entries is not None and len(bundle["entry"]) > max_entries:
            return await _inline_plain_creates(fhir, items, bundle, progress, attempt)
        try:
            return await publish(fhir, items, bundle, progress)
        except RequestTooLarge:
            log.info("MHD commit: the server refused %d bytes (413)", size)
            if not binary:
                _refuse_too_large(items, "it answered 413 (request entity too large)")
    elif not binary:
        _refuse_too_large(items, f"{size} bytes; the limit is {max_request_bytes}")
    return await _binary_first(fhir, items, bundle, contents, progress, attempt)


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
    attempt: int,
) -> list[ImageResult]:
    """Upload the photos as Binaries, then the Bundle referring to them; never twice and compensation as in
    the module docstring."""
    if earlier := await _published_before(fhir, items, bundle, attempt):
        await progress(len(items), len(items))
        return earlier
    binary_ids = await upload_binaries(
        fhir, items, ((content, content_type) for _, content, content_type in contents)
    )
    uploaded = [binary_id for binary_id in binary_ids if binary_id is not None]
    urls = {full_url: binary_id for (full_url, _, _), binary_id in zip(contents, uploaded, strict=True)}
    try:
        small = await asyncio.to_thread(referencing_binaries, bundle, urls)
    except ValueError as exc:
        await delete_all(fhir, uploaded)  # nothing refers to them yet
        raise preparation_failed(items, str(exc), "the document registry") from exc
    results = await _send(fhir, items, small, uploaded)
    await progress(len(items), len(items))
    return results


async def _inline_plain_creates(
    fhir: FhirSession,
    items: Sequence[CommitItem],
    bundle: dict[str, Any],
    progress: ProgressCallback,
    attempt: int,
) -> list[ImageResult]:
    """The Bundle as built, Binaries inline, its entries plain creates; looked up first and sent as `_send`
    does (nothing uploaded beforehand, so nothing to delete)."""
    if earlier := await _published_before(fhir, items, bundle, attempt):
        await progress(len(items), len(items))
        return earlier
    plain = await asyncio.to_thread(plain_creates, bundle)
    results = await _send(fhir, items, plain, [])
    await progress(len(items), len(items))
    return results


async def _published_before(
    fhir: FhirSession, items: Sequence[CommitItem], bundle: dict[str, Any], attempt: int
) -> list[ImageResult] | None:
    """What an earlier attempt stored of this commit (its SubmissionSet, `mhd.find_submission_set`), before a
    Bundle of plain creates is sent. A registry that refuses the search (4xx) is written to on a commit's
    first attempt (nothing of it can be there yet); on a later one (it might) CommitFailed, as when it
    cannot answer."""
    try:
        return await find_submission_set(fhir, items, bundle)
    except FhirFailure as failure:
        refused = not failure.transient and failure.status not in (401, 403)
        if not (refused and attempt == 1):
            raise CommitFailed(
                f"{failure.words}: {failure.outcome}. Nothing was saved; {what_to_do(failure)}",
                all_failed(items, failure.outcome),
            ) from None
        return None


async def _send(
    fhir: FhirSession, items: Sequence[CommitItem], bundle: dict[str, Any], uploaded: list[str]
) -> list[ImageResult]:
    """POST the Bundle of plain creates `bundle` (never resent blindly: a repeat would store it twice). After
    no answer or a 5xx the SubmissionSet is looked up: there, the results; answered not there, the Bundle is
    sent again (at most _SENDS times in all). Failing for good, CommitFailed after `_give_up`."""
    for _ in range(_SENDS):
        try:
            return await send_provide_bundle(fhir, items, bundle, repeatable=False)
        except FhirFailure as failure:
            last = failure
            if not failure.transient:
                break  # refused: nothing was stored
            try:
                found = await find_submission_set(fhir, items, bundle)
            except FhirFailure:
                await _give_up(fhir, items, failure, uploaded, known=False)
            if found:
                log.info("MHD commit: the transaction's answer was lost, but its SubmissionSet is there")
                return found
    await _give_up(fhir, items, last, uploaded, known=True)


async def _give_up(
    fhir: FhirSession, items: Sequence[CommitItem], failure: FhirFailure, uploaded: list[str], *, known: bool
) -> NoReturn:
    """CommitFailed for a transaction that failed for good; when it is `known` that nothing was stored, the
    uploaded Binaries are deleted first (nothing refers to them). Unknown: they stay (a repeat finds the
    SubmissionSet, or uploads anew: either way no photo twice in the record)."""
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
