"""Capture sessions, pairing tokens and phone credentials: the rules, with no HTTP in sight.

Pairing (issue 2): a QR code carries a 256-bit token, stored only as SHA-256, valid for
`PAIRING_TTL_SECONDS`, redeemed at most once by one atomic `UPDATE … WHERE redeemed_at IS NULL RETURNING`;
a new code supersedes the unredeemed ones. Redeeming gives the phone a credential bound to that session.

Concurrency (issue 3): a writing transaction that decides on a session's state locks the session row first
(`lock_session`), then touches its tokens, phones and images; see `consultcam.db` for why and the order.

Consent (issue 5): with `CONSENT_REQUIRED` (the default) no photo is taken before the patient's consent to
clinical photography is recorded with the session (`record_consent`); the connectors carry it into each
committed resource's note.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import segno
from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from consultcam import audit
from consultcam.auth import Clinician, Phone, Principal, hash_secret, new_secret
from consultcam.commits.schemas import LastCommitOut
from consultcam.config import WARN_IMAGES, Settings
from consultcam.db import UnitOfWork
from consultcam.errors import Conflict, Gone, NotAuthenticated, ResourceNotFound, Unprocessable
from consultcam.events.bus import publish_after_commit
from consultcam.models import CaptureSession, ClinicalImage, PairingToken, PhoneCredential, utcnow
from consultcam.runtime import Runtime
from consultcam.sessions.schemas import (
    ConsentIn,
    ConsentOut,
    PairingOut,
    PatientOut,
    PhoneOut,
    SessionCreate,
    SessionOut,
)
from consultcam.storage.store import session_prefix

OPEN = "open"
_Select = TypeVar("_Select", bound=Select)  # type: ignore[type-arg]
#: Images that count against MAX_IMAGES and show in galleries (pending ones are uploads in flight).
LIVE_IMAGE_STATUSES = ("pending", "ready")


def session_expires_at(session: CaptureSession, settings: Settings) -> datetime:
    """When the session ends by itself: idle timeout from the last activity, capped by retention."""
    idle_end = session.last_activity_at + timedelta(minutes=settings.session_idle_minutes)
    return min(idle_end, session.retain_until)


def session_out(
    session: CaptureSession,
    settings: Settings,
    *,
    image_count: int,
    phone: PhoneCredential | None = None,
    pairing: PairingOut | None = None,
    images: list | None = None,  # list[ImageOut]
) -> SessionOut:
    """The API shape of a session."""
    return SessionOut(
        id=session.id,
        status=session.status,  # type: ignore[arg-type]
        encounter_id=session.encounter_id,
        patient=PatientOut(
            id=session.patient_id,
            name=session.patient_name,
            nhi=session.patient_nhi,
            birth_date=session.patient_birth_date,
        ),
        practitioner_id=session.practitioner_id,
        facility_id=session.facility_id,
        created_at=session.created_at,
        expires_at=session_expires_at(session, settings),
        max_images=settings.max_images,
        warn_images=WARN_IMAGES,
        image_count=image_count,
        consent=ConsentOut.model_validate(session.consent) if session.consent else None,
        consent_required=settings.consent_required,
        required_metadata=list(settings.required_metadata),
        phone_can_commit=settings.phone_can_commit,
        commit_error=session.commit_error,
        last_commit=LastCommitOut.of(session),
        pairing=pairing,
        phone=PhoneOut(
            id=phone.id,
            user_agent=phone.user_agent,
            paired_at=phone.created_at,
            last_seen_at=phone.last_seen_at,
        )
        if phone
        else None,
        images=images,
    )


async def get_session(
    uow: UnitOfWork, session_id: str, *, with_images: bool = False, for_update: bool = False
) -> CaptureSession:
    """The session, optionally with its images; raises ResourceNotFound (404). `for_update`: see
    `lock_session`."""
    query = select(CaptureSession).where(CaptureSession.id == session_id)
    if with_images:
        query = query.options(selectinload(CaptureSession.images))
    if for_update:
        query = _locked(query)
    session = (await uow.session.execute(query)).scalar_one_or_none()
    if session is None:
        raise ResourceNotFound(
            "No such capture session: it may have been committed, cancelled or expired. "
            "Start a new one from the desktop.",
            error="SessionNotFound",
        )
    return session


def _locked(query: _Select) -> _Select:
    """`query` taking the capture session rows' lock and refreshing already-loaded objects with the
    locked version. FOR NO KEY UPDATE, not FOR UPDATE: it serialises writers of the session but lets other
    transactions insert rows that reference it (foreign-key checks take KEY SHARE). SQLite has no row
    locks and renders nothing: its writing transactions already hold the database's write lock."""
    return query.with_for_update(key_share=True).execution_options(populate_existing=True)


