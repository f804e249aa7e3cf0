"""The `alex` connector's default, Medtech Inbox Scan, against the Medtech ALEX test double (a separate
process speaking ALEX's wire protocol, tests/medtech): one DocumentReference per photo with a TIFF (or PDF)
under 1 MB that the double accepted, the photo's words and times, never a duplicate on a retried commit
(found by the NHI search, the only search shape used), and compensation that names what it could not
remove."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import pytest
from fhir.resources.R4B.documentreference import DocumentReference
from PIL import Image, ImageOps
from skimage.metrics import structural_similarity

from consultcam.commits.connectors.alex import AlexConnector
from consultcam.commits.connectors.alex_inbox import attachment_title, describe
from consultcam.commits.connectors.alex_search import next_page
from consultcam.commits.connectors.base import CommitContext, CommitFailed, CommitItem, PatientRef
from consultcam.commits.connectors.fhir_client import FhirFailure
from consultcam.commits.connectors.registry import connector_from_url
from consultcam.config import Settings
from consultcam.kit.http import RetryPolicy
from consultcam.kit.oauth2 import ClientCredentials
from tests.commits.factories import Progress, commit_context
from tests.medtech.double import NHI_SYSTEM, AlexDouble

PHOTOS = Path(__file__).resolve().parents[1] / "photos"
FAST = {"retry": RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.05), "timeout": 20.0}
LIMIT = 1_000_000
NHI = "ZZZ0016"
FACILITY = "F2N060-E"
UPPER_ARM = {"system": "http://snomed.info/sct", "code": "40983000", "display": "anything a client sent"}
CONSENT = {"scope": "clinical", "givenBy": "patient"}


@pytest.fixture
def alex() -> Iterator[AlexDouble]:
    with AlexDouble() as double:
        yield double


@pytest.fixture
def patient_id(alex: AlexDouble) -> str:
    return alex.add_patient(nhi=NHI, family="Ngata", given="Aroha", birth_date="1980-04-02")


def connector(alex: AlexDouble, **options: Any) -> AlexConnector:
    oauth = ClientCredentials(alex.token_url, alex.client_id, alex.client_secret, scope=alex.scope)
    return AlexConnector(alex.fhir_url, oauth=oauth, **{**FAST, **options})


def context(patient_id: str, **changes: Any) -> CommitContext:
    patient = PatientRef(id=patient_id, name="Aroha Ngata", nhi=changes.pop("nhi", NHI))
    return commit_context(**{"patient": patient, "facility_id": FACILITY, "consent": CONSENT, **changes})


def item(name: str = "coffee.jpg", jpeg: bytes | None = None, **metadata: Any) -> CommitItem:
    jpeg = jpeg if jpeg is not None else (PHOTOS / name).read_bytes()
    with Image.open(io.BytesIO(jpeg)) as image:
        width, height = image.size
    words = {"label": "Lesion A", "bodySite": UPPER_ARM, "laterality": "left", "view": "close-up"}
    return CommitItem(
        image_id=str(uuid.uuid4()),
        jpeg=jpeg,
        width=width,
        height=height,
        captured_at=datetime(2025, 1, 15, 2, 12, 40, tzinfo=UTC),
        created_at=datetime(2025, 1, 15, 2, 13, 0, tzinfo=UTC),
        metadata={**words, **metadata},
    )


def noisy_jpeg() -> bytes:
    """A noisy 2048 × 1536 photo at quality 100: about 3.5 MB."""
    with Image.open(PHOTOS / "coffee.jpg") as photo:
        base = photo.convert("RGB").resize((2048, 1536))
    out = io.BytesIO()
    Image.blend(base, Image.effect_noise((2048, 1536), 60).convert("RGB"), 0.35).save(
        out, "JPEG", quality=100
    )
    return out.getvalue()


def documents(alex: AlexDouble) -> dict[str, dict[str, Any]]:
    """The double's DocumentReferences by our image id."""
    return {doc["identifier"][0]["value"]: doc for doc in alex.resources("DocumentReference")}


