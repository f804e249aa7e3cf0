"""The two ways a commit is written into a FHIR R4 server, both all or nothing (hl7.org/fhir/R4/http.html):

* `commit_transaction`: one transaction Bundle; the server applies every entry or none.
* `commit_one_by_one`: each resource is a conditional create (`If-None-Exist: identifier=<system>|<image
  id>`); when one fails for good, the resources this commit created (201) are deleted again. Resources that
  already existed (200 on a conditional create: an earlier, interrupted commit put them there) are left alone.

Never twice: every entry is a conditional create on the image id, so a retried request (after a timeout, a
5xx or a 429) or a repeated commit finds the resource instead of making a second one. That is what makes
retrying these POSTs safe (`repeatable=True`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import httpx

from consultcam.commits.connectors.base import (
    CommitContext,
    CommitFailed,
    CommitItem,
    ImageResult,
    ProgressCallback,
    all_failed,
    preparation_failed,
)
from consultcam.commits.connectors.fhir_client import (
    FhirFailure,
    FhirSession,
    id_of,
    json_body,
    outcome_text,
    raise_for_status,
)
from consultcam.commits.fhir_media import assemble_transaction_bundle, photo_name
from consultcam.kit.status import ImageCommitStatus

__all__ = [
    "ADMIN",
    "RequestTooLarge",
    "commit_one_by_one",
    "commit_transaction",
    "compensate",
    "delete_all",
    "failed_before_writing",
    "saved_entries",
    "send_transaction",
    "transaction_failed",
    "what_to_do",
]

log = logging.getLogger(__name__)

ADMIN = "ask the practice's EMR administrator"


class RequestTooLarge(CommitFailed):
    """The server answered 413 (a request body larger than it takes) and nothing this attempt wrote is left:
    the same commit in smaller requests may succeed (`fhir_limits.py`)."""


def what_to_do(failure: FhirFailure) -> str:
    """The end of a CommitFailed sentence: what the GP can do about `failure`."""
    if failure.status in (401, 403):
        return "ask the practice's IT support to check consultcam's EMR connection settings."
    if failure.status is None:
        return "check the practice's network and try again."
    if failure.transient:
        return "try again in a few minutes."
    return f"correct the problem and commit again, or {ADMIN}."


def failed_before_writing(items: Sequence[CommitItem], failure: FhirFailure) -> CommitFailed:
    """The CommitFailed for a failure before any resource was sent (capabilities, sign-in)."""
    return CommitFailed(
        f"{failure.words}: {failure.outcome}. Nothing was saved; {what_to_do(failure)}",
        all_failed(items, failure.outcome),
    )


async def commit_transaction(
    fhir: FhirSession,
    context: CommitContext,
    items: Sequence[CommitItem],
    entries: list[dict[str, Any]],
    progress: ProgressCallback,
) -> list[ImageResult]:
    """POST one transaction Bundle of `entries` to the base URL; one "committed" result per item, or
    CommitFailed with the server's words."""
    try:
        bundle = await asyncio.to_thread(assemble_transaction_bundle, context, entries)
    except ValueError as exc:
        raise preparation_failed(items, str(exc), "the patient record") from exc
    try:
        results = await send_transaction(fhir, bundle, items)
    except FhirFailure as failure:
        raise transaction_failed(failure, items) from None
    await progress(len(items), len(items))
    return results


def transaction_failed(failure: FhirFailure, items: Sequence[CommitItem]) -> CommitFailed:
    """The error for a transaction the server did not take: RequestTooLarge for a 413, else CommitFailed,
    every item failed, in the server's words and what to do. A transaction is atomic (FHIR R4 http.html
    #transaction): nothing was saved, or, after no answer or a server error, perhaps all of it, which a
    repeat finds again."""
    if failure.transient:
        tail = "Nothing was saved, or if it was, committing again will not save the photos twice"
    else:
        tail = "Nothing was saved"
    refused = RequestTooLarge if failure.status == 413 else CommitFailed
    return refused(
        f"{failure.words}: {failure.outcome}. {tail}; {what_to_do(failure)}",
        all_failed(items, failure.outcome),
    )


