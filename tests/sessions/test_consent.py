"""Consent before the first photo (issue 5): recorded with the session by the phone or the clinician, asked
for again by no upload once given, carried into every committed resource's note."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select

from consultcam.commits.connectors.alex import ENV_NAMES, AlexConnector
from consultcam.commits.connectors.base import CommitItem
from consultcam.commits.dicom import build_instance
from consultcam.commits.fhir_media import build_media
from consultcam.kit.http import RetryPolicy
from consultcam.kit.oauth2 import ClientCredentials
from consultcam.models import AuditEvent, ClinicalImage
from tests.commits.factories import commit_context
from tests.commits.fhir_server import CLIENT_ID, CLIENT_SECRET, FhirTestServer
from tests.conftest import (
    assert_error,
    jpeg_bytes,
    pair_phone,
    record_consent,
    start_session,
    token_of,
    upload,
)

PRESIGN = {"contentType": "image/jpeg", "sizeBytes": 1000}
GUARDIAN_TEACHING = {"scope": "teaching", "givenBy": "guardian"}
TEACHING_NOTE = "Consent to clinical photography given by the patient's guardian; agreed use: teaching."


async def events_of(runtime: Any, session_id: str, type_: str) -> list[dict[str, Any]]:
    """The data of the session's events of one type, as the desktop's stream would deliver them."""
    return [e.data for e in await runtime.bus.read(session_id, None, timeout=0) if e.type == type_]


async def audit_of(runtime: Any, action: str) -> list[AuditEvent]:
    async with runtime.sessionmaker() as db:
        rows = await db.execute(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
        return list(rows.scalars())


async def image_rows(runtime: Any, session_id: str) -> int:
    async with runtime.sessionmaker() as db:
        query = select(func.count()).select_from(ClinicalImage).where(ClinicalImage.session_id == session_id)
        return int((await db.execute(query)).scalar_one())


# --- asked before the first photo -----------------------------------------------------------------------


async def test_a_new_session_asks_for_consent_and_says_what_the_practice_requires(clinician, new_client):
    session = await start_session(clinician, consent=False)
    assert session["consent"] is None
    assert session["consentRequired"] is True
    assert session["phoneCanCommit"] is False
    assert session["requiredMetadata"] == []  # the tests' settings; the product default is in test_settings

    phone = new_client()
    paired = (await phone.post("/api/pair", json={"token": token_of(session["pairing"]["url"])})).json()
    assert paired["session"]["consent"] is None
    assert paired["session"]["consentRequired"] is True
    settings = paired["captureSettings"]
    assert (settings["consentRequired"], settings["requiredMetadata"], settings["phoneCanCommit"]) == (
        True,
        [],
        False,
    )


async def test_no_photo_before_consent_from_the_phone_or_the_desktop(clinician, new_client, runtime):
    session = await start_session(clinician, consent=False)
    phone = await pair_phone(new_client, session, consent=False)
    for client in (phone, clinician):
        refused = await client.post(f"/api/sessions/{session['id']}/uploads", json=PRESIGN)
        assert_error(refused, 409, "ConsentRequired", "consent", "record")
    assert await image_rows(runtime, session["id"]) == 0  # no upload slot was reserved

    recorded = await record_consent(phone, session["id"])
    assert recorded.status_code == 200, recorded.text
    assert (await upload(phone, session["id"], jpeg_bytes())).status_code == 201
    assert (await upload(clinician, session["id"], jpeg_bytes("cat.jpg"))).status_code == 201


async def test_the_phone_records_consent_and_the_desktop_hears_of_it(clinician, new_client, runtime):
    session = await start_session(clinician, consent=False)
    phone = await pair_phone(new_client, session, consent=False)
    before = datetime.now(UTC)

    response = await record_consent(phone, session["id"], GUARDIAN_TEACHING)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["id"] == session["id"]
    assert body["images"] is None  # the session without its images
    consent = body["consent"]
    assert {k: consent[k] for k in ("scope", "givenBy", "recordedBy")} == {
        "scope": "teaching",
        "givenBy": "guardian",
        "recordedBy": "phone",
    }
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(consent["recordedAt"]) <= datetime.now(UTC)
    # The desktop sees it on the session and on its event stream.
    assert (await clinician.get(f"/api/sessions/{session['id']}")).json()["consent"] == consent
    assert await events_of(runtime, session["id"], "consent.recorded") == [{"consent": consent}]
    [row] = await audit_of(runtime, "consent.recorded")
    assert (row.actor_type, row.session_id) == ("phone", session["id"])
    assert row.detail == {"scope": "teaching", "given_by": "guardian"}


async def test_recording_again_replaces_the_consent(clinician, new_client, runtime):
    session = await start_session(clinician)  # the clinician recorded clinical, by the patient
    assert session["consent"]["recordedBy"] == "clinician"
    assert (session["consent"]["scope"], session["consent"]["givenBy"]) == ("clinical", "patient")

    again = await record_consent(clinician, session["id"], {"scope": "publication", "givenBy": "patient"})

    assert again.status_code == 200, again.text
    assert again.json()["consent"]["scope"] == "publication"
    assert (await clinician.get(f"/api/sessions/{session['id']}")).json()["consent"]["scope"] == "publication"
    assert [e["consent"]["scope"] for e in await events_of(runtime, session["id"], "consent.recorded")] == [
        "clinical",
        "publication",
    ]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param({"scope": "marketing", "givenBy": "patient"}, ["scope"], id="unknown-scope"),
        pytest.param({"scope": "clinical", "givenBy": "neighbour"}, ["givenBy"], id="unknown-giver"),
        pytest.param({"scope": "Clinical", "givenBy": "patient"}, ["scope"], id="scope-case"),
        pytest.param({"givenBy": "patient"}, ["scope"], id="no-scope"),
        pytest.param({"scope": "clinical"}, ["givenBy"], id="no-giver"),
        pytest.param({"scope": None, "givenBy": "patient"}, ["scope"], id="null-scope"),
        pytest.param({"scope": "clinical", "givenBy": "patient", "recordedBy": "phone"}, [], id="extra"),
        pytest.param([], [], id="not-an-object"),
    ],
)
async def test_bad_consent_is_422_and_records_nothing(clinician, runtime, body: Any, words: list[str]):
    session = await start_session(clinician, consent=False)
    response = await clinician.put(f"/api/sessions/{session['id']}/consent", json=body)
    assert_error(response, 422, "InvalidRequest", *words)
    assert (await clinician.get(f"/api/sessions/{session['id']}")).json()["consent"] is None
    assert await events_of(runtime, session["id"], "consent.recorded") == []


async def test_consent_on_a_closed_session_is_409(clinician, new_client):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    assert (await upload(phone, session["id"], jpeg_bytes())).status_code == 201
    assert (
        await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    ).status_code == 200
    assert_error(await record_consent(clinician, session["id"]), 409, "SessionClosed", "committed")

    cancelled = await start_session(clinician, "enc-2")
    assert (await clinician.delete(f"/api/sessions/{cancelled['id']}")).status_code == 204
    assert_error(await record_consent(clinician, cancelled["id"]), 409, "SessionClosed", "cancelled")


async def test_only_the_clinician_and_the_sessions_own_phone_record_consent(clinician, new_client, anonymous):
    mine = await start_session(clinician, "enc-a", consent=False)
    other = await start_session(clinician, "enc-b", consent=False)
    phone = await pair_phone(new_client, mine, consent=False)
    assert_error(await record_consent(phone, other["id"]), 404, "SessionNotFound")
    assert_error(await record_consent(anonymous, mine["id"]), 401)
    assert_error(await record_consent(clinician, "no-such-session"), 404, "SessionNotFound")
    assert (await clinician.get(f"/api/sessions/{other['id']}")).json()["consent"] is None


@pytest.mark.parametrize("settings_overrides", [{"consent_required": False}])
async def test_with_consent_off_photos_need_none(clinician, new_client):
    session = await start_session(clinician, consent=False)
    assert (session["consentRequired"], session["consent"]) == (False, None)
    phone = new_client()
    paired = (await phone.post("/api/pair", json={"token": token_of(session["pairing"]["url"])})).json()
    assert paired["captureSettings"]["consentRequired"] is False
    assert (await upload(phone, session["id"], jpeg_bytes())).status_code == 201
    # Consent may still be recorded, and then travels with the photos as usual.
    assert (await record_consent(phone, session["id"])).json()["consent"]["recordedBy"] == "phone"


# --- carried into the record ------------------------------------------------------------------------------


async def test_the_committed_resources_carry_the_consent_in_their_note(
    clinician: httpx.AsyncClient, new_client: Any, runtime: Any
):
    session = await start_session(clinician, consent=False)
    phone = await pair_phone(new_client, session, consent=False)
    assert (await record_consent(phone, session["id"], GUARDIAN_TEACHING)).status_code == 200
    assert (
        await upload(phone, session["id"], jpeg_bytes(), metadata={"label": "Lesion A"})
    ).status_code == 201
    assert (await upload(phone, session["id"], jpeg_bytes("cat.jpg"))).status_code == 201

    committed = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})

    assert committed.status_code == 200, committed.text
    [path] = sorted(Path(runtime.settings.data_dir / "outbox").glob("*.json"))
    bundle = json.loads(path.read_text())
    notes = [[n["text"] for n in e["resource"].get("note", [])] for e in bundle["entry"]]
    assert sorted(notes) == sorted([["Lesion A", TEACHING_NOTE], [TEACHING_NOTE]])


def stored_consent() -> dict[str, Any]:
    """The consent exactly as the session stores it: the API's fields and when and by whom it was taken."""
    return {**GUARDIAN_TEACHING, "recordedAt": "2025-01-15T01:02:03+00:00", "recordedBy": "phone"}


