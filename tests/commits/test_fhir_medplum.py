"""The `fhir` connector against a second FHIR engine: a server on Medplum's router, repository and
validator (tests/medplum/server.mjs), in both ways of writing (one transaction, conditional creates), with
Media and with DocumentReference; and against a 1 MB request limit (Binary first, all or nothing, never
twice)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.media import Media

from consultcam.commits.connectors.base import CommitContext, CommitFailed, CommitItem
from consultcam.commits.connectors.fhir import FhirConnector
from consultcam.commits.fhir_media import IMAGE_IDENTIFIER_SYSTEM
from consultcam.kit.http import RetryPolicy
from tests.commits.factories import FOREARM, Progress, commit_context, megabyte_photo, photo_item, photo_items
from tests.commits.medplum_server import MedplumServer

FAST = {"retry": RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.05), "timeout": 30.0}
MODES = [pytest.param(True, id="transaction"), pytest.param(False, id="conditional-creates")]
MB = 1024 * 1024
EYE_REGION = {"system": "http://snomed.info/sct", "code": "371398005", "display": "Eye region structure"}


@pytest.fixture(scope="module")
def medplum() -> Iterator[MedplumServer]:
    """One server for the module (it takes seconds to start); each test uses fresh image ids, and resets the
    switches it sets."""
    with MedplumServer() as server:
        yield server


@pytest.fixture
def server(medplum: MedplumServer) -> Iterator[MedplumServer]:
    defaults = {
        "transaction": True,
        "binary": True,
        "max_request_bytes": MB,
        "refuse_write": 0,
        "lose_answers": 0,
        "fail_requests": 0,
    }
    medplum.settings(**defaults)
    yield medplum
    medplum.settings(**defaults)


def connector(server: MedplumServer, **options: Any) -> FhirConnector:
    return FhirConnector(server.base_url, **{**FAST, **options})


def found(server: MedplumServer, kind: str, item: CommitItem) -> list[dict[str, Any]]:
    """The resources of `kind` the server finds by the photo's image identifier (FHIR search)."""
    return server.search(kind, identifier=f"{IMAGE_IDENTIFIER_SYSTEM}|{item.image_id}")


def attachment_bytes(server: MedplumServer, attachment: dict[str, Any]) -> bytes:
    """The bytes an Attachment carries: inline `data`, or the Binary its `url` points at, read back."""
    if "data" in attachment:
        return base64.b64decode(attachment["data"])
    binary = server.read(attachment["url"])
    assert binary["contentType"] == attachment["contentType"]
    return base64.b64decode(binary["data"])


def assert_landed(server: MedplumServer, kind: str, items: list[CommitItem], results: list[Any]) -> None:
    """Each photo is in the record once, as `kind`, with its bytes, size and SHA-1 (FHIR R4 Attachment)."""
    for item, result in zip(items, results, strict=True):
        resources = found(server, kind, item)
        assert len(resources) == 1, f"{item.image_id}: {len(resources)} {kind}"
        resource = resources[0]
        assert result.resource_id == f"{kind}/{resource['id']}"
        attachment = resource["content"] if kind == "Media" else resource["content"][0]["attachment"]
        assert attachment_bytes(server, attachment) == item.jpeg
        assert attachment["size"] == len(item.jpeg)
        sha1 = hashlib.sha1(item.jpeg, usedforsecurity=False).digest()
        assert base64.b64decode(attachment["hash"]) == sha1
        assert resource["subject"]["reference"] == "Patient/pat-77"


# -- what Medplum's validator takes ------------------------------------------------------------------------


@pytest.mark.parametrize("transaction", MODES)
@pytest.mark.parametrize("resource", ["Media", "DocumentReference"])
async def test_photos_land_in_medplum(server: MedplumServer, transaction: bool, resource: str) -> None:
    server.settings(transaction=transaction)
    items = photo_items(3, bodySite=FOREARM, laterality="left", view="close-up", notes="Itchy for 2 weeks")
    items[1].metadata["bodySite"] = EYE_REGION
    context = commit_context(consent={"scope": "teaching", "givenBy": "patient"})

    results = await connector(server, resource=resource).commit(context, items, Progress())

    assert [r.status for r in results] == ["committed"] * 3
    assert_landed(server, resource, items, results)
    written = server.requests("POST")[-3:] if not transaction else server.requests("POST")[-1:]
    assert all(r["status"] in (200, 201) for r in written)


