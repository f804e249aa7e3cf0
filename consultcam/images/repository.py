"""All SQL of clinical images (`ClinicalImage` rows), as typed statements.

Every function runs inside its caller's unit of work and never commits. Rules (who may see or change an
image, what counts against MAX_IMAGES) are the services' (`consultcam.images.service`); these functions only
read and write rows. Row locks follow consultcam.db's order: the capture session first, then its images.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, or_, select

from consultcam.db import UnitOfWork
from consultcam.kit.status import AnalysisStatus, ImageStatus
from consultcam.models import ClinicalImage


async def find(uow: UnitOfWork, image_id: str, *, for_update: bool = False) -> ClinicalImage | None:
    """The image with this id, whatever its session or status, or None. `for_update`: lock the row
    (`FOR KEY SHARE` on PostgreSQL, a no-op on SQLite) and re-read it, so what a concurrent transaction
    committed meanwhile is seen."""
    return await uow.session.get(
        ClinicalImage,
        image_id,
        with_for_update={"key_share": True} if for_update else None,
        populate_existing=for_update,
    )


async def add(uow: UnitOfWork, image: ClinicalImage) -> None:
    """Insert `image` and flush, so its generated id is set."""
    uow.session.add(image)
    await uow.session.flush()


async def delete(uow: UnitOfWork, image: ClinicalImage) -> None:
    """Delete the image's row (its objects are the caller's to delete, after the commit)."""
    await uow.session.delete(image)


async def delete_if_pending(uow: UnitOfWork, image_id: str) -> tuple[str, str] | None:
    """Delete the image's row only if it is still pending (one conditional DELETE, so a registration that
    commits meanwhile wins: PostgreSQL re-checks the condition on the row it waited for). Returns its
    (session id, upload key), or None when it was registered or deleted already."""
    result = await uow.session.execute(
        sql_delete(ClinicalImage)
        .where(ClinicalImage.id == image_id, ClinicalImage.status == ImageStatus.PENDING)
        .returning(ClinicalImage.session_id, ClinicalImage.upload_key)
    )
    row = result.one_or_none()
    return (row.session_id, row.upload_key) if row is not None else None


async def in_session(
    uow: UnitOfWork, session_id: str, statuses: Collection[ImageStatus]
) -> Sequence[ClinicalImage]:
    """The session's images in one of `statuses`, oldest first (the gallery's order)."""
    result = await uow.session.execute(
        select(ClinicalImage)
        .where(ClinicalImage.session_id == session_id, ClinicalImage.status.in_(statuses))
        .order_by(ClinicalImage.created_at)
    )
    return result.scalars().all()


async def count_slots_in_use(
    uow: UnitOfWork, session_id: str, now: datetime, *, excluding: str | None = None
) -> int:
    """How many of the session's images are `ready`, or `pending` with an upload URL valid at `now`
    (`excluding` one image id)."""
    query = (
        select(func.count())
        .select_from(ClinicalImage)
        .where(
            ClinicalImage.session_id == session_id,
            or_(
                ClinicalImage.status == ImageStatus.READY,
                (ClinicalImage.status == ImageStatus.PENDING) & (ClinicalImage.upload_expires_at > now),
            ),
        )
    )
    if excluding is not None:
        query = query.where(ClinicalImage.id != excluding)
    return int((await uow.session.execute(query)).scalar_one())


async def pending_upload_expiries(
    uow: UnitOfWork, session_id: str, uploader: str, now: datetime
) -> list[datetime]:
    """When each of `uploader`'s `pending` images in the session whose upload URL is valid at `now`
    expires."""
    result = await uow.session.execute(
        select(ClinicalImage.upload_expires_at).where(
            ClinicalImage.session_id == session_id,
            ClinicalImage.uploaded_by == uploader,
            ClinicalImage.status == ImageStatus.PENDING,
            ClinicalImage.upload_expires_at > now,
        )
    )
    return list(result.scalars().all())


async def abandoned_upload_ids(uow: UnitOfWork, expired_before: datetime) -> list[str]:
    """Ids of `pending` images (upload slots never registered) whose upload URL expired before
    `expired_before`."""
    result = await uow.session.execute(
        select(ClinicalImage.id).where(
            ClinicalImage.status == ImageStatus.PENDING,
            ClinicalImage.upload_expires_at < expired_before,
        )
    )
    return list(result.scalars().all())


async def object_keys_in_sessions(
    uow: UnitOfWork, session_ids: Collection[str]
) -> list[tuple[ImageStatus, str, str | None, str | None]]:
    """(status, upload key, object key, thumbnail key) of every image of these sessions: what the store
    may hold for them (the orphan sweep keeps these and deletes the rest)."""
    result = await uow.session.execute(
        select(
            ClinicalImage.status,
            ClinicalImage.upload_key,
            ClinicalImage.object_key,
            ClinicalImage.thumbnail_key,
        ).where(ClinicalImage.session_id.in_(session_ids))
    )
    return [(ImageStatus(status), upload, full, thumb) for status, upload, full, thumb in result]


async def analyses_in_progress(uow: UnitOfWork, registered_before: datetime) -> list[tuple[str, str]]:
    """(session id, image id) of `ready` images registered before `registered_before` whose AI description
    is still `pending` or `running` (`ClinicalImage.analysis["status"]`)."""
    result = await uow.session.execute(
        select(ClinicalImage.session_id, ClinicalImage.id).where(
            ClinicalImage.status == ImageStatus.READY,
            ClinicalImage.analysis["status"]
            .as_string()
            .in_((AnalysisStatus.PENDING, AnalysisStatus.RUNNING)),
            ClinicalImage.registered_at < registered_before,
        )
    )
    return [(session_id, image_id) for session_id, image_id in result]
