"""The SQL of clinician sign-in sessions (`SignInSession`): typed statements, no rules.

Every function takes the unit of work's `AsyncSession` (`db`) and never commits: the rules (what counts,
what is audited, when it runs) are `consultcam.auth.signin`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Row, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from consultcam.models import SignInSession


async def add(db: AsyncSession, row: SignInSession) -> SignInSession:
    """Insert a new sign-in and flush, so `row.id` is set; returns `row`."""
    db.add(row)
    await db.flush()
    return row


async def by_token_hash(db: AsyncSession, token_hash: str) -> SignInSession | None:
    """The sign-in whose cookie hashes (SHA-256 hex) to `token_hash`, whatever its state, or None."""
    query = select(SignInSession).where(SignInSession.token_hash == token_hash)
    return (await db.execute(query)).scalar_one_or_none()


async def get(db: AsyncSession, signin_id: str) -> SignInSession | None:
    """The sign-in with row id `signin_id`, whatever its state, or None."""
    return await db.get(SignInSession, signin_id)


async def end_live(
    db: AsyncSession, token_hash: str, now: datetime, reason: str
) -> Row[str, str, str | None] | None:
    """Mark the not-yet-ended sign-in whose cookie hashes to `token_hash` as ended at `now` for `reason`, in
    one statement (two concurrent sign-outs end it once). Returns its (id, subject, name), or None when no
    live sign-in has that hash."""
    statement = (
        update(SignInSession)
        .where(SignInSession.token_hash == token_hash, SignInSession.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason)
        .returning(SignInSession.id, SignInSession.subject, SignInSession.name)
    )
    return (await db.execute(statement)).first()


async def delete_dead(db: AsyncSession, now: datetime) -> int:
    """Delete the sign-ins that ended, or whose idle or absolute expiry is at or before `now`; returns how
    many."""
    result = await db.execute(
        delete(SignInSession).where(
            or_(
                SignInSession.ended_at.is_not(None),
                SignInSession.idle_expires_at <= now,
                SignInSession.expires_at <= now,
            )
        )
    )
    return int(cast(CursorResult[Any], result).rowcount or 0)  # a DELETE's result is a cursor's
