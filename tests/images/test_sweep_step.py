"""The images step of the sweeper on its own: upload slots never registered are deleted, row and object,
once their URL has been expired for UPLOAD_GRACE; nothing else is."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from consultcam.images.service import UPLOAD_GRACE, sweep_unregistered_uploads
from consultcam.models import AuditEvent, ClinicalImage, utcnow
from tests.conftest import jpeg_bytes, pair_phone, start_session, upload


async def _presigned_put(clinician, session_id: str) -> str:
    """Ask for an upload slot and send its bytes without registering them; returns the image id."""
    request = {"contentType": "image/jpeg", "sizeBytes": len(jpeg_bytes())}
    presign = (await clinician.post(f"/api/sessions/{session_id}/uploads", json=request)).json()
    put = await clinician.put(presign["uploadUrl"], content=jpeg_bytes(), headers=presign["headers"])
    assert put.status_code in (200, 201, 204)
    return str(presign["imageId"])


async def _expire_upload(runtime, image_id: str, ago: timedelta) -> None:
    async with runtime.unit_of_work() as uow:
        await uow.session.execute(
            update(ClinicalImage).where(ClinicalImage.id == image_id).values(upload_expires_at=utcnow() - ago)
        )


async def test_only_slots_expired_for_longer_than_the_grace_are_deleted(clinician, new_client, runtime):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    await upload(phone, session["id"], jpeg_bytes())  # registered: never swept
    abandoned = await _presigned_put(clinician, session["id"])
    recent = await _presigned_put(clinician, session["id"])
    await _expire_upload(runtime, abandoned, UPLOAD_GRACE + timedelta(minutes=1))
    await _expire_upload(runtime, recent, UPLOAD_GRACE - timedelta(minutes=1))
    async with runtime.unit_of_work(writes=False) as uow:
        abandoned_key = (await uow.session.get(ClinicalImage, abandoned)).upload_key
        recent_key = (await uow.session.get(ClinicalImage, recent)).upload_key
    assert await runtime.store.head(abandoned_key) is not None

    deleted = await sweep_unregistered_uploads(runtime.unit_of_work, runtime.store, utcnow())

    assert deleted == 1
    assert await runtime.store.head(abandoned_key) is None
    assert await runtime.store.head(recent_key) is not None
    async with runtime.sessionmaker() as db:
        left = set((await db.execute(select(ClinicalImage.id, ClinicalImage.status))).all())
        actions = (await db.execute(select(AuditEvent.action, AuditEvent.image_id))).all()
    assert abandoned not in {image_id for image_id, _ in left}
    assert (recent, "pending") in left
    assert sum(status == "ready" for _, status in left) == 1
    assert ("upload.abandoned", abandoned) in actions
    # A second sweep finds nothing more to do.
    assert await sweep_unregistered_uploads(runtime.unit_of_work, runtime.store, utcnow()) == 0