async def lock_session(uow: UnitOfWork, session_id: str) -> CaptureSession:
    """The session, its row locked until the transaction ends (PostgreSQL: `SELECT … FOR NO KEY UPDATE`;
    no-op on SQLite, where a writing unit of work holds the database's write lock from its first
    statement). Call it before checking a rule that a concurrent writer could break between the check and
    the commit: the session is open, fewer than MAX_IMAGES photos, an upload is still pending. An object
    already loaded in this unit of work is refreshed with the locked row. Raises ResourceNotFound (404)."""
    return await get_session(uow, session_id, for_update=True)


def require_open(session: CaptureSession, settings: Settings) -> None:
    """Raise Conflict (409) unless the session accepts photos and changes."""
    if session.status == OPEN and session_expires_at(session, settings) <= utcnow():
        raise Conflict(
            "This capture session has expired. Start a new session on the desktop.", error="SessionExpired"
        )
    if session.status != OPEN:
        words = {
            "committing": "is being committed to the record",
            "committed": "has been committed to the record",
            "cancelled": "was cancelled",
            "expired": "has expired",
        }.get(session.status, session.status)
        raise Conflict(
            f"This capture session {words}; it takes no more changes. Start a new session on the "
            "desktop if more photos are needed.",
            error="SessionClosed",
        )


def require_consent(session: CaptureSession, settings: Settings) -> None:
    """Raise Conflict (409 `ConsentRequired`) while consent is required (`CONSULTCAM_CONSENT_REQUIRED`) and
    not yet recorded for the session: no photo may be taken before it."""
    if settings.consent_required and not session.consent:
        raise Conflict(
            "The patient's consent to photography has not been recorded for this session. Ask the patient "
            "(or their guardian), record their consent on the phone or the desktop, then take the photos.",
            error="ConsentRequired",
        )


async def record_consent(
    uow: UnitOfWork, rt: Runtime, actor: Principal, session_id: str, consent: ConsentIn
) -> CaptureSession:
    """Record the patient's consent with the session, replacing any recorded before; publishes
    `consent.recorded` `{consent}`. Stored as {scope, givenBy, recordedAt (ISO 8601 UTC), recordedBy:
    "phone" | "clinician"}; the commit hands it to the connector for each resource's note (FHIR R4
    Media.note, DICOM Image Comments).

    Raises ResourceNotFound (404), Conflict (409) when the session is not open.
    """
    session = await lock_session(uow, session_id)
    require_open(session, rt.settings)
    recorded = ConsentOut(
        scope=consent.scope,
        given_by=consent.given_by,
        recorded_at=utcnow(),
        recorded_by="phone" if isinstance(actor, Phone) else "clinician",
    ).model_dump(mode="json")  # stored, published and served in the one shape
    session.consent = recorded
    touch(session)
    audit.record(
        uow.session,
        actor,
        "consent.recorded",
        session_id=session.id,
        scope=consent.scope,
        given_by=consent.given_by,
    )
    publish_after_commit(uow, rt.bus, session.id, "consent.recorded", {"consent": recorded})
    return session


def touch(session: CaptureSession) -> None:
    """Record activity (keeps an open session from idling out)."""
    session.last_activity_at = utcnow()


