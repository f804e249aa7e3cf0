"""The SQL of SMART launches: pending authorization requests (`AuthorizationRequest`, purpose "smart") and
the grants kept for sessions (`SmartGrant`). No rules here: those are `consultcam.launch.smart`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from consultcam.models import AuthorizationRequest, SmartGrant

PURPOSE = "smart"


async def add_request(
    db: AsyncSession, state_hash: str, issuer: str, sealed: str, now: datetime, expires_at: datetime
) -> None:
    """Insert a pending SMART authorization request."""
    db.add(
        AuthorizationRequest(
            state_hash=state_hash,
            purpose=PURPOSE,
            issuer=issuer,
            sealed=sealed,
            created_at=now,
            expires_at=expires_at,
        )
    )
    await db.flush()


async def claim_request(db: AsyncSession, state_hash: str, now: datetime) -> tuple[str, str] | None:
    """Mark the pending request with this state hash used, if it is unused and unexpired: one UPDATE …
    WHERE used_at IS NULL, so of two callbacks racing with one state only one gets it. Returns its
    (issuer, sealed), or None."""
    claimed = await db.execute(
        update(AuthorizationRequest)
        .where(
            AuthorizationRequest.state_hash == state_hash,
            AuthorizationRequest.purpose == PURPOSE,
            AuthorizationRequest.used_at.is_(None),
            AuthorizationRequest.expires_at > now,
        )
        .values(used_at=now)
        .returning(AuthorizationRequest.issuer, AuthorizationRequest.sealed)
    )
    row = claimed.first()
    return (str(row[0]), str(row[1])) if row is not None else None


async def request_of(db: AsyncSession, state_hash: str) -> AuthorizationRequest | None:
    """The SMART request with this state hash, used or not (to say why a claim failed)."""
    query = select(AuthorizationRequest).where(
        AuthorizationRequest.state_hash == state_hash, AuthorizationRequest.purpose == PURPOSE
    )
    return (await db.execute(query)).scalars().first()


async def grant_of(db: AsyncSession, session_id: str) -> SmartGrant | None:
    """The SMART grant kept for a capture session, if any."""
    return await db.get(SmartGrant, session_id)


async def put_grant(db: AsyncSession, grant: SmartGrant) -> SmartGrant:
    """Store `grant`, replacing the session's earlier one (a new launch for the same session)."""
    merged = await db.merge(grant)
    await db.flush()
    return merged
