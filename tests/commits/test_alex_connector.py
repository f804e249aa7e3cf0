"""The `alex` connector's Media mode (`alex+https://…/FHIR?resource=Media`, Medtech ALEX) against the FHIR
test server: Medtech headers, no transactions, the 1 MB limit, Pacific/Auckland times, site and laterality in
the note, settings from the environment, the URL's options. The default, Inbox Scan, is test_alex_inbox.py."""

from __future__ import annotations

import base64
import dataclasses
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.media import Media
from PIL import Image

from consultcam.commits.connectors.alex import ENV_NAMES, NO_FACILITY, AlexConnector, medtech
from consultcam.commits.connectors.base import CommitContext, CommitFailed, CommitItem
from consultcam.commits.connectors.registry import alex_credentials, connector_from_url
from consultcam.config import Settings
from consultcam.images.processing.fitted import fit_jpeg
from consultcam.kit.http import RetryPolicy
from consultcam.kit.oauth2 import ClientCredentials
from tests.commits.factories import commit_context
from tests.commits.fhir_server import CLIENT_ID, CLIENT_SECRET, FhirTestServer

PHOTOS = Path(__file__).resolve().parents[1] / "photos"
FAST = {"retry": RetryPolicy(attempts=4, wait_initial=0.01, wait_max=0.05), "timeout": 10.0}
LIMIT = 1_000_000
# Words a client stored with the code (before issue 10): never read, the note says the data file's term.
UPPER_ARM = {
    "system": "http://snomed.info/sct",
    "code": "40983000",
    "display": "Structure of left upper arm (body structure)",
}


@pytest.fixture
def alex_server() -> Iterator[FhirTestServer]:
    with FhirTestServer() as server:
        server.state.require_token = True
        server.state.transaction = True  # ALEX must not use it even when offered
        yield server


@pytest.fixture(autouse=True)
def _no_alex_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def make_context(**changes: Any) -> CommitContext:
    return commit_context(**{"facility_id": "F2N060-D", **changes})


def make_item(jpeg: bytes | None = None, **changes: Any) -> CommitItem:
    jpeg = jpeg if jpeg is not None else (PHOTOS / "coffee.jpg").read_bytes()
    with Image.open(io.BytesIO(jpeg)) as image:
        width, height = image.size
    item = CommitItem(
        image_id=str(uuid.uuid4()),
        jpeg=jpeg,
        width=width,
        height=height,
        captured_at=datetime(2025, 1, 15, 2, 12, 40, tzinfo=UTC),
        created_at=datetime(2025, 1, 15, 2, 13, 0, tzinfo=UTC),
        metadata={"label": "Lesion A", "bodySite": UPPER_ARM, "laterality": "left"},
    )
    return dataclasses.replace(item, **changes)


def big_jpeg() -> bytes:
    """A noisy 2048 px photo at quality 100: about 2.5 MB, far over ALEX's limit."""
    with Image.open(PHOTOS / "coffee.jpg") as photo:
        base = photo.convert("RGB").resize((2048, 1536))
    noise = Image.effect_noise((2048, 1536), 60).convert("RGB")
    noisy = Image.blend(base, noise, 0.35)
    out = io.BytesIO()
    noisy.save(out, format="JPEG", quality=100)
    return out.getvalue()


async def no_progress(done: int, total: int) -> None:
    pass


def oauth(server: FhirTestServer) -> ClientCredentials:
    return ClientCredentials(server.token_url, CLIENT_ID, CLIENT_SECRET, scope="patient/Media.write")


def connector(server: FhirTestServer) -> AlexConnector:
    return AlexConnector(server.base_url, oauth=oauth(server), resource="Media", **FAST)


def alex_requests(server: FhirTestServer) -> list[Any]:
    return [r for r in server.requests() if r.path != "/token"]


# -- headers, token, one by one ----------------------------------------------------------------------------


async def test_every_request_carries_the_facility_and_a_fresh_correlation_id(alex_server):
    items = [make_item(), make_item(metadata={"label": "Lesion B"})]

    results = await connector(alex_server).commit(make_context(), items, no_progress)

    assert [r.status for r in results] == ["committed", "committed"]
    assert alex_server.state.token_requests == 1
    requests = alex_requests(alex_server)
    assert [(r.method, r.path) for r in requests] == [
        ("GET", "/metadata"),
        ("POST", "/Media"),
        ("POST", "/Media"),
    ]
    assert all(r.headers.get("mt-facilityid") == "F2N060-D" for r in requests)
    assert all(r.headers.get("authorization") == "Bearer token-1" for r in requests)
    correlation = [r.headers.get("mt-correlationid") for r in requests]
    assert len(set(correlation)) == len(correlation)
    assert all(uuid.UUID(value).version == 4 for value in correlation)
    [token] = alex_server.requests("POST", "/token")
    assert "mt-facilityid" not in token.headers