async def send_transaction(
    fhir: FhirSession, bundle: dict[str, Any], items: Sequence[CommitItem]
) -> list[ImageResult]:
    """POST the transaction `bundle` (one entry per item, in order); one "committed" result per item.
    Raises FhirFailure with the server's words (status 413 when the body was too large for it)."""
    response = await fhir.send("POST", fhir.base_url, json=bundle, repeatable=True)
    raise_for_status(response, "The patient record system refused the photos")
    return _transaction_results(fhir, response, items)


def _transaction_results(
    fhir: FhirSession, response: httpx.Response, items: Sequence[CommitItem]
) -> list[ImageResult]:
    """One result per item from a transaction-response Bundle; FhirFailure when an entry was not saved."""
    stored = saved_entries(fhir, response, len(items), "The patient record system")
    return [
        ImageResult(item.image_id, ImageCommitStatus.COMMITTED, resource_id=resource_id)
        for item, resource_id in zip(items, stored, strict=True)
    ]


def saved_entries(fhir: FhirSession, response: httpx.Response, count: int, server: str) -> list[str | None]:
    """The stored resource ("Type/id", or None when the server does not say) of each of the `count` entries
    of a transaction, in order, from its transaction-response Bundle (FHIR R4 http.html#transaction-response:
    one entry per request entry, each with a 2xx status and a location). Raises FhirFailure, its words
    beginning with `server` ("The patient record system"), when the answer is not such a Bundle or an entry
    was not saved."""
    body = json_body(response)
    answers = body.get("entry") if isinstance(body, dict) else None
    if (
        not isinstance(body, dict)
        or body.get("resourceType") != "Bundle"
        or not isinstance(answers, list)
        or len(answers) != count
    ):
        raise FhirFailure(
            f"{server} gave an answer consultcam does not understand",
            "the transaction-response Bundle is missing or has the wrong number of entries",
            status=response.status_code,
        )
    stored: list[str | None] = []
    for answer in answers:
        reply = answer.get("response") if isinstance(answer, dict) else None
        status = str(reply.get("status", "")) if isinstance(reply, dict) else ""
        if not status.startswith(("200", "201")):
            outcome = outcome_text(reply.get("outcome") if isinstance(reply, dict) else None)
            raise FhirFailure(
                f"{server} did not save every photo",
                outcome or f"entry status {status or 'missing'}",
                status=response.status_code,
            )
        location = reply.get("location") if isinstance(reply, dict) else None
        stored.append(fhir.client.resource_id(location) or id_of(answer.get("resource")))
    return stored


async def commit_one_by_one(
    fhir: FhirSession,
    items: Sequence[CommitItem],
    entries: list[dict[str, Any]],
    progress: ProgressCallback,
    resource: str,
) -> list[ImageResult]:
    """A conditional create of each entry's resource (of type `resource`) in turn; on a failure for good,
    delete what this commit created and raise CommitFailed (see `compensate`)."""
    created: list[str] = []  # resource ids this commit made (201), to remove if a later one fails
    found: dict[int, str] = {}  # item index → resource an earlier attempt made (200): left alone
    results: list[ImageResult] = []
    for index, (item, entry) in enumerate(zip(items, entries, strict=True)):
        try:
            response = await fhir.send(
                "POST",
                f"{fhir.base_url}/{resource}",
                json=entry["resource"],
                headers={"If-None-Exist": entry["request"]["ifNoneExist"]},
                repeatable=True,
            )
            raise_for_status(response, f"The patient record system refused {photo_name(item)}")
            resource_id = fhir.client.resource_id(response.headers.get("location")) or id_of(
                json_body(response)
            )
            if response.status_code == 201:
                if resource_id is None:
                    raise FhirFailure(
                        "The patient record system saved a photo without saying where",
                        "201 Created without a Location header",
                        status=201,
                    )
                created.append(resource_id)
            else:
                found[index] = resource_id or "an existing resource"
        except FhirFailure as failure:
            await compensate(fhir, items, index, failure, created, found)
        results.append(ImageResult(item.image_id, ImageCommitStatus.COMMITTED, resource_id=resource_id))
        try:
            await progress(index + 1, len(items))
        except Exception:
            await delete_all(fhir, created)  # all or nothing, even when progress fails
            raise
    return results


