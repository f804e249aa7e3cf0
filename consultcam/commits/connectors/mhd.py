"""Publishing a commit as an IHE MHD Provide Document Bundle [ITI-65] (`fhir+https://…?profile=mhd`).

The Document Source side of ITI-65 (profiles.ihe.net/ITI/MHD/ITI-65.html): one FHIR transaction POSTed to the
base URL (§2:3.65.4.1.2), which the Document Recipient processes atomically (§2:3.65.4.1.3), answered by a
`transaction-response` Bundle with one entry per request entry, in order, each with a location
(§2:3.65.4.2.2). The Bundle itself is built by `consultcam.commits.fhir_mhd`.

MHD has no other way to write: a server whose CapabilityStatement does not list the `transaction` interaction
cannot take it, and the commit is refused before anything is sent (`MHD_NEEDS_TRANSACTION`).

A later attempt of a commit (one whose earlier attempt got no answer) first looks for that commit's
SubmissionSet (`GET List?identifier=urn:ietf:rfc:3986|urn:uuid:<commit id>`): the transaction is atomic, so
if it is there every photo is, and nothing is sent again. Otherwise the ifNoneExist of the List and
DocumentReferences would keep those single, but a Binary (which has nothing to search on) would be stored
twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import httpx

from consultcam.commits.connectors.base import (
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
from consultcam.commits.connectors.fhir_commit import saved_entries, transaction_failed
from consultcam.kit.status import ImageCommitStatus

__all__ = [
    "MHD_NEEDS_TRANSACTION",
    "find_submission_set",
    "publish",
    "published_earlier",
    "refuse_without_transaction",
    "send_provide_bundle",
]

#: Why a server without transactions cannot take an MHD commit: the words of the refusal.
MHD_NEEDS_TRANSACTION = (
    "the patient record system does not support FHIR transactions, and publishing as IHE MHD (ITI-65 "
    "Provide Document Bundle) needs transaction support"
)


def refuse_without_transaction(items: Sequence[CommitItem], capabilities: Capabilities) -> None:
    """Raise CommitFailed (nothing sent) unless the server takes a transaction (ITI-65 §2:3.65.4.1.2)."""
    if not capabilities.transaction:
        raise CommitFailed(
            f"The photos were not sent: {MHD_NEEDS_TRANSACTION}. Nothing was saved; ask the practice's EMR "
            "administrator to enable transactions, or to set an EMR URL without ?profile=mhd.",
            all_failed(items, MHD_NEEDS_TRANSACTION),
        )


async def published_earlier(
    fhir: FhirSession, items: Sequence[CommitItem], bundle: dict[str, Any]
) -> list[ImageResult] | None:
    """The results of an earlier attempt that published `bundle`'s SubmissionSet (found by its entryUUID), in
    item order from its entries; None when it is not there or the server cannot say (the Bundle is then
    sent, and its conditional creates keep the List and DocumentReferences single)."""
    try:
        return await find_submission_set(fhir, items, bundle)
    except FhirFailure:
        return None


async def find_submission_set(
    fhir: FhirSession, items: Sequence[CommitItem], bundle: dict[str, Any]
) -> list[ImageResult] | None:
    """As `published_earlier`, but None only when the server answered that the SubmissionSet is not there;
    FhirFailure when it cannot say (no answer, an error, or a List that does not match `items`)."""
    (submission_set,) = [e["resource"] for e in bundle["entry"] if e["request"]["url"] == "List"]
    (entry_uuid,) = [i for i in submission_set["identifier"] if i.get("use") == "official"]
    token = f"{entry_uuid['system']}|{entry_uuid['value']}"
    response = await fhir.send("GET", f"{fhir.base_url}/List?{urlencode({'identifier': token})}")
    raise_for_status(response, "The document registry could not be searched")
    body = json_body(response)
    found: list[dict[str, Any]] = [
        entry["resource"]
        for entry in (body.get("entry") or [] if isinstance(body, dict) else [])
        if isinstance(entry, dict)
        and isinstance(entry.get("resource"), dict)
        and entry["resource"].get("resourceType") == "List"
    ]
    if not found and isinstance(body, dict) and body.get("resourceType") == "Bundle":
        return None
    unclear = FhirFailure(
        "The document registry gave an answer consultcam does not understand",
        "the search for the SubmissionSet did not find exactly one List with one entry per photo",
        status=response.status_code,
    )
    if len(found) != 1 or len(found[0].get("entry") or []) != len(items):
        raise unclear
    results = []
    for item, entry in zip(items, found[0]["entry"], strict=True):
        reference = entry.get("item", {}).get("reference") if isinstance(entry, dict) else None
        resource_id = fhir.client.resource_id(reference)
        if resource_id is None or not resource_id.startswith("DocumentReference/"):
            raise unclear
        results.append(ImageResult(item.image_id, ImageCommitStatus.COMMITTED, resource_id=resource_id))
    return results


async def publish(
    fhir: FhirSession,
    items: Sequence[CommitItem],
    bundle: dict[str, Any],
    progress: ProgressCallback,
) -> list[ImageResult]:
    """POST the Provide Document Bundle `bundle` (from `fhir_mhd.build_provide_bundle` for `items`) to the
    base URL; one "committed" result per item whose resource_id is its DocumentReference on the server
    ("DocumentReference/<id>"). Raises CommitFailed with the server's words: nothing was saved (a
    transaction); RequestTooLarge (a CommitFailed) when the server answered 413.
    """
    try:
        results = await send_provide_bundle(fhir, items, bundle)
    except FhirFailure as failure:
        raise transaction_failed(failure, items) from None
    await progress(len(items), len(items))
    return results


async def send_provide_bundle(
    fhir: FhirSession, items: Sequence[CommitItem], bundle: dict[str, Any], *, repeatable: bool = True
) -> list[ImageResult]:
    """POST `bundle`; one "committed" result per item. FhirFailure with the server's words. `repeatable`:
    retried after no answer, a 5xx or a 429 (for a Bundle of conditional creates, which make a repeat find
    what the first one stored); otherwise sent once."""
    response = await fhir.send("POST", fhir.base_url, json=bundle, repeatable=repeatable)
    raise_for_status(response, "The document registry refused the photos")
    return await asyncio.to_thread(_results, fhir, response, items, bundle)


def _results(
    fhir: FhirSession, response: httpx.Response, items: Sequence[CommitItem], bundle: dict[str, Any]
) -> list[ImageResult]:
    """The results from a transaction-response (ITI-65 §2:3.65.4.2.2: one entry per request entry, in order,
    each 200/201 with a location; `fhir_commit.saved_entries`): each item's DocumentReference, found by its
    entry's fullUrl. FhirFailure otherwise."""
    stored = saved_entries(fhir, response, len(bundle["entry"]), "The document registry")
    where = {
        request["fullUrl"]: resource_id for request, resource_id in zip(bundle["entry"], stored, strict=True)
    }
    return [
        ImageResult(
            item.image_id,
            ImageCommitStatus.COMMITTED,
            resource_id=where.get(f"urn:uuid:{uuid.UUID(item.image_id)}"),
        )
        for item in items
    ]