async def test_no_transaction_even_when_the_server_offers_one(alex_server):
    await connector(alex_server).commit(make_context(), [make_item(), make_item()], no_progress)

    assert alex_server.requests("POST", "/") == []
    assert len(alex_server.requests("POST", "/Media")) == 2
    assert all(
        r.headers.get("if-none-exist", "").startswith("identifier=")
        for r in alex_server.requests("POST", "/Media")
    )


async def test_retried_requests_get_new_correlation_ids(alex_server):
    alex_server.fail(503, times=1)

    await connector(alex_server).commit(make_context(), [make_item()], no_progress)

    posts = alex_server.requests("POST", "/Media")
    assert [r.status for r in posts] == [503, 201]
    assert posts[0].headers["mt-correlationid"] != posts[1].headers["mt-correlationid"]


async def test_compensation_deletes_the_first_photo_when_the_second_is_refused(alex_server):
    alex_server.state.refuse_write = 2
    items = [make_item(), make_item(metadata={"label": "Lesion B"})]

    with pytest.raises(CommitFailed) as failed:
        await connector(alex_server).commit(make_context(), items, no_progress)

    assert alex_server.resources() == []
    [delete] = alex_server.requests("DELETE")
    assert delete.path.startswith("/Media/")
    assert delete.headers.get("mt-facilityid") == "F2N060-D"
    assert "Nothing was saved" in failed.value.detail
    assert [r.status for r in failed.value.results] == ["failed", "failed"]


async def test_a_session_without_a_facility_fails_before_any_request(alex_server):
    with pytest.raises(CommitFailed) as failed:
        await connector(alex_server).commit(make_context(facility_id=None), [make_item()], no_progress)

    assert NO_FACILITY in failed.value.detail
    assert failed.value.results[0].status == "failed"
    assert alex_server.requests() == []
    assert alex_server.state.token_requests == 0


# -- the resource ------------------------------------------------------------------------------------------


async def test_media_carries_nhi_identifier_auckland_time_and_site_in_the_note(alex_server):
    summer = make_item(captured_at=datetime(2025, 1, 15, 2, 12, 40, tzinfo=UTC))
    winter = make_item(
        captured_at=datetime(2025, 7, 15, 2, 12, 40, tzinfo=UTC),
        metadata={
            "label": "Rash",
            "bodySite": {**UPPER_ARM, "display": "Upper arm"},
            "laterality": "bilateral",
        },
    )

    await connector(alex_server).commit(make_context(), [summer, winter], no_progress)

    by_id = {m["identifier"][0]["value"]: m for m in alex_server.resources()}
    first, second = by_id[summer.image_id], by_id[winter.image_id]
    for media in (first, second):
        Media.model_validate(media)
        assert media["subject"]["identifier"] == {
            "system": "https://standards.digital.health.nz/ns/nhi-id",
            "value": "ZZZ0016",
        }
    assert first["createdDateTime"] == "2025-01-15T15:12:40+13:00"  # NZDT
    assert first["content"]["creation"] == "2025-01-15T15:12:40+13:00"
    assert second["createdDateTime"] == "2025-07-15T14:12:40+12:00"  # NZST
    assert (
        first["note"][0]["text"]
        == "Lesion A — Upper arm structure (SNOMED CT 40983000), laterality: left (7771000)"
    )
    assert (
        second["note"][0]["text"]
        == "Rash — Upper arm structure (SNOMED CT 40983000), laterality: bilateral (51440002)"
    )
    assert [n["text"] for n in first["note"]].count("Lesion A") == 0  # not repeated on its own
    assert first["bodySite"]["coding"][0]["code"] == "40983000"  # still coded, for systems that read it


async def test_a_large_jpeg_is_recompressed_under_one_megabyte(alex_server):
    jpeg = big_jpeg()
    assert len(jpeg) > 2_000_000
    item = make_item(jpeg)

    await connector(alex_server).commit(make_context(), [item], no_progress)

    [media] = alex_server.resources()
    data = base64.b64decode(media["content"]["data"])
    assert len(data) < LIMIT
    assert media["content"]["size"] == len(data)
    assert data.startswith(b"\xff\xd8\xff")
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        image.load()
        assert (media["width"], media["height"]) == image.size
        assert image.width <= 2048


def test_fit_jpeg_steps_quality_then_scale_and_never_upscales():
    jpeg = big_jpeg()
    fitted = fit_jpeg(jpeg, LIMIT)
    data, width, height = fitted.data, fitted.width, fitted.height
    assert fitted.content_type == "image/jpeg"
    assert len(data) < LIMIT
    assert width <= 2048
    assert height <= 1536
    scaled = fit_jpeg(jpeg, 150_000)  # needs scaling down
    small, w, h = scaled.data, scaled.width, scaled.height
    assert len(small) < 150_000
    assert w < 2048
    assert h < 1536
    with Image.open(io.BytesIO(small)) as image:
        image.load()
        assert image.size == (w, h)
    with pytest.raises(ValueError, match="could not be read"):
        fit_jpeg(b"\xff\xd8\xff" + b"\x00" * 2_000_000, LIMIT)


