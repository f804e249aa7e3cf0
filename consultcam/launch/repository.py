"""The SQL of Medtech launches: the launch contexts already used (`LaunchContextUse`). No rules here:
those are `consultcam.launch.medtech`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from consultcam.models import LaunchContextUse


async def context_used(db: AsyncSession, context_hash: str) -> bool:
    """Whether a launch context with this SHA-256 (hex) has been used and its row not yet swept."""
    query = select(LaunchContextUse.context_hash).where(LaunchContextUse.context_hash == context_hash)
    return (await db.execute(query)).first() is not None


async def add_context_use(
    db: AsyncSession, context_hash: str, used_at: datetime, expires_at: datetime
) -> None:
    """Insert the used-context row and flush it, so a second use of the same context fails here with
    IntegrityError (the primary key), at once on SQLite, once the first transaction commits on
    PostgreSQL."""
    db.add(LaunchContextUse(context_hash=context_hash, used_at=used_at, expires_at=expires_at))
    await db.flush()


async def delete_expired_context_uses(db: AsyncSession, now: datetime) -> int:
    """Delete the used-context rows whose `expires_at` has passed at `now`; returns how many."""
    deleted = await db.execute(
        delete(LaunchContextUse)
        .where(LaunchContextUse.expires_at <= now)
        .returning(LaunchContextUse.context_hash)
    )
    return len(deleted.all())
