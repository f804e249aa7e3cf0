"""The `fhir` connector against a real FHIR test server: all or nothing, never twice, retries, auth."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.media import Media
from PIL import Image

from consultcam.commits.connectors.base import CommitContext, CommitFailed, CommitItem, ConnectorUnavailable
from consultcam.commits.connectors.fhir import FhirConnector
from consultcam.commits.connectors.registry import connector_from_url
from consultcam.commits.fhir_media import IMAGE_IDENTIFIER_SYSTEM
from consultcam.config import Settings
from consultcam.kit.http import RetryPolicy
from consultcam.kit.oauth2 import ClientCredentials
from tests.commits.factories import Progress, commit_context
from tests.commits.fhir_server import CLIENT_ID, CLIENT_SECRET, FhirTestServer
from tests.conftest import jpeg_bytes, pair_phone, start_session, upload

PHOTOS = Path(__file__).resolve().parents[1] / "photos"
NZDT = timezone(timedelta(hours=13))
FAST = {"retry": RetryPolicy(attempts=4, wait_initial=0.01, wait_max=0.05), "timeout": 5.0}
ENV_NAMES = (
    "CONSULTCAM_EMR_BEARER_TOKEN",
    "CONSULTCAM_EMR_TOKEN_URL",
    "CONSULTCAM_EMR_CLIENT_ID",
    "CONSULTCAM_EMR_CLIENT_SECRET",
    "CONSULTCAM_EMR_SCOPE",
)


@pytest.fixture
def fhir_server() -> Iterator[FhirTestServer]:
    with FhirTestServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_emr_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def make_context(**changes: Any) -> CommitContext:
    return commit_context(**{"facility_id": "fac-1", **changes})


def make_items(count: int) -> list[CommitItem]:
    photos = ["fundus-left-eye.jpg", "coffee.jpg", "cat.jpg", "rocket.jpg"]
    items = []
    for index in range(count):
        path = PHOTOS / photos[index % len(photos)]
        with Image.open(path) as image:
            width, height = image.size
        items.append(
            CommitItem(
                image_id=str(uuid.uuid4()),
                jpeg=path.read_bytes(),
                width=width,
                height=height,
                captured_at=datetime(2025, 1, 15, 15, 12, 40, tzinfo=NZDT),
                created_at=datetime(2025, 1, 15, 2, 13, 0, tzinfo=UTC),
                metadata={"label": f"Lesion {chr(65 + index)}"},
            )
        )
    return items


def connector(server: FhirTestServer, **options: Any) -> FhirConnector:
    return FhirConnector(server.base_url, **{**FAST, **options})


def identifiers(server: FhirTestServer, kind: str = "Media") -> list[str]:
    return sorted(
        i["value"]
        for r in server.resources(kind)
        for i in r["identifier"]
        if i["system"] == IMAGE_IDENTIFIER_SYSTEM
    )


# -- all or nothing ----------------------------------------------------------------------------------------


async def test_transaction_commit_saves_every_photo_in_one_request(fhir_server):
    items, progress = make_items(3), Progress()

    results = await connector(fhir_server).commit(make_context(), items, progress)

    assert [r.status for r in results] == ["committed"] * 3
    assert all(r.resource_id and r.resource_id.startswith("Media/") for r in results)
    assert "_history" not in results[0].resource_id
    assert identifiers(fhir_server) == sorted(i.image_id for i in items)
    assert [r.method for r in fhir_server.requests()] == ["GET", "POST"]  # metadata, one transaction
    assert fhir_server.requests("POST")[0].path == "/"
    for media in fhir_server.resources():
        Media.model_validate(media)
    assert progress.calls[-1] == (3, 3)


async def test_a_commit_over_the_request_limit_goes_in_several_transactions(fhir_server):
    """This server lists no Binary: past CONSULTCAM_FHIR_MAX_REQUEST_BYTES the entries are split, each
    transaction within the limit (docs/connectors.md, "Servers with a request limit")."""
    items, progress = make_items(4), Progress()
    limit = 600 * 1024  # the four photos are about 670 KB as base64

    results = await connector(fhir_server, max_request_bytes=limit).commit(make_context(), items, progress)

    assert [r.status for r in results] == ["committed"] * 4
    assert identifiers(fhir_server) == sorted(i.image_id for i in items)
    transactions = fhir_server.requests("POST")
    assert len(transactions) >= 2
    assert all(r.path == "/" for r in transactions)
    for media in fhir_server.resources():
        Media.model_validate(media)
    assert progress.calls[-1] == (4, 4)


async def test_refused_transaction_saves_nothing_and_names_the_reason(fhir_server):
    fhir_server.state.refuse_write = 2
    items = make_items(3)

    with pytest.raises(CommitFailed) as failed:
        await connector(fhir_server).commit(make_context(), items, Progress())

    assert fhir_server.resources() == []
    assert "patient is not registered" in failed.value.detail
    assert "Nothing was saved" in failed.value.detail
    assert [r.status for r in failed.value.results] == ["failed"] * 3
    assert all("patient is not registered" in r.error for r in failed.value.results)
    assert len(fhir_server.requests("POST")) == 1  # a 400 is never retried


async def test_without_transactions_each_photo_is_a_conditional_create(fhir_server):
    fhir_server.state.transaction = False
    items, progress = make_items(3), Progress()

    results = await connector(fhir_server).commit(make_context(), items, progress)

    assert [r.status for r in results] == ["committed"] * 3
    assert identifiers(fhir_server) == sorted(i.image_id for i in items)
    assert [r.path for r in fhir_server.requests("POST")] == ["/Media"] * 3
    assert progress.calls == [(1, 3), (2, 3), (3, 3)]
    assert {r.resource_id for r in results} == {f"Media/{m['id']}" for m in fhir_server.resources()}


async def test_compensation_deletes_exactly_what_this_commit_created(fhir_server):
    fhir_server.state.transaction = False
    items = make_items(4)
    # An earlier, interrupted commit already saved the second photo: it must be found, not duplicated,
    # and not deleted by this commit's compensation.
    earlier = await connector(fhir_server).commit(make_context(), [items[1]], Progress())
    fhir_server.state.refuse_write = fhir_server.state.writes + 3  # the 4th photo (3rd new write)

    with pytest.raises(CommitFailed) as failed:
        await connector(fhir_server).commit(make_context(), items, Progress())

    assert identifiers(fhir_server) == [items[1].image_id]
    deleted = sorted(r.path for r in fhir_server.requests("DELETE"))
    assert len(deleted) == 2
    assert f"/{earlier[0].resource_id}" not in deleted
    assert "patient is not registered" in failed.value.detail
    # The GP is told the truth: this attempt saved nothing, the earlier one's photo is in the record.
    assert "This time nothing was saved" in failed.value.detail
    assert "1 photo saved by an earlier, interrupted attempt of this commit is in the record " in (
        failed.value.detail
    )
    assert earlier[0].resource_id in failed.value.detail
    assert failed.value.results[3].error.endswith("patient is not registered at this practice")
    assert "Lesion D" in failed.value.results[0].error
    assert "earlier, interrupted attempt" in failed.value.results[1].error


async def test_a_failed_compensating_delete_is_reported_plainly(fhir_server):
    fhir_server.state.transaction = False
    fhir_server.state.refuse_write = 2
    fhir_server.state.fail_deletes = True
    items = make_items(2)

    with pytest.raises(CommitFailed) as failed:
        await connector(fhir_server).commit(make_context(), items, Progress())

    [left] = fhir_server.resources()
    detail = failed.value.detail
    assert f"1 photo that was already saved could not be removed: Media/{left['id']}" in detail
    assert "ask the practice's EMR administrator to delete it" in detail
    assert "Nothing was saved" not in detail
    assert len(fhir_server.requests("DELETE")) == 1  # a 403 is not retried
    assert f"Media/{left['id']}" in failed.value.results[0].error


# -- never twice -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transaction", [True, False])
async def test_a_repeated_commit_creates_no_duplicate(fhir_server, transaction):
    fhir_server.state.transaction = transaction
    items = make_items(2)

    first = await connector(fhir_server).commit(make_context(), items, Progress())
    again = await connector(fhir_server).commit(make_context(), items, Progress())

    assert identifiers(fhir_server) == sorted(i.image_id for i in items)
    assert [r.resource_id for r in again] == [r.resource_id for r in first]
    search = fhir_server.requests("GET")
    assert search  # metadata read by each new connector
    found = FhirTestServerSearch(fhir_server).by_identifier(items[0].image_id)
    assert found["total"] == 1


class FhirTestServerSearch:
    """GET [base]/Media?identifier=… through plain HTTP, as an EMR's own client would."""

    def __init__(self, server: FhirTestServer) -> None:
        self.server = server

    def by_identifier(self, image_id: str) -> dict[str, Any]:
        import httpx

        response = httpx.get(
            f"{self.server.base_url}/Media", params={"identifier": f"{IMAGE_IDENTIFIER_SYSTEM}|{image_id}"}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["type"] == "searchset"
        return body


# -- retries -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transaction", [True, False])
async def test_503_is_retried(fhir_server, transaction):
    fhir_server.state.transaction = transaction
    fhir_server.fail(503, times=2)
    items = make_items(1)

    results = await connector(fhir_server).commit(make_context(), items, Progress())

    assert results[0].status == "committed"
    assert [r.status for r in fhir_server.requests("POST")] == [503, 503, 201 if not transaction else 200]
    assert len(fhir_server.resources()) == 1


async def test_429_waits_at_least_retry_after(fhir_server):
    fhir_server.fail(429, times=1, retry_after="1")
    items = make_items(1)

    await connector(fhir_server).commit(make_context(), items, Progress())

    first, second = fhir_server.requests("POST")
    assert first.status == 429
    assert second.status == 200
    assert second.at - first.at >= 1.0
    assert len(fhir_server.resources()) == 1


async def test_a_timeout_is_retried_without_a_duplicate(fhir_server):
    fhir_server.state.transaction = False
    fhir_server.delay(1.0, times=1)
    items = make_items(2)

    results = await connector(fhir_server, timeout=0.3).commit(make_context(), items, Progress())

    assert [r.status for r in results] == ["committed"] * 2
    time.sleep(1.0)  # let the late answer to the first request finish its (conditional) create
    assert identifiers(fhir_server) == sorted(i.image_id for i in items)
    assert len(fhir_server.requests("POST")) == 3


async def test_a_400_is_sent_once(fhir_server):
    fhir_server.state.transaction = False
    fhir_server.fail(400, times=5)

    with pytest.raises(CommitFailed) as failed:
        await connector(fhir_server).commit(make_context(), make_items(1), Progress())

    assert len(fhir_server.requests("POST")) == 1
    assert "switched to answer 400" in failed.value.results[0].error


async def test_a_server_that_stays_down_fails_plainly_after_a_few_attempts(fhir_server):
    fhir_server.fail(500, times=10)

    with pytest.raises(CommitFailed) as failed:
        await connector(fhir_server, retry=RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.05)).commit(
            make_context(), make_items(1), Progress()
        )

    assert len(fhir_server.requests("POST")) == 3
    assert "having problems" in failed.value.detail
    assert "try again in a few minutes" in failed.value.detail
    assert fhir_server.resources() == []


