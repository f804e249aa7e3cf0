"""The SQL of a commit: the claim, the lease's renewal and the rows an attempt records its outcome on.

Every function takes the unit of work's `AsyncSession` (`db`) and neither commits nor raises domain errors;
the rules are `consultcam.commits.service` and `consultcam.commits.lease`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Result, Row, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from consultcam.kit.status import SessionStatus
from consultcam.models import CaptureSession, ClinicalImage, SmartGrant


async def claim_session(
    db: AsyncSession,
    session_id: str,
    *,
    commit_id: str,
    first_at: datetime,
    attempt: int,
    holder: str,
    now: datetime,
    lease_until: datetime,
) -> bool:
    """Move the session open → committing for attempt `attempt` of commit `commit_id` (first started at
    `first_at`), held by `holder` until `lease_until`, in one `UPDATE … WHERE status = 'open'`: False when
    it was no longer open (another commit claimed it first)."""
    result = await db.execute(
        update(CaptureSession)
        .where(CaptureSession.id == session_id, CaptureSession.status == SessionStatus.OPEN)
        .values(
            status=SessionStatus.COMMITTING,
            commit_id=commit_id,
            commit_error=None,
            commit_started_at=first_at,
            commit_attempt=attempt,
            commit_attempt_at=now,
            commit_holder=holder,
            commit_lease_until=lease_until,
            commit_outcome=None,
            commit_ended_at=None,
            last_activity_at=now,
            version=CaptureSession.version + 1,
        )
    )
    return _matched(result) == 1


async def renew_lease(
    db: AsyncSession, session_id: str, commit_id: str, attempt: int, lease_until: datetime
) -> bool:
    """Push the lease of attempt `attempt` of commit `commit_id` to `lease_until` if the session still names
    that attempt as running; False when it does not (the lease lapsed and someone else took over)."""
    result = await db.execute(
        update(CaptureSession)
        .where(
            CaptureSession.id == session_id,
            CaptureSession.status == SessionStatus.COMMITTING,
            CaptureSession.commit_id == commit_id,
            CaptureSession.commit_attempt == attempt,
        )
        .values(commit_lease_until=lease_until)
        .execution_options(synchronize_session=False)
    )
    return _matched(result) == 1


async def committing_sessions(db: AsyncSession) -> Sequence[Row[str, datetime, datetime | None]]:
    """(id, last_activity_at, commit_lease_until) of every session being committed, for the sweeper."""
    query = select(
        CaptureSession.id, CaptureSession.last_activity_at, CaptureSession.commit_lease_until
    ).where(CaptureSession.status == SessionStatus.COMMITTING)
    return (await db.execute(query)).all()


async def images_by_id(db: AsyncSession, image_ids: Sequence[str]) -> Sequence[ClinicalImage]:
    """The image rows with these ids (those that still exist)."""
    query = select(ClinicalImage).where(ClinicalImage.id.in_(list(image_ids)))
    return (await db.execute(query)).scalars().all()


def _matched(result: Result[Any]) -> int:
    """How many rows an UPDATE matched: the ORM session types `execute` as a plain `Result`, but a DML
    statement without RETURNING runs on a cursor, whose result counts them."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"an UPDATE gave a {type(result).__name__}, not a CursorResult")
    return result.rowcount


async def smart_grant(db: AsyncSession, session_id: str) -> SmartGrant | None:
    """The SMART launch's grant of the session (issue 13), or None when it was not opened by one."""
    return await db.get(SmartGrant, session_id)


async def store_grant_tokens(
    db: AsyncSession,
    session_id: str,
    *,
    sealed_tokens: str,
    access_expires_at: datetime | None,
    now: datetime,
) -> None:
    """Replace the grant's sealed tokens and the access token's expiry (after a refresh)."""
    await db.execute(
        update(SmartGrant)
        .where(SmartGrant.session_id == session_id)
        .values(sealed_tokens=sealed_tokens, access_expires_at=access_expires_at, updated_at=now)
    )
