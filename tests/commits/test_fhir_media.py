"""FHIR R4 Media and transaction Bundle built from real photos, checked the way a receiving EMR reads them."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.media import Media
from PIL import Image

from consultcam.commits.connectors.base import CommitContext, CommitItem, PatientRef
from consultcam.commits.fhir_document import build_document_reference
from consultcam.commits.fhir_media import (
    IMAGE_IDENTIFIER_SYSTEM,
    NHI_SYSTEM,
    build_media,
    build_transaction_bundle,
    is_sctid,
    validate_body_site,
)
from consultcam.launch.medtech import encounter_key as medtech_encounter_key
from consultcam.launch.smart_accept import encounter_key as smart_encounter_key
from consultcam.sessions.encounters import names_a_record_encounter
from tests.commits.factories import commit_context

PHOTOS = Path(__file__).resolve().parents[1] / "photos"
SNOMED = "http://snomed.info/sct"
NZDT = timezone(timedelta(hours=13))
COMMITTED_AT = datetime(2025, 1, 15, 2, 30, 5, tzinfo=UTC)
FOREARM = {"system": SNOMED, "code": "14975008", "display": "Forearm structure"}
EYE_REGION = {"system": SNOMED, "code": "371398005", "display": "Eye region structure"}


def make_context(**changes: Any) -> CommitContext:
    defaults = {
        "encounter_id": "enc-2025-0042",
        "facility_id": "fac-1",
        "committed_at": COMMITTED_AT,
        "consent": {"scope": "teaching", "givenBy": "patient"},
    }
    return commit_context(**{**defaults, **changes})


def make_item(photo: str, **changes: Any) -> CommitItem:
    path = PHOTOS / photo
    with Image.open(path) as image:
        width, height = image.size
    item = CommitItem(
        image_id=str(uuid.uuid4()),
        jpeg=path.read_bytes(),
        width=width,
        height=height,
        captured_at=datetime(2025, 1, 15, 15, 12, 40, tzinfo=NZDT),
        created_at=datetime(2025, 1, 15, 2, 13, 0, tzinfo=UTC),
        metadata={},
    )
    return dataclasses.replace(item, **changes)


def fundus_item() -> CommitItem:
    return make_item(
        "fundus-left-eye.jpg",
        metadata={
            "bodySite": EYE_REGION,
            "laterality": "left",
            "view": "close-up",
            "label": "Left fundus",
            "notes": "Normal disc and macula.",
        },
    )


def test_media_carries_what_an_emr_relies_on() -> None:
    item = fundus_item()
    media = build_media(make_context(), item)

    Media.model_validate(media)
    assert media["resourceType"] == "Media"
    assert media["status"] == "completed"
    assert media["identifier"] == [{"system": IMAGE_IDENTIFIER_SYSTEM, "value": item.image_id}]
    assert media["type"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/media-type",
        "code": "image",
        "display": "Image",
    }
    assert media["subject"] == {
        "reference": "Patient/pat-77",
        "identifier": {"system": NHI_SYSTEM, "value": "ZZZ0016"},
        "display": "Aroha Ngata",
    }
    assert media["encounter"] == {"reference": "Encounter/enc-2025-0042"}
    assert media["operator"] == {"reference": "Practitioner/prac-9"}
    # The phone's local time and offset are kept; the commit time is a UTC instant.
    assert media["createdDateTime"] == "2025-01-15T15:12:40+13:00"
    assert media["issued"] == "2025-01-15T02:30:05+00:00"
    assert media["view"] == {"text": "Close-up"}
    assert (media["width"], media["height"]) == (1411, 1411)


def test_body_site_keeps_the_chosen_coding_and_adds_laterality_as_an_expression() -> None:
    media = build_media(make_context(), fundus_item())

    site = media["bodySite"]
    assert site["coding"][0] == EYE_REGION
    assert site["coding"][1] == {
        "system": SNOMED,
        "code": "371398005:272741003=7771000",
        "display": "Left eye region structure",
    }
    assert site["text"] == "Left eye region structure"
    # The bare qualifier is not a body site and must not appear as a coding of one.
    assert all(coding["code"] != "7771000" for coding in site["coding"])


@pytest.mark.parametrize(
    ("laterality", "code", "text"),
    [
        ("right", "14975008:272741003=24028007", "Right forearm structure"),
        ("bilateral", "14975008:272741003=51440002", "Bilateral forearm structure"),
    ],
)
def test_laterality_codes(laterality: str, code: str, text: str) -> None:
    item = make_item("cat.jpg", metadata={"bodySite": FOREARM, "laterality": laterality})
    site = build_media(make_context(), item)["bodySite"]
    assert site["coding"][1]["code"] == code
    assert site["text"] == text


def test_the_words_are_the_data_files_whatever_the_row_stored() -> None:
    """Issue 10: words stored with the code (a client's, or an older consultcam's) are never read."""
    stored = {"system": SNOMED, "code": "14975008", "display": "Structure of right forearm (body structure)"}
    item = make_item("cat.jpg", metadata={"bodySite": stored, "laterality": "left"})
    site = build_media(make_context(), item)["bodySite"]
    assert site["coding"][0] == FOREARM
    assert site["text"] == site["coding"][1]["display"] == "Left forearm structure"

    back = {"system": SNOMED, "code": "77568009"}  # "Structure of back of trunk": the prefix goes
    item = make_item("cat.jpg", metadata={"bodySite": back, "laterality": "bilateral"})
    assert build_media(make_context(), item)["bodySite"]["text"] == "Bilateral back of trunk"


def test_not_applicable_laterality_and_laterality_without_site() -> None:
    item = make_item("cat.jpg", metadata={"bodySite": FOREARM, "laterality": "not-applicable"})
    assert build_media(make_context(), item)["bodySite"] == {"coding": [FOREARM], "text": "Forearm structure"}

    item = make_item("cat.jpg", metadata={"laterality": "right"})
    assert build_media(make_context(), item)["bodySite"] == {"text": "Right side"}


def test_notes_hold_label_notes_and_consent() -> None:
    media = build_media(make_context(consent={"scope": "publication", "givenBy": "guardian"}), fundus_item())
    assert [note["text"] for note in media["note"]] == [
        "Left fundus",
        "Normal disc and macula.",
        "Consent to clinical photography given by the patient's guardian; agreed use: publication.",
    ]


def test_content_round_trips_the_exact_jpeg_bytes() -> None:
    item = fundus_item()
    content = build_media(make_context(), item)["content"]

    assert content["contentType"] == "image/jpeg"
    assert base64.b64decode(content["data"], validate=True) == item.jpeg
    assert content["size"] == len(item.jpeg) == (PHOTOS / "fundus-left-eye.jpg").stat().st_size
    assert base64.b64decode(content["hash"]) == hashlib.sha1(item.jpeg).digest()
    assert content["title"] == "Left fundus"
    assert content["creation"] == "2025-01-15T15:12:40+13:00"


@pytest.mark.parametrize(
    ("view", "modality"),
    [("close-up", ("XC", "External-camera Photography")), ("dermoscopy", ("DMS", "Dermoscopy"))],
)
def test_the_modality_is_the_one_the_dicom_connector_writes(view: str, modality: tuple[str, str]) -> None:
    media = build_media(make_context(), make_item("fundus-left-eye.jpg", metadata={"view": view}))
    Media.model_validate(media)
    assert media["modality"] == {
        "coding": [
            {
                "system": "http://dicom.nema.org/resources/ontology/DCM",
                "code": modality[0],
                "display": modality[1],
            }
        ]
    }


def test_minimal_photo_without_optional_details() -> None:
    context = make_context(
        patient=PatientRef(id="pat-77", name="Aroha Ngata"), practitioner_id=None, consent=None
    )
    item = make_item("coffee.jpg", captured_at=None)
    media = build_media(context, item)

    Media.model_validate(media)
    assert media["subject"] == {"reference": "Patient/pat-77", "display": "Aroha Ngata"}
    assert media["createdDateTime"] == "2025-01-15T02:13:00+00:00"  # created_at when no capture time
    assert media["content"]["title"] == "Clinical photograph"
    for absent in ("operator", "bodySite", "note", "view"):
        assert absent not in media


def test_naive_datetimes_are_read_as_utc() -> None:
    item = make_item("cat.jpg", captured_at=datetime(2025, 1, 15, 1, 0, 0))
    media = build_media(make_context(committed_at=datetime(2025, 1, 15, 2, 0, 0)), item)
    assert media["createdDateTime"] == "2025-01-15T01:00:00+00:00"
    assert media["issued"] == "2025-01-15T02:00:00+00:00"


def test_transaction_bundle_conditionally_creates_one_media_per_photo() -> None:
    context = make_context()
    items = [fundus_item(), make_item("cat.jpg"), make_item("coffee.jpg"), make_item("rocket.jpg")]
    bundle = build_transaction_bundle(context, items)

    parsed = Bundle.model_validate(json.loads(json.dumps(bundle)))
    assert parsed.type == "transaction"
    assert bundle["identifier"]["value"] == f"urn:uuid:{uuid.UUID(context.commit_id)}"
    assert len(bundle["entry"]) == len(items)
    for entry, item in zip(bundle["entry"], items, strict=True):
        assert entry["fullUrl"] == f"urn:uuid:{item.image_id}"
        assert entry["request"] == {
            "method": "POST",
            "url": "Media",
            "ifNoneExist": f"identifier={IMAGE_IDENTIFIER_SYSTEM}|{item.image_id}",
        }
        assert entry["resource"]["identifier"][0]["value"] == item.image_id
        assert base64.b64decode(entry["resource"]["content"]["data"]) == item.jpeg


def test_a_retried_commit_asks_for_the_same_conditional_create() -> None:
    item = make_item("rocket.jpg")
    first = build_transaction_bundle(make_context(), [item])["entry"][0]
    retry = build_transaction_bundle(make_context(committed_at=COMMITTED_AT + timedelta(minutes=3)), [item])
    assert retry["entry"][0]["request"]["ifNoneExist"] == first["request"]["ifNoneExist"]
    assert retry["entry"][0]["fullUrl"] == first["fullUrl"]


def bad_input_cases() -> list[Any]:
    good = make_item("cat.jpg")
    return [
        pytest.param(
            make_context(patient=PatientRef(id="", name="Aroha Ngata")),
            [good],
            "patient id is missing",
            id="no-patient",
        ),
        pytest.param(make_context(), [], "no photos to commit", id="no-items"),
        pytest.param(
            make_context(),
            [
                dataclasses.replace(
                    good, metadata={"bodySite": {"system": "http://loinc.org", "code": "14975008"}}
                )
            ],
            "must be a SNOMED CT coding",
            id="body-site-not-snomed",
        ),
        pytest.param(
            make_context(),
            [dataclasses.replace(good, metadata={"bodySite": {"system": SNOMED, "code": "14975009"}})],
            "not one of the practice's body sites",
            id="body-site-bad-check-digit",
        ),
        pytest.param(
            make_context(),
            [dataclasses.replace(good, metadata={"bodySite": {"system": SNOMED, "code": "22298006"}})],
            "body site code '22298006' is not one of the practice's body sites",
            id="body-site-a-disorder",
        ),
        pytest.param(
            make_context(),
            [dataclasses.replace(good, metadata={"bodySite": FOREARM, "laterality": "up"})],
            "laterality 'up' is not one of",
            id="laterality",
        ),
        pytest.param(
            make_context(),
            [dataclasses.replace(good, jpeg=b"\x89PNG\r\n\x1a\n")],
            "not a JPEG",
            id="not-jpeg",
        ),
        pytest.param(
            make_context(), [dataclasses.replace(good, image_id="img-1")], "not a uuid", id="image-id"
        ),
        pytest.param(
            make_context(patient=PatientRef(id="pat-77", name="A", nhi="12345")), [good], "NHI", id="nhi"
        ),
        pytest.param(make_context(), [good, good], "appears twice", id="duplicate"),
        pytest.param(make_context(consent={"scope": "marketing"}), [good], "consent scope", id="consent"),
        pytest.param(
            make_context(encounter_id="enc/1"),
            [good],
            "encounter id 'enc/1' is not a FHIR id",
            id="encounter",
        ),
    ]


@pytest.mark.parametrize(("context", "items", "message"), bad_input_cases())
def test_bad_input_gives_a_clear_error(context: CommitContext, items: list[CommitItem], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_transaction_bundle(context, items)


def test_photo_errors_name_the_photo() -> None:
    item = make_item("cat.jpg", metadata={"label": "Rash, left forearm", "laterality": "up"})
    with pytest.raises(ValueError, match=r"^photo 'Rash, left forearm': laterality"):
        build_media(make_context(), item)


def test_what_fhir_resources_rejects_becomes_a_value_error() -> None:
    item = make_item("cat.jpg", width=2**40)  # beyond FHIR positiveInt
    with pytest.raises(ValueError, match=r"Media resource is not valid FHIR R4 \(width: "):
        build_media(make_context(), item)


def test_body_site_and_sctid_checks() -> None:
    assert validate_body_site(
        {"system": SNOMED, "code": " 14975008 ", "display": "  Forearm   structure "}
    ) == {
        "system": SNOMED,
        "code": "14975008",
        "display": "Forearm structure",
    }
    assert validate_body_site({"system": SNOMED, "code": "14975008", "display": "Right forearm"}) == FOREARM
    with pytest.raises(ValueError, match="not one of the practice's body sites"):
        validate_body_site({"system": SNOMED, "code": "5665001", "display": "Retinal structure"})
    for valid in ("7771000", "24028007", "51440002", "272741003", "14975008", "5665001"):
        assert is_sctid(valid)
    for invalid in ("7771001", "1234567", "12345", "07771000", "14975008:272741003=7771000", "abc"):
        assert not is_sctid(invalid)


@pytest.mark.parametrize("key", ["mt-20261204-8cd0a2f318f5c00109ac", "sm-20261204-0123456789abcdef0123"])
def test_a_launchs_made_up_encounter_key_is_never_referenced(key: str) -> None:
    """Medtech and a SMART standalone launch give no encounter: the session's key groups the day's photos but
    names no Encounter in the record, so neither Media nor DocumentReference points at one."""
    context = make_context(encounter_id=key, encounter_in_record=names_a_record_encounter(key))

    media = build_media(context, fundus_item())
    document = build_document_reference(context, fundus_item())

    assert "encounter" not in media
    assert "encounter" not in document["context"]
    assert document["context"]["period"]["start"] == media["createdDateTime"]
    Media.model_validate(media)


def test_an_encounter_from_the_emr_is_referenced() -> None:
    context = make_context(encounter_in_record=names_a_record_encounter("enc-2025-0042"))

    assert build_media(context, fundus_item())["encounter"] == {"reference": "Encounter/enc-2025-0042"}
    document = build_document_reference(context, fundus_item())
    assert document["context"]["encounter"] == [{"reference": "Encounter/enc-2025-0042"}]


def test_both_launches_make_keys_the_commit_knows_are_made_up() -> None:
    now = datetime(2026, 12, 3, 23, 30, tzinfo=UTC)  # 4 December in New Zealand

    assert not names_a_record_encounter(medtech_encounter_key("F2N060-E", "PRV123", "14e52e16", now))
    assert not names_a_record_encounter(
        smart_encounter_key("https://ehr.example/fhir", "Practitioner/7", "p1", now)
    )
