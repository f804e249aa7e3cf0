"""The sweeper: nothing outlives its purpose (issue 2 step 7)."""

from __future__ import annotations

import os
import time
from datetime import timedelta

from sqlalchemy import select, update

from consultcam.models import AuditEvent, CaptureSession, ClinicalImage, utcnow
from consultcam.retention.sweeper import sweep
from consultcam.sessions.sweep import ENDED_GRACE
from consultcam.storage.keys import upload_key
from tests.conftest import jpeg_bytes, pair_phone, start_session, upload


async def _age_session(runtime, session_id: str, **delta: float) -> None:
    async with runtime.unit_of_work() as uow:
        await uow.session.execute(
            update(CaptureSession)
            .where(CaptureSession.id == session_id)
            .values(last_activity_at=utcnow() - timedelta(**delta))
        )


def _files(runtime) -> list[str]:
    return [p.name for p in (runtime.store.root / "sessions").rglob("*") if p.is_file()]


async def test_an_idle_session_expires_with_its_photos_and_the_phone_is_signed_out(
    clinician, new_client, runtime
):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    await upload(phone, session["id"], jpeg_bytes())
    assert _files(runtime)
    await _age_session(runtime, session["id"], minutes=runtime.settings.session_idle_minutes + 1)

    report = await sweep(runtime.unit_of_work, runtime)

    assert report.expired_sessions == 1
    assert _files(runtime) == []
    state = (await clinician.get(f"/api/sessions/{session['id']}")).json()
    assert state["status"] == "expired"
    assert state["images"] == []
    assert (await phone.get(f"/api/sessions/{session['id']}")).status_code == 401
    async with runtime.sessionmaker() as db:
        actions = (await db.execute(select(AuditEvent.action, AuditEvent.actor_type))).all()
    assert ("session.expired", "system") in actions


async def test_an_active_session_is_left_alone(clinician, new_client, runtime):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    await upload(phone, session["id"], jpeg_bytes())
    report = await sweep(runtime.unit_of_work, runtime)
    assert report.expired_sessions == report.deleted_sessions == 0
    assert len(_files(runtime)) == 2  # the photo and its thumbnail


async def test_retention_is_a_hard_cap_even_for_a_busy_session(clinician, runtime):
    session = await start_session(clinician)
    later = utcnow() + timedelta(hours=runtime.settings.retention_hours, minutes=1)
    assert (await sweep(runtime.unit_of_work, runtime, now=later)).expired_sessions == 1
    assert (await sweep(runtime.unit_of_work, runtime, now=later)).deleted_sessions == 1
    assert (await clinician.get(f"/api/sessions/{session['id']}")).status_code == 404


async def test_ended_sessions_are_deleted_after_the_grace_period(clinician, new_client, runtime):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    await upload(phone, session["id"], jpeg_bytes())
    await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    assert (
        await sweep(runtime.unit_of_work, runtime)
    ).deleted_sessions == 0  # the pages can still show "committed"
    await _age_session(runtime, session["id"], seconds=ENDED_GRACE.total_seconds() + 1)
    assert (await sweep(runtime.unit_of_work, runtime)).deleted_sessions == 1
    async with runtime.sessionmaker() as db:
        assert await db.get(CaptureSession, session["id"]) is None
        assert (await db.execute(select(ClinicalImage))).scalars().all() == []


async def test_uploads_that_were_never_registered_are_deleted(clinician, runtime):
    session = await start_session(clinician)
    request = {"contentType": "image/jpeg", "sizeBytes": len(jpeg_bytes())}
    presign = (await clinician.post(f"/api/sessions/{session['id']}/uploads", json=request)).json()
    await clinician.put(presign["uploadUrl"], content=jpeg_bytes(), headers=presign["headers"])
    assert len(_files(runtime)) == 1
    async with runtime.unit_of_work() as uow:
        await uow.session.execute(
            update(ClinicalImage).values(upload_expires_at=utcnow() - timedelta(hours=1))
        )

    report = await sweep(runtime.unit_of_work, runtime)

    assert report.abandoned_uploads == 1
    assert _files(runtime) == []
    # The slot no longer counts against the session's limit.
    state = (await clinician.get(f"/api/sessions/{session['id']}")).json()
    assert state["imageCount"] == 0


async def test_objects_without_a_session_are_deleted(runtime):
    orphan = runtime.store.root / "sessions" / "00000000-dead-4000-8000-000000000000" / "x.jpg"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left behind by a crash")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    assert (await sweep(runtime.unit_of_work, runtime)).orphan_objects == 1
    assert not orphan.exists()


async def test_an_interrupted_commit_reopens_the_session(clinician, new_client, runtime):
    session = await start_session(clinician)
    async with runtime.unit_of_work() as uow:
        await uow.session.execute(
            update(CaptureSession).values(status="committing", last_activity_at=utcnow() - timedelta(hours=1))
        )
    assert (await sweep(runtime.unit_of_work, runtime)).reopened_commits == 1
    state = (await clinician.get(f"/api/sessions/{session['id']}")).json()
    assert state["status"] == "open"
    assert "interrupted" in state["commitError"]


async def test_an_upload_replayed_after_registration_is_cleaned_up(clinician, runtime):
    """A presigned S3 PUT stays usable until it expires; bytes sent again after registration go nowhere.
    (The folder store's URL stops working at registration: the leftover is written as S3 would keep it.)"""
    session = await start_session(clinician)
    data = jpeg_bytes()
    presign = (
        await clinician.post(
            f"/api/sessions/{session['id']}/uploads",
            json={"contentType": "image/jpeg", "sizeBytes": len(data)},
        )
    ).json()
    await clinician.put(presign["uploadUrl"], content=data, headers=presign["headers"])
    await clinician.post(f"/api/sessions/{session['id']}/images", json={"imageId": presign["imageId"]})
    replayed = await clinician.put(presign["uploadUrl"], content=data, headers=presign["headers"])
    assert replayed.status_code == 409
    await runtime.store.put(upload_key(session["id"], presign["imageId"]), data, content_type="image/jpeg")
    leftover = runtime.store.root / "sessions" / session["id"] / "uploads" / presign["imageId"]
    assert leftover.exists()
    old = time.time() - 3600
    os.utime(leftover, (old, old))

    assert (await sweep(runtime.unit_of_work, runtime)).orphan_objects == 1
    assert not leftover.exists()
    assert len(_files(runtime)) == 2  # the registered photo and its thumbnail stay
