"""The object store's sweep steps: uploads never registered, and objects nothing refers to.

The images domain's SQL lives here for now (part "images" of issue 11 gives the images domain its
repository; these two queries move there when it does).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from consultcam import audit
from consultcam.db import Transactions
from consultcam.images.service import UPLOAD_GRACE
from consultcam.kit.status import ImageStatus
from consultcam.models import ClinicalImage
from consultcam.sessions import repository as sessions
from consultcam.storage.store import ObjectStore


async def delete_abandoned_uploads(tx: Transactions, store: ObjectStore, now: datetime) -> int:
    """Delete every upload slot still pending UPLOAD_GRACE after its presigned URL expired, with its
    object (the phone never registered it); audit `upload.abandoned`. Returns how many. Each in its own
    transaction of `tx`, re-checked there (a registration may have come since the list was read)."""
    async with tx(writes=False) as uow:
        abandoned = await _abandoned_upload_ids(uow.session, now)
    deleted = 0
    for image_id in abandoned:
        async with tx() as uow:
            image = await uow.session.get(ClinicalImage, image_id)
            if image is not None and image.status == ImageStatus.PENDING:
                await store.delete(image.upload_key)
                await uow.session.delete(image)
                audit.record(
                    uow.session, None, "upload.abandoned", session_id=image.session_id, image_id=image_id
                )
                deleted += 1
    return deleted


async def delete_orphan_objects(tx: Transactions, store: ObjectStore, now: datetime) -> int:
    """Delete objects nothing refers to; returns how many: everything under `sessions/<id>/` whose
    session is gone (a crash between a store write and a database commit), uploads
    `sessions/<id>/uploads/<imageId>` whose slot is no longer pending (a presigned PUT stays usable until
    it expires, even after registration or deletion: on S3 it cannot be revoked, so a PUT after
    registration lands here), and photos a registration wrote but did not record (it lost to a concurrent
    one, or crashed). Objects younger than UPLOAD_GRACE are left alone: they may be in flight."""
    objects = [obj for obj in await store.list("sessions/") if obj.modified_at < now - UPLOAD_GRACE]
    if not objects:
        return 0
    session_ids = {obj.key.split("/")[1] for obj in objects}
    async with tx(writes=False) as uow:
        known = await sessions.existing_session_ids(uow.session, session_ids)
        rows = await _image_keys(uow.session, known)
    referenced = {upload for status, upload, _, _ in rows if status == ImageStatus.PENDING}
    referenced |= {key for _, _, *keys in rows for key in keys if key}
    stale = [obj.key for obj in objects if obj.key.split("/")[1] not in known or obj.key not in referenced]
    if stale:
        await store.delete(*stale)
    return len(stale)


async def _abandoned_upload_ids(db: AsyncSession, now: datetime) -> Sequence[str]:
    """Ids of the pending images whose upload URL expired more than UPLOAD_GRACE before `now`."""
    query = select(ClinicalImage.id).where(
        ClinicalImage.status == ImageStatus.PENDING, ClinicalImage.upload_expires_at < now - UPLOAD_GRACE
    )
    return (await db.execute(query)).scalars().all()


async def _image_keys(
    db: AsyncSession, session_ids: set[str]
) -> Sequence[Row[str, str, str | None, str | None]]:
    """(status, upload_key, object_key, thumbnail_key) of every image of these sessions."""
    query = select(
        ClinicalImage.status, ClinicalImage.upload_key, ClinicalImage.object_key, ClinicalImage.thumbnail_key
    ).where(ClinicalImage.session_id.in_(session_ids))
    return (await db.execute(query)).all()