async def test_an_unreachable_server_fails_plainly():
    with FhirTestServer() as server:
        base_url = server.base_url
    dead = FhirConnector(
        base_url, **{**FAST, "retry": RetryPolicy(attempts=2, wait_initial=0.01, wait_max=0.05)}
    )

    with pytest.raises(CommitFailed) as failed:
        await dead.commit(make_context(), make_items(1), Progress())
    assert "could not be reached" in failed.value.detail
    with pytest.raises(ConnectorUnavailable):
        await dead.check()


# -- authentication ----------------------------------------------------------------------------------------


def oauth(server: FhirTestServer) -> ClientCredentials:
    return ClientCredentials(server.token_url, CLIENT_ID, CLIENT_SECRET, scope="system/Media.write")


async def test_oauth2_token_is_cached_across_commits(fhir_server):
    fhir_server.state.require_token = True
    emr = connector(fhir_server, oauth=oauth(fhir_server))

    await emr.commit(make_context(), make_items(1), Progress())
    await emr.commit(make_context(), make_items(1), Progress())

    assert fhir_server.state.token_requests == 1
    assert len(fhir_server.resources()) == 2
    assert CLIENT_SECRET not in repr(emr)
    assert CLIENT_SECRET not in repr(oauth(fhir_server))


async def test_oauth2_token_is_refreshed_once_on_401(fhir_server):
    fhir_server.state.require_token = True
    emr = connector(fhir_server, oauth=oauth(fhir_server))
    await emr.check()
    fhir_server.revoke_tokens()  # the server forgot the token before its expires_in

    results = await emr.commit(make_context(), make_items(1), Progress())

    assert results[0].status == "committed"
    assert fhir_server.state.token_requests == 2
    assert [r.status for r in fhir_server.requests("POST", "/")] == [401, 200]


