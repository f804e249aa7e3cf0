"""The SQL of capture sessions, pairing tokens and phone credentials: typed statements, no rules.

Every function takes the unit of work's `AsyncSession` (`db`) and neither commits nor raises domain errors:
the rules (what is allowed, which error to give) are `consultcam.sessions.service` and `.pairing`.

Locks (consultcam.db): a writing transaction that decides on a session's state locks the capture session
row first (`locked`), then touches its tokens, phones and images.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Row, Select, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from consultcam.kit.status import ImageStatus, SessionStatus
from consultcam.models import CaptureSession, ClinicalImage, PairingToken, PhoneCredential

_Select = TypeVar("_Select", bound=Select[Any])

#: Images that count against MAX_IMAGES and show in galleries (pending ones are uploads in flight).
LIVE_IMAGE_STATUSES = (ImageStatus.PENDING, ImageStatus.READY)


def locked(query: _Select) -> _Select:
    """`query` taking the capture session rows' lock and refreshing already-loaded objects with the
    locked version. FOR NO KEY UPDATE, not FOR UPDATE: it serialises writers of the session but lets other
    transactions insert rows that reference it (foreign-key checks take KEY SHARE). SQLite has no row
    locks and renders nothing: its writing transactions already hold the database's write lock."""
    return query.with_for_update(key_share=True).execution_options(populate_existing=True)


# --- capture sessions ---------------------------------------------------------------------------------


async def find_session(
    db: AsyncSession, session_id: str, *, with_images: bool = False, for_update: bool = False
) -> CaptureSession | None:
    """The session `session_id` or None; `with_images` loads its images, `for_update` locks its row."""
    query = select(CaptureSession).where(CaptureSession.id == session_id)
    if with_images:
        query = query.options(selectinload(CaptureSession.images))
    if for_update:
        query = locked(query)
    return (await db.execute(query)).scalar_one_or_none()


async def session_owner(
    db: AsyncSession, session_id: str
) -> tuple[str | None, str | None, str | None] | None:
    """(practitioner_id, facility_id, launch_issuer) of session `session_id`, or None when there is no such
    session: who may reach it (`consultcam.sessions.access`), read without loading or locking the row."""
    query = select(
        CaptureSession.practitioner_id, CaptureSession.facility_id, CaptureSession.launch_issuer
    ).where(CaptureSession.id == session_id)
    row = (await db.execute(query)).one_or_none()
    return None if row is None else (row.practitioner_id, row.facility_id, row.launch_issuer)


async def lock_session_row(db: AsyncSession, session_id: str) -> None:
    """Lock the session's row without loading it (a lock taken only to keep the lock order)."""
    await db.execute(locked(select(CaptureSession.id).where(CaptureSession.id == session_id)))


async def open_session_of_encounter(db: AsyncSession, encounter_id: str) -> CaptureSession | None:
    """The encounter's open session (at most one: the partial unique index), its row locked."""
    query = select(CaptureSession).where(
        CaptureSession.encounter_id == encounter_id, CaptureSession.status == SessionStatus.OPEN
    )
    return (await db.execute(locked(query))).scalar_one_or_none()


async def open_sessions_of_practitioner(
    db: AsyncSession, practitioner_id: str, facility_id: str, patient_id: str, launch_issuer: str | None
) -> Sequence[CaptureSession]:
    """The open sessions of one practitioner at one facility (and launch issuer, None matching only None:
    `consultcam.sessions.access.reaches`) for one patient (an EMR launch resumes one), most recently active
    first, their rows locked."""
    issuer = (
        CaptureSession.launch_issuer.is_(None)
        if launch_issuer is None
        else CaptureSession.launch_issuer == launch_issuer
    )
    query = (
        select(CaptureSession)
        .where(
            CaptureSession.practitioner_id == practitioner_id,
            CaptureSession.facility_id == facility_id,
            issuer,
            CaptureSession.patient_id == patient_id,
            CaptureSession.status == SessionStatus.OPEN,
        )
        .order_by(CaptureSession.last_activity_at.desc())
    )
    return (await db.execute(locked(query))).scalars().all()


async def live_image_count(db: AsyncSession, session_id: str) -> int:
    """How many of the session's images are pending or ready (LIVE_IMAGE_STATUSES)."""
    query = (
        select(func.count())
        .select_from(ClinicalImage)
        .where(ClinicalImage.session_id == session_id, ClinicalImage.status.in_(LIVE_IMAGE_STATUSES))
    )
    return int((await db.execute(query)).scalar_one())


async def images_of(db: AsyncSession, session_id: str) -> Sequence[ClinicalImage]:
    """Every image row of the session, whatever its status."""
    query = select(ClinicalImage).where(ClinicalImage.session_id == session_id)
    return (await db.execute(query)).scalars().all()