@pytest.mark.parametrize(
    ("metadata", "changes"),
    [
        ({"bodySite": FOREARM, "laterality": "bilateral", "view": "dermoscopy"}, {}),
        ({"laterality": "right", "view": "overview"}, {"practitioner_id": None}),
        ({"bodySite": FOREARM, "laterality": "not-applicable"}, {"encounter_in_record": False}),
        (
            {"label": "  ", "notes": "Line one\nline two"},
            {"consent": {"scope": "clinical", "givenBy": "guardian"}},
        ),
    ],
    ids=["bilateral-dermoscopy", "side-only-no-practitioner", "no-encounter", "blank-label-consent"],
)
@pytest.mark.parametrize("resource", ["Media", "DocumentReference"])
async def test_every_kind_of_metadata_passes_medplums_validator(
    server: MedplumServer, resource: str, metadata: dict[str, Any], changes: dict[str, Any]
) -> None:
    items = photo_items(1, **metadata)
    context = commit_context(**changes)

    results = await connector(server, resource=resource).commit(context, items, Progress())

    assert_landed(server, resource, items, results)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"status": "done"}, "did not satisfy terminology binding"),
        ({"identifier": [{"system": "urn:consultcam:image id", "value": "x"}]}, "Invalid uri format"),
        ({"extension": [{"url": "https://example.org/no-value"}]}, "ext-1"),
    ],
    ids=["status-outside-required-value-set", "uri-with-a-space", "extension-without-value"],
)
def test_the_server_refuses_what_medplum_refuses(
    server: MedplumServer, change: dict[str, Any], words: str
) -> None:
    """The validation is live: what fhir.resources lets through, Medplum's validator refuses (400)."""
    media = {"resourceType": "Media", "status": "completed", "content": {"contentType": "image/jpeg"}}
    Media.model_validate({**media, **change})

    response = httpx.post(
        f"{server.base_url}/Media",
        json={**media, **change},
        headers={"Content-Type": "application/fhir+json"},
    )

    assert response.status_code == 400
    assert words in response.text
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_a_tiff_inline_is_refused_where_there_is_no_binary(server: MedplumServer) -> None:
    """Why large attachments go as Binary: Medplum's validator takes at most 1 MiB of base64Binary."""
    server.settings(binary=False, max_request_bytes=32 * 1024 * 1024)
    items = photo_items(1)

    with pytest.raises(CommitFailed) as failed:
        await connector(
            server, resource="DocumentReference", document_format="tiff", max_request_bytes=32 * 1024 * 1024
        ).commit(commit_context(), items, Progress())

    assert "base64Binary exceeds 1048576 bytes" in failed.value.detail
    assert found(server, "DocumentReference", items[0]) == []


@pytest.mark.parametrize("transaction", MODES)
@pytest.mark.parametrize("fmt", ["pdf", "tiff"])
async def test_converted_documents_land_in_medplum(
    server: MedplumServer, fmt: str, transaction: bool
) -> None:
    """A TIFF is several MB: more than Medplum's validator takes inline (1 MiB of base64Binary), so it goes
    as a Binary even where the request limit would take it."""
    server.settings(transaction=transaction, max_request_bytes=32 * 1024 * 1024)
    items = photo_items(2)

    results = await connector(
        server, resource="DocumentReference", document_format=fmt, max_request_bytes=32 * 1024 * 1024
    ).commit(commit_context(), items, Progress())

    assert [r.status for r in results] == ["committed"] * 2
    for item in items:
        (document,) = found(server, "DocumentReference", item)
        attachment = document["content"][0]["attachment"]
        assert attachment["contentType"] == {"pdf": "application/pdf", "tiff": "image/tiff"}[fmt]
        assert len(attachment_bytes(server, attachment)) == attachment["size"]