def attachment_bytes(document: dict[str, Any]) -> bytes:
    return base64.b64decode(document["content"][0]["attachment"]["data"])


def pixels(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def ssim(a: Image.Image, b: Image.Image) -> float:
    return float(structural_similarity(np.asarray(a), np.asarray(b), channel_axis=2, data_range=255))


def fhir_calls(alex: AlexDouble, method: str | None = None, path: str = "/FHIR/") -> list[dict[str, Any]]:
    return [
        r for r in alex.requests() if r["path"].startswith(path) and (method is None or r["method"] == method)
    ]


def query_of(request: dict[str, Any]) -> dict[str, list[str]]:
    query = request.get("query") or {}
    return (
        parse_qs(query)
        if isinstance(query, str)
        else {k: v if isinstance(v, list) else [v] for k, v in query.items()}
    )


def assert_only_the_nhi_search(alex: AlexDouble) -> None:
    """Every search the connector made is DocumentReference?patient.identifier=<NHI system>|<NHI>."""
    searches = [r for r in fhir_calls(alex, "GET") if r["path"] != "/FHIR/metadata"]
    for search in searches:
        assert search["path"] == "/FHIR/DocumentReference"
        assert query_of(search) == {"patient.identifier": [f"{NHI_SYSTEM}|{NHI}"]}
        assert search["status"] == 200


# -- the default commit ------------------------------------------------------------------------------------


async def test_each_photo_is_filed_in_inbox_scan_as_a_tiff_document_reference(alex, patient_id):
    photos = [item("coffee.jpg"), item("rocket.jpg", label="Mole", laterality="right", view="overview")]
    progress = Progress()

    results = await connector(alex).commit(context(patient_id), photos, progress)

    assert [r.status for r in results] == ["committed", "committed"]
    assert progress.calls == [(1, 2), (2, 2)]
    filed = documents(alex)
    assert set(filed) == {p.image_id for p in photos}
    for position, (photo, result) in enumerate(zip(photos, results, strict=True), start=1):
        document = filed[photo.image_id]
        DocumentReference.model_validate(document)
        assert result.resource_id == f"DocumentReference/{document['id']}"
        assert document["status"] == "current"
        assert document["type"]["coding"][0] == {
            "system": "http://loinc.org",
            "code": "72170-4",
            "display": "Photographic image",
        }
        assert document["identifier"] == [{"system": "urn:consultcam:image-id", "value": photo.image_id}]
        assert document["subject"]["reference"] == f"Patient/{patient_id}"
        assert document["author"] == [{"reference": "Practitioner/prac-9"}]
        assert document["date"] == "2025-01-15T15:30:05+13:00"  # the commit time in Auckland (NZDT)
        attachment = document["content"][0]["attachment"]
        data = attachment_bytes(document)
        assert attachment["contentType"] == "image/tiff"
        assert data[:4] in (b"II*\x00", b"MM\x00*")
        assert len(data) < LIMIT
        assert attachment["size"] == len(data)
        assert attachment["hash"] == base64.b64encode(hashlib.sha1(data).digest()).decode()
        assert attachment["creation"] == "2025-01-15T15:12:40+13:00"
        assert attachment["title"].startswith(f"{position:02d}-")
        original, back = pixels(photo.jpeg), pixels(data)
        assert back.size == original.size
        assert ssim(original, back) >= 0.95
    first, second = filed[photos[0].image_id], filed[photos[1].image_id]
    assert first["content"][0]["attachment"]["title"] == "01-lesion-a-left-upper-arm.tiff"
    assert second["content"][0]["attachment"]["title"] == "02-mole-right-upper-arm.tiff"
    assert first["description"] == (
        "Lesion A — left upper arm, close-up. "
        "Consent to clinical photography given by the patient; agreed use: clinical care."
    )
    assert second["description"].startswith("Mole — right upper arm, overview.")
    assert "anything a client sent" not in str(alex.resources("DocumentReference"))


async def test_every_request_carries_the_facility_a_fresh_correlation_id_and_one_cached_token(
    alex, patient_id
):
    emr = connector(alex)
    await emr.commit(context(patient_id), [item(), item("cat.jpg")], Progress())
    await emr.commit(context(patient_id), [item("rocket.jpg")], Progress())

    calls = fhir_calls(alex)
    assert [(r["method"], r["path"]) for r in calls] == [
        ("GET", "/FHIR/metadata"),
        ("GET", "/FHIR/DocumentReference"),
        ("POST", "/FHIR/DocumentReference"),
        ("POST", "/FHIR/DocumentReference"),
        ("GET", "/FHIR/DocumentReference"),
        ("POST", "/FHIR/DocumentReference"),
    ]
    assert all(r["headers"].get("mt-facilityid") == FACILITY for r in calls)
    correlation = [r["headers"].get("mt-correlationid") for r in calls]
    assert len(set(correlation)) == len(correlation)
    assert all(uuid.UUID(value).version == 4 for value in correlation)
    assert len([r for r in alex.requests() if r["path"].endswith("/token")]) == 1
    assert_only_the_nhi_search(alex)


@pytest.mark.parametrize("name", sorted(p.name for p in PHOTOS.glob("*.jpg")))
async def test_every_test_photo_reads_back_at_its_size_and_looks_the_same(alex, patient_id, name):
    photo = item(name)
    await connector(alex).commit(context(patient_id), [photo], Progress())

    back = pixels(attachment_bytes(documents(alex)[photo.image_id]))
    original = pixels(photo.jpeg)
    assert back.size == original.size
    assert ssim(original, back) >= 0.95


async def test_a_big_noisy_photo_still_fits_under_one_megabyte(alex, patient_id):
    photo = item(jpeg=noisy_jpeg())
    assert len(photo.jpeg) > 2_000_000

    [result] = await connector(alex).commit(context(patient_id), [photo], Progress())

    assert result.status == "committed"
    data = attachment_bytes(documents(alex)[photo.image_id])
    assert len(data) < LIMIT
    with Image.open(io.BytesIO(data)) as tiff:
        tiff.load()
        assert tiff.size == (2048, 1536)  # lower JPEG quality, not fewer pixels


async def test_a_winter_date_has_the_standard_time_offset(alex, patient_id):
    winter = datetime(2025, 7, 15, 2, 12, 40, tzinfo=UTC)
    photo = dataclasses.replace(item(), captured_at=winter)

    await connector(alex).commit(context(patient_id, committed_at=winter), [photo], Progress())

    document = documents(alex)[photo.image_id]
    assert document["date"] == "2025-07-15T14:12:40+12:00"  # NZST
    assert document["content"][0]["attachment"]["creation"] == "2025-07-15T14:12:40+12:00"


async def test_format_pdf_files_the_photo_as_a_pdf(alex, patient_id, monkeypatch):
    for name, value in alex.env().items():
        monkeypatch.setenv(name, value)
    emr = connector_from_url(f"{alex.emr_url}?format=pdf", Settings())
    photo = item()

    await emr.commit(context(patient_id), [photo], Progress())

    document = documents(alex)[photo.image_id]
    attachment = document["content"][0]["attachment"]
    data = attachment_bytes(document)
    assert attachment["contentType"] == "application/pdf"
    assert data.startswith(b"%PDF-")
    assert len(data) < LIMIT
    assert attachment["size"] == len(data)
    assert attachment["title"] == "01-lesion-a-left-upper-arm.pdf"


async def test_resource_media_still_posts_media(alex, patient_id, monkeypatch):
    for name, value in alex.env().items():
        monkeypatch.setenv(name, value)
    emr = connector_from_url(f"{alex.emr_url}?resource=Media", Settings())
    photo = item()

    [result] = await emr.commit(context(patient_id), [photo], Progress())

    [media] = alex.resources("Media")
    assert result.resource_id == f"Media/{media['id']}"
    assert media["identifier"][0]["value"] == photo.image_id
    assert base64.b64decode(media["content"]["data"]) == photo.jpeg
    assert alex.resources("DocumentReference") == []


async def test_a_session_without_a_facility_sends_nothing(alex, patient_id):
    with pytest.raises(CommitFailed, match="no facility"):
        await connector(alex).commit(context(patient_id, facility_id=None), [item()], Progress())
    assert alex.requests() == []


# -- never twice -------------------------------------------------------------------------------------------


async def test_a_retry_after_a_crash_finds_what_was_filed_and_writes_nothing(alex, patient_id):
    photos = [item(), item("cat.jpg")]
    first = await connector(alex).commit(context(patient_id), photos, Progress())

    # the process died before recording the outcome: a new process, a new connector, the next attempt
    again = await connector(alex).commit(context(patient_id, attempt=2), photos, Progress())

    assert [r.resource_id for r in again] == [r.resource_id for r in first]
    assert [r.status for r in again] == ["committed", "committed"]
    assert len(alex.resources("DocumentReference")) == 2
    assert len(fhir_calls(alex, "POST")) == 2
    assert_only_the_nhi_search(alex)


async def test_a_lost_answer_is_found_and_not_filed_again(alex, patient_id):
    emr = connector(alex)
    photos = [item(), item("rocket.jpg")]
    first = await emr.commit(context(patient_id), photos[:1], Progress())  # ALEX filed it; we never heard

    again = await emr.commit(context(patient_id, attempt=2), photos, Progress())

    assert again[0].resource_id == first[0].resource_id
    assert len(alex.resources("DocumentReference")) == 2
    assert len(fhir_calls(alex, "POST")) == 2
    assert_only_the_nhi_search(alex)


async def test_a_failed_post_is_looked_for_before_it_is_sent_again(alex, patient_id):
    alex.fail(status=503, times=1, method="POST", path_prefix="/FHIR/DocumentReference")
    photo = item()

    [result] = await connector(alex).commit(context(patient_id), [photo], Progress())

    assert result.status == "committed"
    assert len(alex.resources("DocumentReference")) == 1
    assert [(r["method"], r["status"]) for r in fhir_calls(alex, path="/FHIR/DocumentReference")] == [
        ("GET", 200),
        ("POST", 503),
        ("GET", 200),
        ("POST", 201),
    ]
    assert_only_the_nhi_search(alex)


async def test_without_an_nhi_the_first_attempt_files_and_a_retry_is_refused(alex, patient_id):
    photos = [item(), item("cat.jpg", label=None)]

    first = await connector(alex).commit(context(patient_id, nhi=None), photos, Progress())

    assert [r.status for r in first] == ["committed", "committed"]
    assert [r["method"] for r in fhir_calls(alex) if r["path"] != "/FHIR/metadata"] == ["POST", "POST"]
    sent = len(alex.requests())

    with pytest.raises(CommitFailed) as refused:
        await connector(alex).commit(context(patient_id, nhi=None, attempt=2), photos, Progress())

    assert len(alex.requests()) == sent  # nothing sent, not even a token request
    assert len(alex.resources("DocumentReference")) == 2
    detail = refused.value.detail
    assert "no NHI" in detail
    assert "01-lesion-a-left-upper-arm.tiff, 02-left-upper-arm.tiff" in detail
    assert "Inbox Scan" in detail
    assert [r.status for r in refused.value.results] == ["failed", "failed"]


# -- compensation ------------------------------------------------------------------------------------------


async def test_a_refused_photo_removes_the_ones_filed_before_it(alex, patient_id):
    async def refuse_the_next(done: int, total: int) -> None:
        if done == 1:
            alex.fail(status=422, times=1, method="POST", path_prefix="/FHIR/DocumentReference")

    with pytest.raises(CommitFailed) as failed:
        await connector(alex).commit(context(patient_id), [item(), item("cat.jpg")], refuse_the_next)

    assert alex.resources("DocumentReference") == []
    [delete] = fhir_calls(alex, "DELETE")
    assert delete["path"].startswith("/FHIR/DocumentReference/")
    assert delete["headers"].get("mt-facilityid") == FACILITY
    assert "Nothing was saved" in failed.value.detail


async def test_a_refused_delete_names_the_documents_left_in_medtech(alex, patient_id):
    alex.refuse_deletes(True)

    async def refuse_the_third(done: int, total: int) -> None:
        if done == 2:
            alex.fail(status=422, times=1, method="POST", path_prefix="/FHIR/DocumentReference")

    photos = [item(), item("cat.jpg", label="Mole"), item("rocket.jpg", label="Scar")]
    with pytest.raises(CommitFailed) as failed:
        await connector(alex).commit(context(patient_id), photos, refuse_the_third)

    left = documents(alex)
    assert set(left) == {photos[0].image_id, photos[1].image_id}
    detail = failed.value.detail
    for image_id, title in (
        (photos[0].image_id, "01-lesion-a-left-upper-arm.tiff"),
        (photos[1].image_id, "02-mole-left-upper-arm.tiff"),
    ):
        assert f"DocumentReference/{left[image_id]['id']} ({title})" in detail
    assert "could not be removed" in detail
    assert "03-scar" not in detail.split("could not be removed")[1]
    assert all("must be removed" in (r.error or "") for r in failed.value.results[:2])


# -- words (no double needed) ------------------------------------------------------------------------------


def test_description_words_come_from_the_terminology():
    assert describe({"label": " Lesion  A ", "bodySite": UPPER_ARM, "laterality": "bilateral"}) == (
        "Lesion A — bilateral upper arm."
    )
    assert describe({"bodySite": UPPER_ARM, "view": "dermoscopy", "notes": "Itchy."}) == (
        "Upper arm, dermoscopy. Itchy."
    )
    assert describe({"laterality": "left"}) == "Left side."
    assert describe({}, {"scope": "teaching", "givenBy": "guardian"}) == (
        "Clinical photograph. Consent to clinical photography given by the patient's guardian; agreed use: "
        "teaching."
    )
    with pytest.raises(ValueError, match="not one of the practice's body sites"):
        describe({"bodySite": {"system": "http://snomed.info/sct", "code": "22298006"}})  # a disorder


def test_titles_are_safe_ascii_file_names():
    assert attachment_title(1, {"label": "Ārai / ../lesion"}, "tiff") == "01-arai-lesion.tiff"
    assert attachment_title(12, {}, "pdf") == "12-photo.pdf"
    assert (
        attachment_title(3, {"bodySite": UPPER_ARM, "laterality": "right"}, "tiff")
        == "03-right-upper-arm.tiff"
    )
    assert attachment_title(100, {"label": "x" * 200}, "tiff") == f"100-{'x' * 60}.tiff"


async def test_next_links_stay_on_the_alex_server():
    """The search follows Bundle `next` links (the double answers in one page, so the rule is checked here):
    a relative or same-server link is followed; one to another host is not, so the token goes nowhere else."""
    oauth = ClientCredentials("https://login.example/token", "id", "secret", scope="s")
    emr = AlexConnector("https://alex.example/FHIR", oauth=oauth)
    async with emr.client.session() as fhir:

        def page(url: str) -> dict[str, Any]:
            return {"resourceType": "Bundle", "link": [{"relation": "next", "url": url}]}

        assert next_page(fhir, page("DocumentReference?page=2")) == (
            "https://alex.example/FHIR/DocumentReference?page=2"
        )
        assert next_page(fhir, page("https://alex.example/FHIR/DocumentReference?p=3")).endswith("p=3")
        assert next_page(fhir, {"resourceType": "Bundle", "link": [{"relation": "self", "url": "x"}]}) is None
        with pytest.raises(FhirFailure, match="another server"):
            next_page(fhir, page("https://elsewhere.example/FHIR/DocumentReference?page=2"))