async def session_states(
    db: AsyncSession,
) -> Sequence[Row[str, str, datetime, datetime, datetime | None]]:
    """(id, status, last_activity_at, retain_until, commit_lease_until) of every session, for the
    sweeper."""
    query = select(
        CaptureSession.id,
        CaptureSession.status,
        CaptureSession.last_activity_at,
        CaptureSession.retain_until,
        CaptureSession.commit_lease_until,
    )
    return (await db.execute(query)).all()


async def delete_session(db: AsyncSession, session_id: str) -> None:
    """Delete the session's row (its tokens, phones and images go with it: ON DELETE CASCADE)."""
    await db.execute(delete(CaptureSession).where(CaptureSession.id == session_id))


async def existing_session_ids(db: AsyncSession, session_ids: set[str]) -> set[str]:
    """Those of `session_ids` that still have a session row."""
    query = select(CaptureSession.id).where(CaptureSession.id.in_(session_ids))
    return set((await db.execute(query)).scalars().all())


# --- pairing tokens -----------------------------------------------------------------------------------

#: A pairing token still usable, expiry aside: neither redeemed nor superseded.
_UNUSED_PAIRING = (PairingToken.redeemed_at.is_(None), PairingToken.superseded_at.is_(None))


async def supersede_pairings(db: AsyncSession, session_id: str, now: datetime) -> None:
    """Mark the session's unredeemed, not yet superseded pairing tokens superseded at `now`."""
    await db.execute(
        update(PairingToken)
        .where(PairingToken.session_id == session_id, *_UNUSED_PAIRING)
        .values(superseded_at=now)
    )


async def lock_sessions_for_pairing(db: AsyncSession, token_hash: str, other_session_id: str | None) -> None:
    """Lock the session of the token `token_hash` and, when given, `other_session_id` (the redeeming
    phone's current session), both rows in id order so two phones swapping sessions never wait on each
    other."""
    of_token = select(PairingToken.session_id).where(PairingToken.token_hash == token_hash)
    sessions_to_lock = CaptureSession.id == of_token.scalar_subquery()
    if other_session_id is not None:
        sessions_to_lock = or_(sessions_to_lock, CaptureSession.id == other_session_id)
    await db.execute(locked(select(CaptureSession.id).where(sessions_to_lock).order_by(CaptureSession.id)))


async def redeem_token(db: AsyncSession, token_hash: str, now: datetime) -> tuple[str, str] | None:
    """Redeem the token `token_hash` in one atomic `UPDATE … WHERE redeemed_at IS NULL … RETURNING` when it
    is unredeemed, not superseded and not expired at `now`: (pairing id, session id), else None."""
    redeemed = (
        await db.execute(
            update(PairingToken)
            .where(PairingToken.token_hash == token_hash, *_UNUSED_PAIRING, PairingToken.expires_at > now)
            .values(redeemed_at=now)
            .returning(PairingToken.id, PairingToken.session_id)
        )
    ).first()
    return None if redeemed is None else (redeemed.id, redeemed.session_id)


async def pairing_by_hash(db: AsyncSession, token_hash: str) -> PairingToken | None:
    """The pairing token stored as `token_hash` (SHA-256 of the secret), or None."""
    query = select(PairingToken).where(PairingToken.token_hash == token_hash)
    return (await db.execute(query)).scalar_one_or_none()


# --- phone credentials --------------------------------------------------------------------------------


async def phone_by_hash(db: AsyncSession, token_hash: str) -> PhoneCredential | None:
    """The phone credential stored as `token_hash` (SHA-256 of the secret), revoked or not, or None."""
    query = select(PhoneCredential).where(PhoneCredential.token_hash == token_hash)
    return (await db.execute(query)).scalar_one_or_none()


async def phone_by_id(db: AsyncSession, phone_id: str) -> PhoneCredential | None:
    """The phone credential `phone_id`, revoked or not, or None."""
    return await db.get(PhoneCredential, phone_id)


async def current_phone(db: AsyncSession, session_id: str) -> PhoneCredential | None:
    """The session's most recently paired phone that is not revoked, or None."""
    query = (
        select(PhoneCredential)
        .where(PhoneCredential.session_id == session_id, PhoneCredential.revoked_at.is_(None))
        .order_by(PhoneCredential.created_at.desc())
        .limit(1)
    )
    return (await db.execute(query)).scalar_one_or_none()


async def live_phones(
    db: AsyncSession, session_id: str, phone_id: str | None = None
) -> Sequence[PhoneCredential]:
    """The session's phone credentials not revoked (only `phone_id` when given)."""
    query = select(PhoneCredential).where(
        PhoneCredential.session_id == session_id, PhoneCredential.revoked_at.is_(None)
    )
    if phone_id is not None:
        query = query.where(PhoneCredential.id == phone_id)
    return (await db.execute(query)).scalars().all()


async def revoke_phone(db: AsyncSession, phone_id: str, now: datetime) -> None:
    """Mark the phone credential `phone_id` revoked at `now`."""
    await db.execute(update(PhoneCredential).where(PhoneCredential.id == phone_id).values(revoked_at=now))
