"""`fhir+http(s)://…?profile=mhd`: a commit published as an IHE MHD ITI-65 Provide Document Bundle into a real
FHIR test server (tests/commits/fhir_server.py), and what landed read back over HTTP."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterator

import httpx
import pytest

from consultcam.commits.connectors.base import CommitFailed, ConnectorUnavailable
from consultcam.commits.connectors.fhir import FhirConnector, FhirTarget, parse_url
from consultcam.commits.connectors.registry import connector_from_url
from consultcam.commits.fhir_mhd import MINIMAL_PROVIDE_BUNDLE
from consultcam.config import Settings
from consultcam.kit.http import RetryPolicy
from consultcam.kit.status import ImageCommitStatus
from tests.commits.factories import Progress
from tests.commits.fhir_server import FhirTestServer
from tests.commits.test_mhd import ITEMS, make_context

FAST = {"retry": RetryPolicy(attempts=2, wait_initial=0.01, wait_max=0.05), "timeout": 5.0}


@pytest.fixture
def fhir_server() -> Iterator[FhirTestServer]:
    with FhirTestServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_emr_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BEARER_TOKEN", "TOKEN_URL", "CLIENT_ID", "CLIENT_SECRET", "SCOPE"):
        monkeypatch.delenv(f"CONSULTCAM_EMR_{name}", raising=False)


def mhd_connector(server: FhirTestServer) -> FhirConnector:
    return FhirConnector.from_url(f"fhir+{server.base_url}?profile=mhd", **FAST)


def read(server: FhirTestServer, path: str) -> dict:
    response = httpx.get(f"{server.base_url}/{path}", headers={"Accept": "application/fhir+json"})
    assert response.status_code == 200, response.text
    return response.json()


# -- the URL option -------------------------------------------------------------------------------------


def test_profile_mhd_is_read_from_the_url():
    assert parse_url("fhir+https://emr.example/fhir?profile=mhd") == FhirTarget(
        "https://emr.example/fhir", "DocumentReference", "jpeg", "mhd"
    )
    assert parse_url("fhir+https://emr.example/fhir").profile is None


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("profile=xds", "profile= must be one of mhd"),
        ("profile=mhd&resource=Media", "leave out resource= and format="),
        ("profile=mhd&resource=DocumentReference&format=pdf", "leave out resource= and format="),
    ],
)
def test_unusable_profile_options_are_refused(query, words):
    with pytest.raises(ValueError, match=words):
        parse_url(f"fhir+https://emr.example/fhir?{query}")


def test_the_registry_builds_an_mhd_connector(fhir_server):
    emr = connector_from_url(f"fhir+{fhir_server.base_url}?profile=mhd", Settings())
    assert isinstance(emr, FhirConnector)
    assert emr.profile == "mhd"
    assert emr.mhd_source_id is None


async def test_the_practices_own_source_id_is_the_submission_sets(fhir_server):
    """CONSULTCAM_MHD_SOURCE_ID: the OID the practice's document registry gave it, on the List it stored."""
    settings = Settings(mhd_source_id=" urn:oid:1.2.554.4.7 ")
    emr = connector_from_url(f"fhir+{fhir_server.base_url}?profile=mhd", settings)
    assert isinstance(emr, FhirConnector)
    await emr.commit(make_context(), ITEMS, Progress())
    (listing,) = fhir_server.resources("List")
    (source,) = [e for e in listing["extension"] if e["url"].endswith("/StructureDefinition/ihe-sourceId")]
    assert source["valueIdentifier"]["value"] == "urn:oid:1.2.554.4.7"


@pytest.mark.parametrize("value", ["1.2.554", "urn:oid:1.02.3", "urn:oid:3.1", "urn:uuid:0f8f"])
def test_a_source_id_that_is_not_an_oid_urn_is_refused(value):
    with pytest.raises(ValueError, match="must be an OID as a URN"):
        Settings(mhd_source_id=value)


# -- a commit into the FHIR test server -----------------------------------------------------------------


async def test_a_commit_lands_as_a_submission_set_documents_and_binaries(fhir_server):
    progress = Progress()
    results = await mhd_connector(fhir_server).commit(make_context(), ITEMS, progress)

    assert [r.status for r in results] == [ImageCommitStatus.COMMITTED] * len(ITEMS)
    assert all(r.resource_id and r.resource_id.startswith("DocumentReference/") for r in results)
    assert progress.calls == [(len(ITEMS), len(ITEMS))]
    # ITI-65: one transaction POSTed to the base URL, as FHIR JSON, carrying the option's profile.
    posts = fhir_server.requests("POST")
    assert [(r.path, r.status) for r in posts] == [("/", 200)]
    assert posts[0].headers["content-type"].startswith("application/fhir+json")

    for item, result in zip(ITEMS, results, strict=True):
        document = read(fhir_server, result.resource_id)
        assert document["status"] == "current"
        assert document["type"]["coding"][0]["code"] == "72170-4"
        assert document["subject"]["reference"] == "Patient/pat-77"
        attachment = document["content"][0]["attachment"]
        # The urn:uuid of the Binary in the Bundle became the Binary the server saved.
        assert attachment["url"].startswith("Binary/")
        binary = read(fhir_server, attachment["url"])
        raw = base64.b64decode(binary["data"])
        assert raw == item.jpeg
        assert attachment["size"] == len(raw)
        assert attachment["hash"] == base64.b64encode(hashlib.sha1(raw).digest()).decode()

    (listing,) = fhir_server.resources("List")
    assert listing["code"]["coding"][0]["code"] == "submissionset"
    assert [entry["item"]["reference"] for entry in listing["entry"]] == [r.resource_id for r in results]
    assert len(fhir_server.resources("Binary")) == len(ITEMS)