async def test_a_refused_photo_leaves_nothing_in_medplum(server: MedplumServer) -> None:
    server.settings(transaction=False, refuse_write=2)
    items = photo_items(3)

    with pytest.raises(CommitFailed) as failed:
        await connector(server).commit(commit_context(), items, Progress())

    assert "patient is not registered" in failed.value.detail
    assert all(found(server, "Media", item) == [] for item in items)


# -- a 1 MB request limit ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def megabyte_items() -> list[bytes]:
    return [megabyte_photo(index) for index in range(8)]


def fresh(photos: list[bytes]) -> list[CommitItem]:
    """The photos as new items, each made unique by a JPEG comment (COM segment) so that the Binaries of
    one test are told from another's by their bytes."""
    items = []
    for index, jpeg in enumerate(photos):
        comment = uuid.uuid4().hex.encode()
        unique = jpeg[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + jpeg[2:]
        items.append(photo_item(unique, index))
    return items


def ours(server: MedplumServer, kind: str, items: list[CommitItem]) -> list[dict[str, Any]]:
    """The stored resources of `kind` that hold one of `items`' bytes (Binary) or identifiers (others)."""
    if kind == "Binary":
        wanted = {base64.b64encode(item.jpeg).decode() for item in items}
        return [b for b in server.resources("Binary") if b.get("data") in wanted]
    ids = {item.image_id for item in items}
    return [r for r in server.resources(kind) if {i["value"] for i in r.get("identifier", [])} & ids]


@pytest.mark.parametrize("transaction", MODES)
async def test_eight_megabyte_photos_fit_a_1_mb_server(
    server: MedplumServer, megabyte_items: list[bytes], transaction: bool
) -> None:
    server.settings(transaction=transaction)
    items = fresh(megabyte_items)
    assert sum(len(item.jpeg) for item in items) > 7_000_000
    before = len(server.requests())

    results = await connector(server).commit(commit_context(), items, Progress())

    assert [r.status for r in results] == ["committed"] * 8
    assert_landed(server, "Media", items, results)
    sent = server.requests()[before:]
    assert max(r["bytes"] for r in sent) <= MB
    assert all(r["status"] < 400 for r in sent)
    assert [r["path"] for r in sent if r["path"].endswith("/Binary")] == ["/fhir/Binary"] * 8
    writes = [r for r in sent if r["method"] == "POST" and not r["path"].endswith("/Binary")]
    assert [r["path"] for r in writes] == (["/fhir"] if transaction else ["/fhir/Media"] * 8)


@pytest.mark.parametrize("transaction", MODES)
async def test_a_refused_photo_after_the_binaries_leaves_nothing_behind(
    server: MedplumServer, megabyte_items: list[bytes], transaction: bool
) -> None:
    server.settings(transaction=transaction, refuse_write=8 + 3)  # the third Media, after eight Binaries
    items = fresh(megabyte_items)

    with pytest.raises(CommitFailed) as failed:
        await connector(server).commit(commit_context(), items, Progress())

    assert "patient is not registered" in failed.value.detail
    assert "Nothing was saved" in failed.value.detail
    assert ours(server, "Media", items) == []
    assert ours(server, "Binary", items) == []
    deletes = server.requests("DELETE")
    assert sum(r["path"].startswith("/fhir/Binary/") for r in deletes) >= 8


async def test_a_refused_binary_deletes_the_binaries_before_it(
    server: MedplumServer, megabyte_items: list[bytes]
) -> None:
    server.settings(refuse_write=4)
    items = fresh(megabyte_items)

    with pytest.raises(CommitFailed) as failed:
        await connector(server).commit(commit_context(), items, Progress())

    assert "Lesion D" in failed.value.detail
    assert [r.status for r in failed.value.results] == ["failed"] * 8
    assert ours(server, "Binary", items) == []
    assert ours(server, "Media", items) == []


@pytest.mark.parametrize("transaction", MODES)
async def test_a_repeated_commit_saves_no_photo_or_binary_twice(
    server: MedplumServer, megabyte_items: list[bytes], transaction: bool
) -> None:
    server.settings(transaction=transaction)
    items, context = fresh(megabyte_items), commit_context()
    first = await connector(server).commit(context, items, Progress())

    again = await connector(server).commit(context, items, Progress())

    assert [r.resource_id for r in again] == [r.resource_id for r in first]
    assert len(ours(server, "Media", items)) == 8
    assert len(ours(server, "Binary", items)) == 8


@pytest.mark.parametrize("transaction", MODES)
async def test_a_lost_answer_is_retried_without_a_second_photo_or_binary(
    server: MedplumServer, megabyte_items: list[bytes], transaction: bool
) -> None:
    server.settings(transaction=transaction, lose_answers=1)  # saved, then answered 503
    items = fresh(megabyte_items)
    before = len(server.requests())

    results = await connector(server).commit(commit_context(), items, Progress())

    assert_landed(server, "Media", items, results)
    assert len(ours(server, "Binary", items)) == 8
    writes = [r for r in server.requests()[before:] if r["method"] == "POST" and r["path"] != "/fhir/Binary"]
    assert [r["status"] for r in writes[:2]] == [503, 200]


@pytest.mark.parametrize("transaction", MODES)
async def test_every_answer_lost_keeps_the_binaries_the_stored_photos_refer_to(
    server: MedplumServer, megabyte_items: list[bytes], transaction: bool
) -> None:
    """Every try of the write is stored and its answer lost: the commit fails (consultcam cannot know), but
    the Binaries the stored resources point at are not deleted, and a repeat completes the commit with
    every photo readable and none twice."""
    server.settings(transaction=transaction, lose_answers=3)  # every try (FAST: 3 attempts)
    items, context = fresh(megabyte_items), commit_context()
    with pytest.raises(CommitFailed):
        await connector(server).commit(context, items, Progress())
    server.settings(lose_answers=0)

    results = await connector(server).commit(context, items, Progress())

    assert_landed(server, "Media", items, results)  # reads each Media's Binary back


async def test_a_repeat_after_an_interrupted_attempt_uploads_only_what_is_missing(
    server: MedplumServer, megabyte_items: list[bytes]
) -> None:
    items, context = fresh(megabyte_items), commit_context()
    await connector(server).commit(context, items[:3], Progress())  # what an interrupted attempt left
    before = len(server.requests())

    results = await connector(server).commit(context, items, Progress())

    assert_landed(server, "Media", items, results)
    assert len(ours(server, "Binary", items)) == 8
    uploads = [r for r in server.requests()[before:] if r["path"] == "/fhir/Binary"]
    assert len(uploads) == 5


async def test_a_413_teaches_the_limit_when_the_setting_is_too_high(
    server: MedplumServer, megabyte_items: list[bytes]
) -> None:
    items = fresh(megabyte_items[:3])
    before = len(server.requests())

    results = await connector(server, max_request_bytes=64 * MB).commit(commit_context(), items, Progress())

    assert_landed(server, "Media", items, results)
    statuses = [(r["path"], r["status"]) for r in server.requests()[before:] if r["method"] == "POST"]
    assert statuses[0] == ("/fhir", 413)
    assert statuses[1:] == [("/fhir/Binary", 201)] * 3 + [("/fhir", 200)]


# -- a 1 MB limit and no Binary: several transactions ------------------------------------------------------


async def test_without_binary_a_large_commit_goes_in_several_transactions(server: MedplumServer) -> None:
    server.settings(binary=False)
    items = photo_items(8)
    assert sum(len(item.jpeg) for item in items) * 4 / 3 > MB
    before = len(server.requests())

    results = await connector(server).commit(commit_context(), items, Progress())

    assert_landed(server, "Media", items, results)
    transactions = [r for r in server.requests()[before:] if r["method"] == "POST"]
    assert len(transactions) >= 2
    assert all(r["path"] == "/fhir" and r["status"] == 200 and r["bytes"] <= MB for r in transactions)


async def test_without_binary_a_refused_later_transaction_removes_the_earlier_ones(
    server: MedplumServer,
) -> None:
    server.settings(binary=False, refuse_write=8)
    items = photo_items(8)

    with pytest.raises(CommitFailed) as failed:
        await connector(server).commit(commit_context(), items, Progress())

    assert "Nothing was saved" in failed.value.detail
    assert ours(server, "Media", items) == []
    assert len([r for r in server.requests("DELETE") if r["path"].startswith("/fhir/Media/")]) >= 1


async def test_medplum_refuses_a_transaction_of_more_than_eight_conditional_creates(
    server: MedplumServer,
) -> None:
    # Why CONSULTCAM_FHIR_MAX_TRANSACTION_ENTRIES exists: Medplum's router refuses it as a whole.
    items = photo_items(12)
    with pytest.raises(CommitFailed) as failed:
        await connector(server).commit(commit_context(), items, Progress())
    assert "too many entries" in failed.value.detail
    assert ours(server, "Media", items) == []


@pytest.mark.parametrize("binary", [True, False], ids=["binary-first", "inline"])
async def test_twelve_photos_land_in_transactions_of_at_most_eight(
    server: MedplumServer, binary: bool
) -> None:
    server.settings(binary=binary)
    items = photo_items(12)
    before = len(server.requests())

    results = await connector(server, max_transaction_entries=8).commit(commit_context(), items, Progress())

    assert [r.status for r in results] == ["committed"] * 12
    assert_landed(server, "Media", items, results)
    transactions = [r for r in server.requests()[before:] if r["method"] == "POST" and r["path"] == "/fhir"]
    assert len(transactions) >= 2
    assert all(r["status"] == 200 and r["bytes"] <= MB for r in transactions)


async def test_a_refused_later_transaction_of_eight_leaves_nothing_behind(server: MedplumServer) -> None:
    items = fresh([item.jpeg for item in photo_items(12)])  # bytes of their own: Binaries told apart
    server.settings(refuse_write=12 + 10)  # after twelve Binaries, the tenth Media: in the second transaction

    with pytest.raises(CommitFailed) as failed:
        await connector(server, max_transaction_entries=8).commit(commit_context(), items, Progress())

    assert "Nothing was saved" in failed.value.detail
    assert ours(server, "Media", items) == []
    assert ours(server, "Binary", items) == []


# -- IHE MHD into the second engine ------------------------------------------------------------------------


async def test_an_mhd_provide_bundle_lands_in_medplum(server: MedplumServer) -> None:
    """`?profile=mhd` (ITI-65, built by fhir_mhd.py): the SubmissionSet List, DocumentReferences and Binaries
    pass Medplum's validator and are read back, the attachment's url resolved to the stored Binary."""
    items = photo_items(2, bodySite=FOREARM, laterality="left")
    emr = FhirConnector.from_url(f"fhir+{server.base_url}?profile=mhd", **FAST)

    results = await emr.commit(commit_context(), items, Progress())

    assert [r.status for r in results] == ["committed"] * 2
    assert_landed(server, "DocumentReference", items, results)
    lists = [r for r in server.resources("List") if r.get("code", {}).get("coding", [{}])[0].get("code")]
    assert any(len(r.get("entry", [])) == 2 for r in lists)


async def test_an_mhd_bundle_of_four_photos_lands_in_medplum_as_plain_creates(server: MedplumServer) -> None:
    """Four photos are nine entries (SubmissionSet, DocumentReferences, Binaries): Medplum refuses that many
    conditional creates in one transaction; with CONSULTCAM_FHIR_MAX_TRANSACTION_ENTRIES=8 they go as plain
    creates, inline, in one transaction, and a repeat of the commit stores nothing twice."""
    items = fresh([item.jpeg for item in photo_items(4)])
    context = commit_context()
    with pytest.raises(CommitFailed) as refused:
        await mhd(server).commit(context, items, Progress())
    assert "too many entries" in refused.value.detail
    assert submission_sets(server, context) == []
    before = len(server.requests())

    results = await mhd(server, max_transaction_entries=8).commit(context, items, Progress())

    assert [r.status for r in results] == ["committed"] * 4
    assert_landed(server, "DocumentReference", items, results)
    (listed,) = submission_sets(server, context)
    assert [e["item"]["reference"] for e in listed["entry"]] == [r.resource_id for r in results]
    posts = [r["path"] for r in server.requests()[before:] if r["method"] == "POST"]
    assert posts == ["/fhir"]  # the Binaries inline, in the one transaction
    again = await mhd(server, max_transaction_entries=8).commit(
        dataclasses.replace(context, attempt=2), items, Progress()
    )
    assert [r.resource_id for r in again] == [r.resource_id for r in results]
    assert len(submission_sets(server, context)) == 1
    assert len(ours(server, "Binary", items)) == 4


# -- IHE MHD and a 1 MB request limit ------------------------------------------------------------------------


def mhd(server: MedplumServer, **options: Any) -> FhirConnector:
    return FhirConnector.from_url(f"fhir+{server.base_url}?profile=mhd", **{**FAST, **options})


def submission_sets(server: MedplumServer, context: CommitContext) -> list[dict[str, Any]]:
    """The SubmissionSet Lists of the commit, found by their entryUUID (urn:uuid:<commit id>)."""
    return server.search("List", identifier=f"urn:ietf:rfc:3986|urn:uuid:{uuid.UUID(context.commit_id)}")


def assert_published(
    server: MedplumServer, context: CommitContext, items: list[CommitItem], results: list[Any]
) -> None:
    """One SubmissionSet listing the eight DocumentReferences in order; each DocumentReference once, its
    attachment.url a Binary on the server holding the photo's bytes, size and SHA-1 those of the bytes; one
    Binary per photo (none inline as well)."""
    assert [r.status for r in results] == ["committed"] * len(items)
    assert_landed(server, "DocumentReference", items, results)
    (listed,) = submission_sets(server, context)
    assert [e["item"]["reference"] for e in listed["entry"]] == [r.resource_id for r in results]
    for item in items:
        (document,) = found(server, "DocumentReference", item)
        assert document["content"][0]["attachment"]["url"].startswith("Binary/")
    assert len(ours(server, "Binary", items)) == len(items)


async def test_eight_megabyte_photos_publish_as_mhd_within_a_1_mb_limit(
    server: MedplumServer, megabyte_items: list[bytes]
) -> None:
    """11 MB as one Provide Document Bundle does not fit: the photos go as Binaries first, then the Bundle
    without Binary entries, its DocumentReferences pointing at them; every request within 1 MiB."""
    items, context = fresh(megabyte_items), commit_context()
    before = len(server.requests())

    results = await mhd(server).commit(context, items, Progress())

    assert_published(server, context, items, results)
    sent = server.requests()[before:]
    assert max(r["bytes"] for r in sent) <= MB
    assert all(r["status"] < 400 for r in sent)
    posts = [r["path"] for r in sent if r["method"] == "POST"]
    assert posts == ["/fhir/Binary"] * 8 + ["/fhir"]


async def test_an_mhd_transaction_refused_after_the_binaries_leaves_nothing_behind(
    server: MedplumServer, megabyte_items: list[bytes]
) -> None:
    server.settings(refuse_write=8 + 1)  # the first write of the transaction, after eight Binaries
    items, context = fresh(megabyte_items), commit_context()

    with pytest.raises(CommitFailed) as failed:
        await mhd(server).commit(context, items, Progress())

    assert "patient is not registered" in failed.value.detail
    assert "Nothing was saved" in failed.value.detail
    assert [r.status for r in failed.value.results] == ["failed"] * 8
    assert ours(server, "Binary", items) == []
    assert ours(server, "DocumentReference", items) == []
    assert submission_sets(server, context) == []
    assert sum(r["path"].startswith("/fhir/Binary/") for r in server.requests("DELETE")) >= 8


async def test_a_lost_mhd_answer_stores_nothing_twice(
    server: MedplumServer, megabyte_items: list[bytes]
) -> None:
    """The transaction is stored, its answer lost (503). Its entries are plain creates, so it is not sent
    again blindly: the SubmissionSet is looked up, found, and the commit has succeeded: one List, each
    DocumentReference once, the eight Binaries kept."""
    server.settings(lose_answers=1)
    items, context = fresh(megabyte_items), commit_context()
    before = len(server.requests())

    results = await mhd(server).commit(context, items, Progress())
    sent = server.requests()[before:]

    assert_published(server, context, items, results)
    assert [r["status"] for r in sent if r["path"] == "/fhir"] == [503]  # sent once
    assert [r["method"] for r in sent if r["path"] == "/fhir/List"] == ["GET", "GET"]  # before, after


@pytest.mark.parametrize("failures", [pytest.param(1, id="sent-again"), pytest.param(3, id="given-up")])
async def test_an_mhd_transaction_not_stored_after_a_5xx_is_sent_again_after_looking(
    server: MedplumServer, megabyte_items: list[bytes], failures: int
) -> None:
    """503 without storing anything: the SubmissionSet is looked up, is not there, and the Bundle is sent
    again (at most three times); when every try fails, the Binaries are deleted and nothing is left."""
    server.settings(fail_requests=failures)
    items, context = fresh(megabyte_items), commit_context()
    before = len(server.requests())
    publishing = mhd(server).commit(context, items, Progress())

    if failures == 1:
        assert_published(server, context, items, await publishing)
    else:
        with pytest.raises(CommitFailed, match="Nothing was saved"):
            await publishing
        assert ours(server, "Binary", items) == []
        assert submission_sets(server, context) == []
    statuses = [r["status"] for r in server.requests()[before:] if r["path"] == "/fhir"]
    assert statuses == ([503, 200] if failures == 1 else [503] * 3)


async def test_a_later_mhd_attempt_finds_the_published_commit_and_sends_nothing(
    server: MedplumServer, megabyte_items: list[bytes]
) -> None:
    items, context = fresh(megabyte_items), commit_context()
    first = await mhd(server).commit(context, items, Progress())
    before = len(server.requests())

    again = await mhd(server).commit(dataclasses.replace(context, attempt=2), items, Progress())

    assert [r.resource_id for r in again] == [r.resource_id for r in first]
    assert [r for r in server.requests()[before:] if r["method"] == "POST"] == []
    assert_published(server, context, items, again)


async def test_mhd_without_binary_create_refuses_a_large_commit_before_sending_anything(
    server: MedplumServer, megabyte_items: list[bytes]
) -> None:
    server.settings(binary=False)
    items, context = fresh(megabyte_items), commit_context()
    before = len(server.requests())

    with pytest.raises(CommitFailed) as failed:
        await mhd(server).commit(context, items, Progress())

    detail = failed.value.detail
    assert "Nothing was saved" in detail
    assert "raise the registry's request limit" in detail
    assert "allow Binary create" in detail
    assert [r.status for r in failed.value.results] == ["failed"] * 8
    assert [r for r in server.requests()[before:] if r["method"] != "GET"] == []


@pytest.mark.parametrize("binary", [True, False], ids=["binary-first", "refused"])
async def test_a_413_to_an_mhd_bundle_teaches_the_limit(
    server: MedplumServer, megabyte_items: list[bytes], binary: bool
) -> None:
    """CONSULTCAM_FHIR_MAX_REQUEST_BYTES set higher than the server takes: the 413 answer decides."""
    server.settings(binary=binary)
    items, context = fresh(megabyte_items[:3]), commit_context()
    before = len(server.requests())
    publishing = mhd(server, max_request_bytes=64 * MB).commit(context, items, Progress())

    if binary:
        assert_published(server, context, items, await publishing)
    else:
        with pytest.raises(CommitFailed, match="allow Binary create"):
            await publishing
        assert ours(server, "DocumentReference", items) == []
    statuses = [(r["path"], r["status"]) for r in server.requests()[before:] if r["method"] == "POST"]
    assert statuses[0] == ("/fhir", 413)
    assert statuses[1:] == ([("/fhir/Binary", 201)] * 3 + [("/fhir", 200)] if binary else [])