async def test_wrong_client_secret_is_reported_without_the_secret(fhir_server):
    fhir_server.state.require_token = True
    bad = ClientCredentials(fhir_server.token_url, CLIENT_ID, "wrong-secret")

    with pytest.raises(CommitFailed) as failed:
        await connector(fhir_server, oauth=bad).commit(make_context(), make_items(1), Progress())

    assert "sign-in" in failed.value.detail
    assert "IT support" in failed.value.detail
    assert "wrong-secret" not in failed.value.detail
    assert fhir_server.state.token_requests == 1


async def test_static_bearer_from_the_environment(fhir_server, monkeypatch):
    fhir_server.state.require_token = True
    fhir_server.state.static_token = "static-abc"
    monkeypatch.setenv("CONSULTCAM_EMR_BEARER_TOKEN", "static-abc")
    emr = connector_from_url(f"fhir+{fhir_server.base_url}", Settings())

    assert isinstance(emr, FhirConnector)
    assert "static-abc" not in repr(emr)
    await emr.check()
    monkeypatch.setenv("CONSULTCAM_EMR_BEARER_TOKEN", "wrong")
    with pytest.raises(ConnectorUnavailable, match="sign-in"):
        await connector_from_url(f"fhir+{fhir_server.base_url}", Settings()).check()