async def test_small_photos_are_sent_unchanged(alex_server):
    item = make_item()
    await connector(alex_server).commit(make_context(), [item], no_progress)
    [media] = alex_server.resources()
    assert base64.b64decode(media["content"]["data"]) == item.jpeg


def test_mappings_are_data():
    data = medtech()
    assert data["patient_identifier_system"] == "https://standards.digital.health.nz/ns/nhi-id"
    assert data["max_image_bytes"] == LIMIT
    assert data["time_zone"] == "Pacific/Auckland"
    assert data["headers"] == {"facility": "mt-facilityid", "correlation": "mt-correlationid"}


# -- settings ----------------------------------------------------------------------------------------------


def settings(server: FhirTestServer) -> dict[str, str]:
    return {
        "CONSULTCAM_ALEX_TOKEN_URL": server.token_url,
        "CONSULTCAM_ALEX_CLIENT_ID": CLIENT_ID,
        "CONSULTCAM_ALEX_CLIENT_SECRET": CLIENT_SECRET,
        "CONSULTCAM_ALEX_SCOPE": "patient/Media.write",
    }


def read(env: dict[str, str]) -> Settings:
    """The Settings those environment variables make."""
    return Settings(**{name.removeprefix("CONSULTCAM_").lower(): value for name, value in env.items()})


async def test_connector_from_url_reads_the_alex_settings(alex_server, monkeypatch):
    for name, value in settings(alex_server).items():
        monkeypatch.setenv(name, value)

    emr = connector_from_url(f"alex+http://127.0.0.1:{alex_server.port}/fhir?resource=Media", Settings())

    assert isinstance(emr, AlexConnector)
    assert emr.resource == "Media"
    assert emr.name == "alex"
    assert CLIENT_SECRET not in repr(emr)
    await emr.commit(make_context(), [make_item()], no_progress)
    assert len(alex_server.resources()) == 1
    [token] = alex_server.requests("POST", "/token")
    assert token.status == 200


@pytest.mark.parametrize("missing", ENV_NAMES)
def test_a_missing_setting_is_named(alex_server, missing):
    env = settings(alex_server)
    del env[missing]
    with pytest.raises(ValueError, match=missing):
        connector_from_url("alex+https://alex.example/FHIR", read(env))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("alex+http://alex.example/FHIR", "only for a local test server"),
        ("alex+https://user:s3cret@alex.example/FHIR", "user name or password"),
        ("alex+https://alex.example/FHIR?client_secret=s3cret", "must not be in CONSULTCAM_EMR_URL"),
        (
            "alex+https://alex.example/FHIR?secret=s3cret",
            "unknown ALEX option 'secret' in CONSULTCAM_EMR_URL",
        ),
        ("alex+https://alex.example/FHIR?format=jpeg", "format= in CONSULTCAM_EMR_URL must be tiff"),
        ("alex+https://alex.example/FHIR?resource=Patient", "must be DocumentReference .* or Media"),
        ("alex+https://alex.example/FHIR?resource=Media&format=pdf", "format= .* is for Inbox Scan"),
        ("alex+https://alex.example/FHIR?format=pdf&format=tiff", "format= appears twice"),
        ("alex+https://alex.example/FHIR#s3cret", "no #fragment"),
        ("fhir+https://alex.example/FHIR", "alex\\+https://"),
    ],
)
def test_bad_alex_urls_are_refused(alex_server, url, message):
    with pytest.raises(ValueError, match=message) as refused:
        AlexConnector.from_url(url, oauth=alex_credentials(read(settings(alex_server))))
    assert "s3cret" not in str(refused.value)


def test_https_url_builds_the_base():
    env = {
        "CONSULTCAM_ALEX_TOKEN_URL": "https://login.example/token",
        "CONSULTCAM_ALEX_CLIENT_ID": "id",
        "CONSULTCAM_ALEX_CLIENT_SECRET": "secret",
        "CONSULTCAM_ALEX_SCOPE": "scope",
    }
    emr = AlexConnector.from_url(
        "alex+https://alex.medtechglobal.com/FHIR/", oauth=alex_credentials(read(env))
    )
    assert emr.base_url == "https://alex.medtechglobal.com/FHIR"
    assert (emr.resource, emr.document_format) == ("DocumentReference", "tiff")  # Inbox Scan by default
    pdf = AlexConnector.from_url(
        "alex+https://alex.medtechglobal.com/FHIR?format=PDF", oauth=alex_credentials(read(env))
    )
    assert (pdf.resource, pdf.document_format) == ("DocumentReference", "pdf")
    media = AlexConnector.from_url(
        "alex+https://alex.medtechglobal.com/FHIR?resource=Media", oauth=alex_credentials(read(env))
    )
    assert media.resource == "Media"
