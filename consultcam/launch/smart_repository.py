"""The SQL of SMART launches: the grants kept for sessions (`SmartGrant`). No rules here: those are
`consultcam.launch.smart` and `consultcam.launch.smart_accept` (which stores the grant); pending
authorization requests are `consultcam.auth.authorization_requests`'s, shared with the OIDC sign-in."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from consultcam.models import SmartGrant


async def grant_of(db: AsyncSession, session_id: str) -> SmartGrant | None:
    """The SMART grant kept for a capture session, if any."""
    return await db.get(SmartGrant, session_id)


async def put_grant(db: AsyncSession, grant: SmartGrant) -> SmartGrant:
    """Store `grant`, replacing the session's earlier one (a new launch for the same session)."""
    merged = await db.merge(grant)
    await db.flush()
    return merged