async def compensate(
    fhir: FhirSession,
    items: Sequence[CommitItem],
    failed_index: int,
    failure: FhirFailure,
    created: list[str],
    found: dict[int, str],
    *,
    names: Mapping[str, str] | None = None,
    unsure: str | None = None,
) -> NoReturn:
    """Delete what this attempt created, newest first, then raise CommitFailed saying what is left:
    resources it could not delete, and those `found` from an earlier attempt of the same commit (an
    interrupted one), which are the record's now and stay (a retry finds them again).

    `names` (resource id → the title a person sees in the EMR, e.g. a DocumentReference's
    "01-left-forearm.tiff") makes the message name each resource left behind by id and title, so the
    practice can find and remove it. `unsure`, for a transient failure of a write whose outcome could
    not be checked, replaces the usual "committing again will not save any photo twice"."""
    left = await delete_all(fhir, created)
    failed_item = items[failed_index]
    if failure.transient:
        tail = unsure or "committing again will not save any photo twice"
    else:
        tail = "correct the problem and commit again, or " + ADMIN
    remaining = ", ".join(_named(resource_id, names) for resource_id in left)
    detail = f"{failure.words}: {failure.outcome}. "
    if left:
        photos = "photo that was" if len(left) == 1 else "photos that were"
        detail += (
            f"The other photos were not saved, and {len(left)} {photos} already saved could not be "
            f"removed: {remaining}; {ADMIN} to delete "
            f"{'it' if len(left) == 1 else 'them'}, then commit again."
        )
    elif found:
        photos = "photo" if len(found) == 1 else "photos"
        detail += (
            f"This time nothing was saved, but {len(found)} {photos} saved by an earlier, interrupted "
            f"attempt of this commit {'is' if len(found) == 1 else 'are'} in the record "
            f"({', '.join(found.values())}); {tail}: those are not saved twice."
        )
    else:
        detail += f"Nothing was saved; {tail}."
    not_saved = f"not saved because {photo_name(failed_item)} could not be saved"
    if left:
        not_saved += f"; photos left in the record that must be removed: {remaining}"

    def why(index: int) -> str:
        if index == failed_index:
            return failure.outcome
        if index in found:
            return f"already in the record from an earlier, interrupted attempt ({found[index]})"
        return not_saved

    results = [
        ImageResult(item.image_id, ImageCommitStatus.FAILED, error=why(index))
        for index, item in enumerate(items)
    ]
    raise (RequestTooLarge if failure.status == 413 and not left else CommitFailed)(detail, results)


def _named(resource_id: str, names: Mapping[str, str] | None) -> str:
    """ "DocumentReference/12 (01-left-forearm.tiff)" when the resource has a title, else its id."""
    title = (names or {}).get(resource_id)
    return f"{resource_id} ({title})" if title else resource_id


async def delete_all(fhir: FhirSession, created: list[str]) -> list[str]:
    """Delete `created`, newest first; returns the ids that could not be deleted, in creation order."""
    left: list[str] = []
    for resource_id in reversed(created):
        try:
            response = await fhir.send("DELETE", f"{fhir.base_url}/{resource_id}")
            if response.status_code not in (404, 410):  # already gone is what we want
                raise_for_status(response, "The patient record system refused a deletion")
        except FhirFailure as delete_failure:
            log.warning("compensating delete of %s failed: %s", resource_id, delete_failure.outcome)
            left.append(resource_id)
    left.reverse()
    return left