async def test_oauth2_settings_from_the_environment(fhir_server, monkeypatch):
    fhir_server.state.require_token = True
    monkeypatch.setenv("CONSULTCAM_EMR_TOKEN_URL", fhir_server.token_url)
    monkeypatch.setenv("CONSULTCAM_EMR_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("CONSULTCAM_EMR_CLIENT_SECRET", CLIENT_SECRET)

    emr = connector_from_url(f"fhir+{fhir_server.base_url}", Settings())
    await emr.check()

    assert fhir_server.state.token_requests == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("fhir+https://user:s3cret@emr.example/fhir", "user name or password"),
        ("fhir+https://emr.example/fhir?token=s3cret", "must not be in the EMR URL"),
        ("fhir+https://emr.example/fhir?resource=Observation", "resource="),
        ("fhir+https://emr.example/fhir?format=pdf", "needs resource=DocumentReference"),
        ("fhir+https://emr.example/fhir?resource=DocumentReference&format=gif", "format= must be one of"),
        ("fhir+https:///fhir", "no host"),
    ],
)
def test_unusable_fhir_urls_are_refused_without_echoing_secrets(url, message):
    with pytest.raises(ValueError, match=message) as refused:
        connector_from_url(url, Settings())
    assert "s3cret" not in str(refused.value)


def test_partial_oauth2_settings_are_refused(monkeypatch):
    monkeypatch.setenv("CONSULTCAM_EMR_CLIENT_ID", CLIENT_ID)
    with pytest.raises(ValueError, match="CONSULTCAM_EMR_TOKEN_URL"):
        connector_from_url("fhir+https://emr.example/fhir", Settings())


# -- DocumentReference -------------------------------------------------------------------------------------


@pytest.mark.parametrize("transaction", [True, False])
async def test_document_reference_carries_the_jpeg(fhir_server, transaction):
    fhir_server.state.transaction = transaction
    emr = FhirConnector.from_url(f"fhir+{fhir_server.base_url}?resource=DocumentReference", **FAST)
    items = make_items(1)

    results = await emr.commit(make_context(), items, Progress())

    assert results[0].resource_id.startswith("DocumentReference/")
    [document] = fhir_server.resources("DocumentReference")
    DocumentReference.model_validate(document)
    assert document["status"] == "current"
    assert document["type"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "72170-4",
        "display": "Photographic image",
    }
    assert document["subject"]["reference"] == "Patient/pat-77"
    assert document["author"] == [{"reference": "Practitioner/prac-9"}]
    attachment = document["content"][0]["attachment"]
    assert attachment["contentType"] == "image/jpeg"
    assert base64.b64decode(attachment["data"]) == items[0].jpeg
    assert fhir_server.resources("Media") == []


