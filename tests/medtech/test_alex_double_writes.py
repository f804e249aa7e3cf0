"""The Medtech ALEX double's writes (issue 12): DocumentReference into Inbox Scan, Media, and their refusals.

Real HTTP with httpx against the double's own process (the `alex` fixture, tests/medtech/conftest.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.medtech.double import NHI_SYSTEM, AlexDouble
from tests.medtech.wire import NHI, diagnostics, document, image, media, post

# -- writes --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "content_type"), [("TIFF", "image/tiff"), ("PDF", "application/pdf")])
def test_document_reference_create_stores_tiff_and_pdf(
    alex: AlexDouble, http: httpx.Client, auth: dict[str, str], patient: str, kind: str, content_type: str
) -> None:
    sent = document(patient, image(kind), content_type)
    answer = post(http, alex, auth, sent)
    assert answer.status_code == 201
    stored = answer.json()
    assert answer.headers["location"] == f"{alex.fhir_url}/DocumentReference/{stored['id']}/_history/1"
    assert stored["meta"]["versionId"] == "1"
    assert datetime.fromisoformat(stored["meta"]["lastUpdated"]).tzinfo is not None
    assert {k: v for k, v in stored.items() if k not in ("id", "meta")} == sent
    assert alex.resources("DocumentReference") == [stored]
    read = http.get(f"{alex.fhir_url}/DocumentReference/{stored['id']}", headers=auth)
    assert read.json() == stored


def test_if_none_exist_is_ignored_so_a_retry_duplicates(
    alex: AlexDouble, http: httpx.Client, auth: dict[str, str], patient: str
) -> None:
    body = json.dumps(document(patient, image("TIFF"))).encode()
    headers = {
        **auth,
        "Content-Type": "application/fhir+json",
        "If-None-Exist": "identifier=urn:consultcam:image|img-1",
    }
    for _ in range(2):
        assert (
            http.post(f"{alex.fhir_url}/DocumentReference", content=body, headers=headers).status_code == 201
        )
    assert len(alex.resources("DocumentReference")) == 2


@pytest.mark.parametrize(
    ("kind", "label"),
    [
        ("JPEG", "image/tiff"),
        ("PNG", "image/tiff"),
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("JPEG", "application/pdf"),
    ],
)
def test_jpeg_or_png_attachments_are_refused(
    alex: AlexDouble, http: httpx.Client, auth: dict[str, str], patient: str, kind: str, label: str
) -> None:
    answer = post(http, alex, auth, document(patient, image(kind), label))
    assert answer.status_code == 422
    assert "content[0].attachment" in diagnostics(answer)
    assert alex.resources("DocumentReference") == []


def test_a_pdf_labelled_tiff_and_an_attachment_by_url_are_refused(
    alex: AlexDouble, http: httpx.Client, auth: dict[str, str], patient: str
) -> None:
    assert post(http, alex, auth, document(patient, image("PDF"), "image/tiff")).status_code == 422
    by_url = document(patient, image("TIFF"))
    attachment = by_url["content"][0]["attachment"]
    del attachment["data"], attachment["size"], attachment["hash"]
    attachment["url"] = "https://consultcam.example/images/1.tiff"
    answer = post(http, alex, auth, by_url)
    assert answer.status_code == 422
    assert "inline" in diagnostics(answer)


def test_a_wrong_size_or_hash_is_refused(
    alex: AlexDouble, http: httpx.Client, auth: dict[str, str], patient: str
) -> None:
    wrong_size = document(patient, image("TIFF"))
    wrong_size["content"][0]["attachment"]["size"] += 1
    assert "size" in diagnostics(post(http, alex, auth, wrong_size))
    wrong_hash = document(patient, image("TIFF"))
    wrong_hash["content"][0]["attachment"]["hash"] = base64.b64encode(
        hashlib.sha1(b"other").digest()
    ).decode()
    assert "hash" in diagnostics(post(http, alex, auth, wrong_hash))
    assert alex.resources("DocumentReference") == []


def test_an_attachment_of_a_million_bytes_is_refused(
    alex: AlexDouble, http: httpx.Client, auth: dict[str, str], patient: str
) -> None:
    tiff = image("TIFF")
    just_under = tiff + b"\0" * (999_999 - len(tiff))
    at_limit = tiff + b"\0" * (1_000_000 - len(tiff))
    refused = post(http, alex, auth, document(patient, at_limit))
    assert refused.status_code == 422
    assert "1000000 bytes" in diagnostics(refused)
    assert post(http, alex, auth, document(patient, just_under)).status_code == 201
    assert len(alex.resources("DocumentReference")) == 1


def test_a_body_of_eight_million_bytes_is_refused(
    alex: AlexDouble, http: httpx.Client, auth: dict[str, str], patient: str
) -> None:
    headers = {**auth, "Content-Type": "application/fhir+json"}
    url = f"{alex.fhir_url}/DocumentReference"
    base = json.dumps(document(patient, image("TIFF"), description="")).encode()
    for size, status in ((8_000_000, 413), (7_999_999, 201)):
        body = base.replace(b'"description": ""', b'"description": "' + b"x" * (size - len(base)) + b'"')
        assert len(body) == size
        answer = http.post(url, content=body, headers=headers)
        assert answer.status_code == status
    assert "8000000 bytes" in diagnostics(
        http.post(url, content=b"{" + b" " * 9_000_000 + b"}", headers=headers)
    )
    assert len(alex.resources("DocumentReference")) == 1


@pytest.mark.parametrize(
    "change",
    [{"status": "filed-away"}, {"content": []}, {"date": "yesterday"}, {"unknownField": 1}],
    ids=["status", "no-content", "date", "unknown-field"],
)
def test_an_invalid_document_reference_is_refused(
    alex: AlexDouble, http: httpx.Client, auth: dict[str, str], patient: str, change: dict[str, Any]
) -> None:
    answer = post(http, alex, auth, document(patient, image("TIFF"), **change))
    assert answer.status_code == 422
    assert diagnostics(answer).startswith("invalid DocumentReference")
    assert alex.resources("DocumentReference") == []


def test_writes_need_fhir_json_a_known_patient_and_the_right_type(
    alex: AlexDouble, http: httpx.Client, auth: dict[str, str], patient: str
) -> None:
    url = f"{alex.fhir_url}/DocumentReference"
    body = json.dumps(document(patient, image("TIFF"))).encode()
    as_json = http.post(url, content=body, headers={**auth, "Content-Type": "application/json"})
    assert as_json.status_code == 415
    stranger = post(http, alex, auth, document("0123abcd", image("TIFF")))
    assert (stranger.status_code, "known Patient" in diagnostics(stranger)) == (422, True)
    by_nhi = document(patient, image("TIFF"), subject={"identifier": {"system": NHI_SYSTEM, "value": NHI}})
    assert post(http, alex, auth, by_nhi).status_code == 422
    not_json = http.post(url, content=b"<xml/>", headers={**auth, "Content-Type": "application/fhir+json"})
    assert not_json.status_code == 400
    media_to_documents = http.post(
        url,
        content=json.dumps(media(patient)).encode(),
        headers={**auth, "Content-Type": "application/fhir+json"},
    )
    assert media_to_documents.status_code == 400
    assert alex.resources("DocumentReference") == []


def test_media_needs_an_identifier(
    alex: AlexDouble, http: httpx.Client, auth: dict[str, str], patient: str
) -> None:
    without = media(patient)
    del without["identifier"]
    refused = post(http, alex, auth, without)
    assert refused.status_code == 422
    assert "Media.identifier is mandatory" in diagnostics(refused)
    assert alex.resources("Media") == []
    created = post(http, alex, auth, media(patient))
    assert created.status_code == 201
    assert alex.resources("Media") == [created.json()]
    search = http.get(
        f"{alex.fhir_url}/Media", params={"patient.identifier": f"{NHI_SYSTEM}|{NHI}"}, headers=auth
    )
    assert search.json()["total"] == 1


def test_a_chunked_body_is_read_and_limited_alike(
    alex: AlexDouble, http: httpx.Client, auth: dict[str, str], patient: str
) -> None:
    headers = {**auth, "Content-Type": "application/fhir+json"}
    body = json.dumps(document(patient, image("TIFF"))).encode()
    pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    answer = http.post(f"{alex.fhir_url}/DocumentReference", content=iter(pieces), headers=headers)
    assert answer.status_code == 201
    assert alex.requests()[-1]["headers"]["transfer-encoding"] == "chunked"
    big = iter([b"{", b" " * 8_000_000, b"}"])
    assert http.post(f"{alex.fhir_url}/DocumentReference", content=big, headers=headers).status_code == 413