async def live_image_count(uow: UnitOfWork, session_id: str) -> int:
    return int(
        (
            await uow.session.execute(
                select(func.count())
                .select_from(ClinicalImage)
                .where(ClinicalImage.session_id == session_id, ClinicalImage.status.in_(LIVE_IMAGE_STATUSES))
            )
        ).scalar_one()
    )


async def current_phone(uow: UnitOfWork, session_id: str) -> PhoneCredential | None:
    """The most recently paired phone that is not revoked."""
    return (
        await uow.session.execute(
            select(PhoneCredential)
            .where(PhoneCredential.session_id == session_id, PhoneCredential.revoked_at.is_(None))
            .order_by(PhoneCredential.created_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def create_session(
    uow: UnitOfWork, rt: Runtime, actor: Clinician, data: SessionCreate
) -> tuple[CaptureSession, bool]:
    """Open a capture session for an encounter, or return the encounter's open one.

    Returns (session, created). Raises Conflict (409) when the encounter's open session belongs to another
    patient: the EMR context is inconsistent and photos must not go to the wrong record. An open session
    that has idled out is expired here (as the sweeper would) and a new one opened.

    Concurrent calls for one encounter (double clicks, two web processes) open one session: the partial
    unique index `uq_capture_sessions_open_encounter` (migration 0002) refuses a second open row, and the
    loser of the race resumes the winner's session.
    """
    existing = await _open_session_of(uow, data.encounter_id)
    if existing is not None and session_expires_at(existing, rt.settings) <= utcnow():
        reason = "retention" if existing.retain_until <= utcnow() else "idle"
        await end_session(uow, rt, None, existing, "expired", reason)
        await uow.session.flush()  # the index must see it closed before the new row goes in
        existing = None
    if existing is not None:
        return _resume(uow, actor, existing, data), False
    now = utcnow()
    session = CaptureSession(
        encounter_id=data.encounter_id,
        patient_id=data.patient.id,
        patient_name=data.patient.name,
        patient_nhi=data.patient.nhi,
        patient_birth_date=data.patient.birth_date,
        practitioner_id=data.practitioner_id,
        facility_id=data.facility_id,
        created_by=actor.id,
        created_at=now,
        last_activity_at=now,
        retain_until=now + timedelta(hours=rt.settings.retention_hours),
    )
    try:
        async with uow.session.begin_nested():  # a savepoint: the race's loser carries on below
            uow.session.add(session)
            await uow.session.flush()
    except IntegrityError:
        # PostgreSQL only (SQLite's writers never interleave): another transaction opened a session for
        # this encounter after our look-up and committed; the unique index made our INSERT wait for it.
        existing = await _open_session_of(uow, data.encounter_id)
        if existing is None:
            raise
        return _resume(uow, actor, existing, data), False
    audit.record(uow.session, actor, "session.created", session_id=session.id, encounter_id=data.encounter_id)
    return session, True


async def _open_session_of(uow: UnitOfWork, encounter_id: str) -> CaptureSession | None:
    """The encounter's open session (at most one: the partial unique index), its row locked."""
    return (
        await uow.session.execute(
            _locked(
                select(CaptureSession).where(
                    CaptureSession.encounter_id == encounter_id, CaptureSession.status == OPEN
                )
            )
        )
    ).scalar_one_or_none()


def _resume(
    uow: UnitOfWork, actor: Clinician, existing: CaptureSession, data: SessionCreate
) -> CaptureSession:
    """Return the encounter's open session to its clinician; Conflict (409) when it is another patient's."""
    if existing.patient_id != data.patient.id:
        raise Conflict(
            "This encounter already has an open capture session for a different patient. "
            "Check the patient in the EMR, or cancel the other session first.",
            error="EncounterPatientMismatch",
        )
    touch(existing)
    audit.record(uow.session, actor, "session.resumed", session_id=existing.id)
    return existing


def qr_svg(url: str) -> str:
    """The pairing URL as an inline, scalable SVG QR code (segno; ISO/IEC 18004, error correction M)."""
    return segno.make(url, error="m", boost_error=False).svg_inline(
        scale=1, border=2, dark="#0b2239", light="#ffffff", omitsize=True, title="Scan with the phone camera"
    )


async def issue_pairing(
    uow: UnitOfWork, rt: Runtime, actor: Clinician, session: CaptureSession, base_url: str
) -> PairingOut:
    """A new single-use pairing token for `session`; earlier unredeemed codes stop working.

    Raises Conflict (409) when the session is not open.
    """
    await lock_session(uow, session.id)  # a redemption or another new code of this session waits
    require_open(session, rt.settings)
    now = utcnow()
    await uow.session.execute(
        update(PairingToken)
        .where(
            PairingToken.session_id == session.id,
            PairingToken.redeemed_at.is_(None),
            PairingToken.superseded_at.is_(None),
        )
        .values(superseded_at=now)
    )
    token = new_secret()
    expires_at = now + timedelta(seconds=rt.settings.pairing_ttl_seconds)
    uow.session.add(
        PairingToken(
            session_id=session.id, token_hash=hash_secret(token), created_at=now, expires_at=expires_at
        )
    )
    touch(session)
    audit.record(uow.session, actor, "pairing.issued", session_id=session.id)
    url = f"{base_url.rstrip('/')}/m/{token}"
    return PairingOut(url=url, expires_at=expires_at, qr_svg=qr_svg(url))


@dataclass(frozen=True)
class Pairing:
    """A redeemed pairing: the session, the new phone credential row and its secret (shown once)."""

    session: CaptureSession
    phone: PhoneCredential
    phone_token: str


async def redeem_pairing(
    uow: UnitOfWork, rt: Runtime, token: str, *, user_agent: str, current: Phone | None
) -> Pairing:
    """Redeem a pairing token once, atomically, and issue a phone credential bound to its session.

    `current` is the phone credential the caller already holds (its cookie), if live. A phone that reloads
    the page (it holds the credential from this very token, or another of the same session) gets a fresh
    credential in place of its old one. A phone paired with another session that redeems this one's code
    leaves that session: its old credential is revoked there with reason "paired-elsewhere", which the other
    desktop hears (`phone.revoked`) and the audit trail records (issue 10). Raises ResourceNotFound 404
    (unknown code), Conflict 409 (already used, or the session is closed), Gone 410 (expired or replaced
    by a newer code).
    """
    now = utcnow()
    token_hash = hash_secret(token)
    # Lock order (consultcam.db): the session row before its token, as `issue_pairing` does; the UPDATE
    # below stays the one atomic step that lets a single redemption through. With the phone's other
    # session too, both rows in id order, so two phones swapping sessions never wait on each other.
    of_token = select(PairingToken.session_id).where(PairingToken.token_hash == token_hash)
    sessions_to_lock = CaptureSession.id == of_token.scalar_subquery()
    if current is not None:
        sessions_to_lock = or_(sessions_to_lock, CaptureSession.id == current.session_id)
    await uow.session.execute(
        _locked(select(CaptureSession.id).where(sessions_to_lock).order_by(CaptureSession.id))
    )
    redeemed = (
        await uow.session.execute(
            update(PairingToken)
            .where(
                PairingToken.token_hash == token_hash,
                PairingToken.redeemed_at.is_(None),
                PairingToken.superseded_at.is_(None),
                PairingToken.expires_at > now,
            )
            .values(redeemed_at=now)
            .returning(PairingToken.id, PairingToken.session_id)
        )
    ).first()
    if redeemed is None:
        pairing_id, session_id = await _explain_unredeemable(uow, token_hash, current)
    else:
        pairing_id, session_id = redeemed.id, redeemed.session_id
    session = await get_session(uow, session_id)
    require_open(session, rt.settings)
    if current is not None and current.session_id == session.id:  # the same phone again: rotate
        await uow.session.execute(
            update(PhoneCredential).where(PhoneCredential.id == current.id).values(revoked_at=now)
        )
        bus, replaced = rt.bus, current.id

        async def _end_streams() -> None:  # whoever still holds the old credential stops listening
            await bus.end_streams(credential_id=replaced)

        uow.after_commit(_end_streams)
    elif current is not None:  # the phone moves here from another session: that desktop is told
        left = await get_session(uow, current.session_id)
        await revoke_phones(uow, rt, current, left, reason="paired-elsewhere", phone_id=current.id)
    phone_token = new_secret()
    phone = PhoneCredential(
        session_id=session.id,
        pairing_token_id=pairing_id,
        token_hash=hash_secret(phone_token),
        user_agent=user_agent[:300],
        created_at=now,
        last_seen_at=now,
    )
    uow.session.add(phone)
    touch(session)
    await uow.session.flush()
    moved = {"previous_phone_id": current.id} if current and current.session_id != session.id else {}
    audit.record(
        uow.session,
        Phone(id=phone.id, session_id=session.id),
        "phone.paired",
        session_id=session.id,
        user_agent=phone.user_agent,
        **moved,
    )
    publish_after_commit(
        uow,
        rt.bus,
        session.id,
        "phone.paired",
        {"phone": {"id": phone.id, "userAgent": phone.user_agent, "pairedAt": now.isoformat()}},
    )
    return Pairing(session=session, phone=phone, phone_token=phone_token)


async def _explain_unredeemable(uow: UnitOfWork, token_hash: str, current: Phone | None) -> tuple[str, str]:
    """Say why a token could not be redeemed, or return (pairing id, session id) when the caller is the
    phone that redeemed it (a page reload)."""
    row = (
        await uow.session.execute(select(PairingToken).where(PairingToken.token_hash == token_hash))
    ).scalar_one_or_none()
    if row is None:
        raise ResourceNotFound(
            "This QR code is not recognised. Ask for a new code on the desktop and scan it again.",
            error="PairingTokenNotFound",
        )
    if row.redeemed_at is not None:
        if current is not None and current.session_id == row.session_id:
            owner = await uow.session.get(PhoneCredential, current.id)
            if owner is not None and owner.pairing_token_id == row.id:
                return row.id, row.session_id
        raise Conflict(
            "This QR code has already been used by another phone. Ask for a new code on the desktop "
            "and scan it again.",
            error="PairingTokenUsed",
        )
    if row.superseded_at is not None:
        raise Gone(
            "This QR code was replaced by a newer one. Scan the code now shown on the desktop.",
            error="PairingTokenReplaced",
        )
    raise Gone(
        "This QR code has expired (codes last a few minutes). Press “New code” on the desktop and scan "
        "again.",
        error="PairingTokenExpired",
    )


async def authenticate_phone(uow: UnitOfWork, phone_token: str, *, touch: bool) -> Phone:
    """The phone for a presented credential; raises NotAuthenticated (401) when unknown or revoked.
    `touch` records when it was last seen (only in writing transactions)."""
    phone = (
        await uow.session.execute(
            select(PhoneCredential).where(PhoneCredential.token_hash == hash_secret(phone_token))
        )
    ).scalar_one_or_none()
    if phone is None or phone.revoked_at is not None:
        raise NotAuthenticated(
            "This phone is no longer connected to the session. Scan a new QR code from the desktop.",
            error="PhoneNotPaired",
        )
    if touch and (utcnow() - phone.last_seen_at).total_seconds() > 30:  # at most one write per half minute
        # Lock order (consultcam.db): the session row before the phone's, or this request and a
        # cancellation (session, then its phones) could each wait for the other.
        await uow.session.execute(
            _locked(select(CaptureSession.id).where(CaptureSession.id == phone.session_id))
        )
        phone.last_seen_at = utcnow()
    return Phone(id=phone.id, session_id=phone.session_id)


#: Why a phone may sign itself out: "Not this patient?" on the phone's banner.
PHONE_REVOKE_REASONS = ("wrong-patient",)


async def revoke_phones(
    uow: UnitOfWork,
    rt: Runtime,
    actor: Principal | None,
    session: CaptureSession,
    *,
    reason: str = "revoked",
    phone_id: str | None = None,
) -> int:
    """Sign the session's phones out at once (only `phone_id` when given); returns how many. `reason`
    travels in `phone.revoked` `{phoneId, reason}` and the audit trail: "revoked" by the clinician,
    "wrong-patient" by the phone itself, "paired-elsewhere" when the phone redeemed another session's code,
    or why the session ended."""
    query = select(PhoneCredential).where(
        PhoneCredential.session_id == session.id, PhoneCredential.revoked_at.is_(None)
    )
    if phone_id is not None:
        query = query.where(PhoneCredential.id == phone_id)
    phones = (await uow.session.execute(query)).scalars().all()
    now = utcnow()
    for phone in phones:
        phone.revoked_at = now
        audit.record(
            uow.session, actor, "phone.revoked", session_id=session.id, phone_id=phone.id, reason=reason
        )
        publish_after_commit(
            uow, rt.bus, session.id, "phone.revoked", {"phoneId": phone.id, "reason": reason}
        )
    return len(phones)


async def sign_out_phones(
    uow: UnitOfWork, rt: Runtime, actor: Principal, session_id: str, reason: str | None
) -> int:
    """`DELETE /api/sessions/{id}/phone`: the clinician signs every phone of the session out (reason
    "revoked"); a phone signs only itself out, and only with a reason from PHONE_REVOKE_REASONS ("Not this
    patient?" → "wrong-patient"). Works whatever the session's state. Returns how many were signed out.

    Raises ResourceNotFound (404), Unprocessable (422) for a reason the caller may not give.
    """
    if isinstance(actor, Phone):
        if reason not in PHONE_REVOKE_REASONS:
            raise Unprocessable(
                "A phone can sign itself out only with reason=wrong-patient (“Not this patient?”). To end "
                "the session, cancel it on the desktop.",
                error="InvalidRevokeReason",
            )
        session = await lock_session(uow, actor.session_id)  # the session row before the phone's
        return await revoke_phones(uow, rt, actor, session, reason=reason, phone_id=actor.id)
    if reason not in (None, "", "revoked"):
        raise Unprocessable(
            "The clinician signs phones out with no reason or reason=revoked; wrong-patient is for the "
            "phone's own “Not this patient?”.",
            error="InvalidRevokeReason",
        )
    session = await lock_session(uow, session_id)
    return await revoke_phones(uow, rt, actor, session, reason="revoked")


async def end_session(
    uow: UnitOfWork, rt: Runtime, actor: Principal | None, session: CaptureSession, status: str, reason: str
) -> None:
    """Cancel or expire a session: images and their objects deleted (after commit), phones signed out,
    `session.expired` published. Idempotent for sessions already ended. Raises Conflict (409) when a commit
    claimed the session meanwhile."""
    await lock_session(uow, session.id)  # refreshes `session`: a commit may have claimed it since it was read
    if session.status in ("cancelled", "expired"):
        return
    if session.status != OPEN:
        require_open(session, rt.settings)
    session.status = status
    session.version += 1
    # The pages learn why the session ended first, then that the phone is signed out.
    publish_after_commit(uow, rt.bus, session.id, "session.expired", {"reason": reason})
    await revoke_phones(uow, rt, actor, session, reason=reason)
    images = (
        (await uow.session.execute(select(ClinicalImage).where(ClinicalImage.session_id == session.id)))
        .scalars()
        .all()
    )
    for image in images:
        await uow.session.delete(image)
    audit.record(
        uow.session,
        actor,
        "session.cancelled" if status == "cancelled" else "session.expired",
        session_id=session.id,
        reason=reason,
        images=len(images),
    )
    store, prefix = rt.store, session_prefix(session.id)

    async def _delete_objects() -> None:
        await store.delete_prefix(prefix)

    uow.after_commit(_delete_objects)
