"""The commit through the API: the export Bundle a receiving EMR would import, all or nothing, never twice."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from PIL import Image
from sqlalchemy import select, update

from consultcam.commits.connectors.base import CommitFailed, all_failed
from consultcam.models import AuditEvent, CaptureSession, utcnow
from tests.conftest import assert_error, jpeg_bytes, pair_phone, phone_photo, start_session, upload

SITE = {"system": "http://snomed.info/sct", "code": "40983000", "display": "Upper arm structure"}


def outbox(runtime: Any) -> list[Path]:
    return sorted((runtime.settings.data_dir / "outbox").glob("*.json"))


async def test_commit_writes_one_valid_bundle_and_deletes_the_temporary_copies(
    clinician, new_client, runtime
):
    session = await start_session(clinician, practitionerId="gp-7")
    phone = await pair_phone(new_client, session)
    first = (
        await upload(
            phone,
            session["id"],
            phone_photo(orientation=6),
            metadata={"bodySite": SITE, "laterality": "left", "label": "Lesion A"},
        )
    ).json()
    second = (await upload(phone, session["id"], jpeg_bytes("coffee.jpg"))).json()

    response = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "committed"
    assert [r["status"] for r in body["results"]] == ["committed", "committed"]
    [path] = outbox(runtime)
    bundle = json.loads(path.read_text())
    Bundle.model_validate(bundle)
    assert bundle["type"] == "transaction"
    media = {e["resource"]["identifier"][0]["value"]: e["resource"] for e in bundle["entry"]}
    assert set(media) == {first["id"], second["id"]}
    lesion = media[first["id"]]
    assert lesion["subject"]["reference"] == "Patient/pat-1"
    assert lesion["subject"]["identifier"]["value"] == "ZZZ0016"
    assert lesion["encounter"]["reference"] == "Encounter/enc-1"
    assert lesion["operator"]["reference"] == "Practitioner/gp-7"
    assert lesion["bodySite"]["coding"][0]["code"] == "40983000"
    assert any("Lesion A" in note["text"] for note in lesion["note"])
    jpeg = base64.b64decode(lesion["content"]["data"])
    assert lesion["content"]["size"] == len(jpeg)
    assert lesion["content"]["hash"] == base64.b64encode(hashlib.sha1(jpeg).digest()).decode()
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.height > image.width  # EXIF orientation 6 applied: the portrait photo is upright
        assert not image.getexif()
    # Temporary copies are gone; the session says committed and refuses more photos.
    assert list((runtime.store.root / "sessions").rglob("*.jpg")) == []
    after = (await clinician.get(f"/api/sessions/{session['id']}")).json()
    assert after["status"] == "committed"
    refused = await phone.post(
        f"/api/sessions/{session['id']}/uploads", json={"contentType": "image/jpeg", "sizeBytes": 10}
    )
    assert refused.status_code == 409


async def test_a_second_commit_is_refused_and_writes_nothing(clinician, new_client, runtime):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    await upload(phone, session["id"], jpeg_bytes())
    assert (
        await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    ).status_code == 200

    again = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})

    assert again.status_code == 409
    assert again.json()["error"] == "AlreadyCommitted"
    assert len(outbox(runtime)) == 1


async def test_commit_with_no_photos_says_so(clinician):
    session = await start_session(clinician)
    response = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    assert response.status_code == 422
    assert "no photos" in response.json()["detail"].lower()


async def test_commit_of_chosen_photos_skips_and_deletes_the_rest(clinician, new_client, runtime):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    keep = (await upload(phone, session["id"], jpeg_bytes())).json()
    drop = (await upload(phone, session["id"], jpeg_bytes("cat.jpg"))).json()

    response = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"imageIds": [keep["id"]]})

    assert {r["imageId"]: r["status"] for r in response.json()["results"]} == {
        keep["id"]: "committed",
        drop["id"]: "skipped",
    }
    bundle = json.loads(outbox(runtime)[0].read_text())
    assert [e["resource"]["identifier"][0]["value"] for e in bundle["entry"]] == [keep["id"]]


async def test_unknown_image_ids_are_refused(clinician, new_client):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    await upload(phone, session["id"], jpeg_bytes())
    response = await clinician.post(
        f"/api/sessions/{session['id']}/commit", json={"imageIds": ["00000000-0000-4000-8000-000000000000"]}
    )
    assert response.status_code == 422


class RefusingConnector:
    """A destination that refuses every commit, as an EMR that is down would."""

    name = "refusing"

    def __init__(self) -> None:
        self.calls = 0
        self.contexts: list[Any] = []

    async def commit(self, context, items, progress):
        self.calls += 1
        self.contexts.append(context)
        raise CommitFailed(
            "The record system is not answering; nothing was saved. Try again shortly.",
            all_failed(items, "not answering"),
        )

    async def check(self) -> None:
        return None


async def test_a_failed_commit_reopens_the_session_keeps_the_photos_and_can_be_retried(
    clinician, new_client, runtime, monkeypatch: pytest.MonkeyPatch
):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    image = (await upload(phone, session["id"], jpeg_bytes())).json()
    real = runtime.connector
    monkeypatch.setattr(runtime, "connector", RefusingConnector())

    failed = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})

    assert failed.status_code == 502
    assert "not answering" in failed.json()["detail"]
    state = (await clinician.get(f"/api/sessions/{session['id']}")).json()
    assert state["status"] == "open"
    assert state["commitError"].startswith("The record system is not answering")
    assert [i["id"] for i in state["images"]] == [image["id"]]
    assert (
        runtime.store.root / "sessions" / session["id"] / f"{image['id']}.{image['sha256'][:16]}.jpg"
    ).exists()
    last = state["lastCommit"]
    assert (last["status"], last["attempt"]) == ("failed", 1)
    assert last["detail"] == state["commitError"]

    monkeypatch.setattr(runtime, "connector", real)
    retried = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    assert retried.status_code == 200
    assert retried.json()["commitId"] == last["commitId"]  # a retry is the same commit
    assert len(outbox(runtime)) == 1
    assert outbox(runtime)[0].name.endswith(f"-{last['commitId']}.json")
    after = (await clinician.get(f"/api/sessions/{session['id']}")).json()["lastCommit"]
    assert (after["status"], after["attempt"], after["commitId"]) == ("committed", 2, last["commitId"])


async def test_each_attempt_of_a_commit_tells_the_connector_its_number(
    clinician, new_client, runtime, monkeypatch: pytest.MonkeyPatch
):
    """The same commit id and time on every attempt, and the attempt's number: the ALEX connector refuses a
    retry it cannot check for duplicates (a patient without an NHI) by it."""
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    await upload(phone, session["id"], jpeg_bytes())
    refusing = RefusingConnector()
    monkeypatch.setattr(runtime, "connector", refusing)

    for _ in range(2):
        failed = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
        assert failed.status_code == 502

    first, second = refusing.contexts
    assert (first.attempt, second.attempt) == (1, 2)
    assert (first.commit_id, first.committed_at) == (second.commit_id, second.committed_at)


async def _as_if_killed(runtime, session_id: str, lease_left: timedelta) -> None:
    """The session as a commit attempt whose process stopped leaves it: committing, its lease running out
    in `lease_left` (tests/security/test_commit_crash.py kills a real process for this)."""
    async with runtime.unit_of_work() as uow:
        await uow.session.execute(
            update(CaptureSession)
            .where(CaptureSession.id == session_id)
            .values(
                status="committing",
                commit_id=uuid.uuid4().hex,
                commit_attempt=1,
                commit_attempt_at=utcnow() - timedelta(seconds=90),
                commit_holder="elsewhere:1",
                commit_lease_until=utcnow() + lease_left,
            )
        )


async def test_a_commit_whose_lease_lapsed_is_taken_over_by_the_next_commit(clinician, new_client, runtime):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    await upload(phone, session["id"], jpeg_bytes())
    await _as_if_killed(runtime, session["id"], timedelta(seconds=-1))

    response = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})

    assert response.status_code == 200, response.text
    async with runtime.sessionmaker() as db:
        events = (await db.execute(select(AuditEvent).order_by(AuditEvent.id))).scalars().all()
    commits = [e for e in events if e.action.startswith("commit.")]
    assert [e.action for e in commits] == ["commit.interrupted", "commit.started", "commit.succeeded"]
    interrupted = commits[0]
    assert (interrupted.actor_type, interrupted.actor_id) == ("system", "next-commit")
    assert interrupted.detail["holder"] == "elsewhere:1"
    assert commits[1].detail["commit_id"] == interrupted.detail["commit_id"]  # the same commit, attempt 2
    assert commits[1].detail["attempt"] == 2


async def test_a_commit_holding_its_lease_is_not_taken_over(clinician, new_client, runtime):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    await upload(phone, session["id"], jpeg_bytes())
    await _as_if_killed(runtime, session["id"], timedelta(seconds=30))

    response = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})

    body = assert_error(response, 409, "CommitInProgress", "already running", "started 90 seconds ago")
    assert "last heard from" in body["detail"]
    state = (await clinician.get(f"/api/sessions/{session['id']}")).json()
    assert (state["status"], state["lastCommit"]["status"]) == ("committing", "running")
    assert outbox(runtime) == []


async def test_commit_is_audited_without_secrets(clinician, new_client, runtime):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    await upload(phone, session["id"], jpeg_bytes())
    await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})

    async with runtime.sessionmaker() as db:
        events = (await db.execute(select(AuditEvent).order_by(AuditEvent.id))).scalars().all()
        stored = await db.get(CaptureSession, session["id"])
    actions = [e.action for e in events]
    for expected in (
        "session.created",
        "pairing.issued",
        "phone.paired",
        "image.upload_issued",
        "image.uploaded",
        "commit.started",
        "commit.succeeded",
    ):
        assert expected in actions
    assert {e.actor_type for e in events} == {"clinician", "phone"}
    dump = json.dumps([[e.actor_id, e.action, e.detail] for e in events])
    token = session["pairing"]["url"].rsplit("/", 1)[1]
    assert token not in dump
    assert phone.cookies["consultcam_phone"] not in dump
    assert stored is not None
    assert stored.status == "committed"