@pytest.mark.parametrize(
    ("fmt", "content_type", "magic"),
    [("pdf", "application/pdf", b"%PDF-"), ("tiff", "image/tiff", b"II*\x00")],
)
async def test_document_reference_converts_for_inboxes_that_take_only_pdf_or_tiff(
    fhir_server, fmt, content_type, magic
):
    emr = FhirConnector.from_url(
        f"fhir+{fhir_server.base_url}?resource=DocumentReference&format={fmt}", **FAST
    )
    items = make_items(1)

    await emr.commit(make_context(), items, Progress())

    [document] = fhir_server.resources("DocumentReference")
    DocumentReference.model_validate(document)
    attachment = document["content"][0]["attachment"]
    data = base64.b64decode(attachment["data"])
    assert attachment["contentType"] == content_type
    assert data.startswith(magic)
    assert attachment["size"] == len(data)
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(data).digest()).decode()
    with Image.open(io.BytesIO(items[0].jpeg)) as original:
        size = original.size
    if fmt == "tiff":  # lossless from the JPEG's pixels: the same picture, the same size
        with Image.open(io.BytesIO(data)) as converted:
            assert converted.size == size
    else:  # one page, the photo's size at 150 dpi (PDF points are 1/72 inch)
        box = re.search(rb"/MediaBox \[ ?0 0 ([\d.]+) ([\d.]+) ?\]", data)
        assert box is not None
        assert (round(float(box.group(1)) * 150 / 72), round(float(box.group(2)) * 150 / 72)) == size


# -- through the API ---------------------------------------------------------------------------------------


@pytest.fixture
def settings_overrides(fhir_server: FhirTestServer) -> dict[str, Any]:
    return {"emr_url": f"fhir+{fhir_server.base_url}"}


async def test_commit_through_the_api_saves_valid_media(fhir_server, clinician, new_client, runtime):
    assert isinstance(runtime.connector, FhirConnector)
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    image = (await upload(phone, session["id"], jpeg_bytes(), metadata={"label": "Lesion A"})).json()

    response = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})

    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    [media] = fhir_server.resources()
    Media.model_validate(media)
    assert result["resourceId"] == f"Media/{media['id']}"
    assert media["identifier"][0]["value"] == image["id"]
    assert media["subject"]["reference"] == "Patient/pat-1"
    ready = await clinician.get("/readyz")
    assert ready.status_code == 200, ready.text


async def test_a_refusing_server_reopens_the_session_with_the_reason(
    fhir_server, clinician, new_client, runtime
):
    fhir_server.state.refuse_write = 1
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    await upload(phone, session["id"], jpeg_bytes())

    response = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})

    assert response.status_code == 502, response.text
    assert "patient is not registered at this practice" in response.json()["detail"]
    state = (await clinician.get(f"/api/sessions/{session['id']}")).json()
    assert state["status"] == "open"
    assert "patient is not registered" in state["commitError"]
    assert fhir_server.resources() == []

    fhir_server.state.refuse_write = None
    retried = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    assert retried.status_code == 200, retried.text
    assert len(fhir_server.resources()) == 1


async def test_a_timed_out_transaction_is_retried_without_a_duplicate(fhir_server):
    fhir_server.delay(1.0, times=1)
    items = make_items(2)

    results = await connector(fhir_server, timeout=0.3).commit(make_context(), items, Progress())

    assert [r.status for r in results] == ["committed"] * 2
    time.sleep(1.0)  # the late first transaction finds the photos the retry saved
    assert identifiers(fhir_server) == sorted(i.image_id for i in items)


async def test_a_failing_progress_callback_leaves_nothing_behind(fhir_server):
    fhir_server.state.transaction = False

    async def broken(done: int, total: int) -> None:
        if done == 2:
            raise RuntimeError("event bus down")

    with pytest.raises(RuntimeError, match="event bus down"):
        await connector(fhir_server).commit(make_context(), make_items(3), broken)

    assert fhir_server.resources() == []
    assert len(fhir_server.requests("DELETE")) == 2


async def test_tokens_and_image_bytes_are_never_logged(fhir_server, caplog):
    caplog.set_level(logging.DEBUG)
    fhir_server.state.require_token = True
    fhir_server.fail(503, times=1)
    emr = connector(fhir_server, oauth=oauth(fhir_server))
    items = make_items(1)
    await emr.check()
    fhir_server.revoke_tokens()

    await emr.commit(make_context(), items, Progress())

    text = caplog.text
    assert "retrying" in text
    assert "token-" not in text
    assert CLIENT_SECRET not in text
    assert base64.b64encode(items[0].jpeg[:60]).decode()[:40] not in text