async def test_the_bundle_sent_is_the_minimal_provide_bundle(fhir_server, monkeypatch):
    sent: list[dict] = []
    original = httpx.AsyncClient.send

    async def spy(self, request, **kwargs):
        if request.method == "POST":
            sent.append(json.loads(request.content))
        return await original(self, request, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", spy)
    await mhd_connector(fhir_server).commit(make_context(), ITEMS, Progress())
    (bundle,) = sent
    assert bundle["type"] == "transaction"
    assert bundle["meta"]["profile"] == [MINIMAL_PROVIDE_BUNDLE]


async def test_a_refused_entry_saves_nothing(fhir_server):
    """ITI-65 §2:3.65.4.1.3: the recipient processes the Bundle atomically; one refusal, nothing saved."""
    fhir_server.state.refuse_write = 4  # the first Binary, after the List and both DocumentReferences
    fhir_server.state.refuse_message = "Binary: the document repository is full"
    with pytest.raises(CommitFailed) as failed:
        await mhd_connector(fhir_server).commit(make_context(), ITEMS, Progress())
    assert "the document repository is full" in failed.value.detail
    assert "Nothing was saved" in failed.value.detail
    assert all(r.status == ImageCommitStatus.FAILED for r in failed.value.results)
    for kind in ("List", "DocumentReference", "Binary"):
        assert fhir_server.resources(kind) == []


async def test_a_repeated_commit_stores_no_second_submission_set_or_document(fhir_server):
    context = make_context()
    first = await mhd_connector(fhir_server).commit(context, ITEMS, Progress())
    again = await mhd_connector(fhir_server).commit(context, ITEMS, Progress())
    assert [r.resource_id for r in again] == [r.resource_id for r in first]
    assert len(fhir_server.resources("List")) == 1
    assert len(fhir_server.resources("DocumentReference")) == len(ITEMS)


async def test_a_later_attempt_finds_what_the_earlier_one_published_and_sends_nothing(fhir_server):
    """The earlier attempt's answer was lost (a timeout): its transaction landed whole, so the retry finds
    the SubmissionSet and sends no Binary again (a Binary has nothing ifNoneExist could search on)."""
    context = make_context()
    first = await mhd_connector(fhir_server).commit(context, ITEMS, Progress())
    progress = Progress()
    again = await mhd_connector(fhir_server).commit(dataclasses.replace(context, attempt=2), ITEMS, progress)
    assert [(r.image_id, r.resource_id) for r in again] == [(r.image_id, r.resource_id) for r in first]
    assert progress.calls == [(len(ITEMS), len(ITEMS))]
    assert len(fhir_server.requests("POST")) == 1
    assert len(fhir_server.resources("Binary")) == len(ITEMS)


async def test_a_later_attempt_of_a_commit_that_never_landed_publishes_it(fhir_server):
    fhir_server.state.refuse_write = 1
    context = make_context()
    with pytest.raises(CommitFailed):
        await mhd_connector(fhir_server).commit(context, ITEMS, Progress())
    fhir_server.state.refuse_write = None
    results = await mhd_connector(fhir_server).commit(
        dataclasses.replace(context, attempt=2), ITEMS, Progress()
    )
    assert [r.status for r in results] == [ImageCommitStatus.COMMITTED] * len(ITEMS)
    assert len(fhir_server.resources("Binary")) == len(ITEMS)
    assert len(fhir_server.resources("DocumentReference")) == len(ITEMS)


async def test_a_server_without_transactions_is_refused_before_anything_is_sent(fhir_server):
    fhir_server.state.transaction = False
    emr = mhd_connector(fhir_server)
    with pytest.raises(ConnectorUnavailable, match=r"MHD.*needs transaction support"):
        await emr.check()
    with pytest.raises(CommitFailed, match=r"MHD.*needs transaction support") as failed:
        await emr.commit(make_context(), ITEMS, Progress())
    assert fhir_server.requests("POST") == []
    assert [r.error for r in failed.value.results] == [failed.value.results[0].error] * len(ITEMS)
    assert all(r.status == ImageCommitStatus.FAILED for r in failed.value.results)


async def test_a_photo_problem_is_named_before_any_request(fhir_server):
    broken = ITEMS[1].__class__(**{**ITEMS[1].__dict__, "jpeg": b"not a photo"})
    with pytest.raises(CommitFailed, match=r"photo 'Lesion B'.*not a JPEG") as failed:
        await mhd_connector(fhir_server).commit(make_context(), [ITEMS[0], broken], Progress())
    assert fhir_server.requests() == []
    assert "not a JPEG" in (failed.value.results[1].error or "")
    assert "another photo" in (failed.value.results[0].error or "")