def item(**metadata: Any) -> CommitItem:
    data = jpeg_bytes("cat.jpg")
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    return CommitItem(
        image_id=str(uuid.uuid4()),
        jpeg=data,
        width=width,
        height=height,
        captured_at=None,
        created_at=datetime(2025, 1, 15, 1, 0, tzinfo=UTC),
        metadata=metadata,
    )


def test_fhir_media_and_dicom_carry_the_stored_consent() -> None:
    """The stored dict has more keys than {scope, givenBy}: the connectors take it as it is. Export and
    FHIR build their Media with fhir_media; DICOMweb puts the sentence in Image Comments."""
    context = commit_context(consent=stored_consent())
    media = build_media(context, item(label="Lesion A"))
    assert [n["text"] for n in media["note"]] == ["Lesion A", TEACHING_NOTE]
    dataset = build_instance(context, item(label="Lesion A"))
    assert dataset.ImageComments == f"Lesion A\n{TEACHING_NOTE}"
    assert "ImageComments" not in build_instance(commit_context(), item())  # no consent, no label


async def test_medtech_alex_keeps_the_consent_after_its_site_note(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    with FhirTestServer() as server:
        server.state.require_token = True
        oauth = ClientCredentials(server.token_url, CLIENT_ID, CLIENT_SECRET, scope="patient/Media.write")
        alex = AlexConnector(
            server.base_url,
            oauth=oauth,
            resource="Media",
            retry=RetryPolicy(attempts=2, wait_initial=0.01, wait_max=0.05),
        )
        context = commit_context(consent=stored_consent(), facility_id="F2N060-D")

        async def no_progress(done: int, total: int) -> None:
            pass

        await alex.commit(context, [item(label="Lesion A", laterality="left")], no_progress)
        [media] = server.resources("Media")
    assert [n["text"] for n in media["note"]] == ["Lesion A — Laterality: left (7771000)", TEACHING_NOTE]
