"""The object store's sweep step: objects nothing refers to. (Uploads never registered are the images
domain's step, `consultcam.images.service.sweep_unregistered_uploads`.)
"""

from __future__ import annotations

from datetime import datetime

from consultcam.db import Transactions
from consultcam.images import repository as images
from consultcam.images.service import UPLOAD_GRACE
from consultcam.kit.status import ImageStatus
from consultcam.sessions import repository as sessions
from consultcam.storage.store import ObjectStore


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
        rows = await images.object_keys_in_sessions(uow, known)
    referenced = {upload for status, upload, _, _ in rows if status == ImageStatus.PENDING}
    referenced |= {key for _, _, *keys in rows for key in keys if key}
    stale = [obj.key for obj in objects if obj.key.split("/")[1] not in known or obj.key not in referenced]
    if stale:
        await store.delete(*stale)
    return len(stale)
