"""Capture sessions and phone credentials: the rules, with no HTTP in sight.

Pairing (issue 2) is `consultcam.sessions.pairing`: redeeming a QR code's token gives the phone a
credential bound to that session; this module authenticates and revokes those credentials. The SQL is
`consultcam.sessions.repository`.

Concurrency (issue 3): a writing transaction that decides on a session's state locks the session row first
(`lock_session`), then touches its tokens, phones and images; see `consultcam.db` for why and the order.

Consent (issue 5): with `CONSENT_REQUIRED` (the default) no photo is taken before the patient's consent to
clinical photography is recorded with the session (`record_consent`); the connectors carry it into each
committed resource's note.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from consultcam import audit
from consultcam.auth.principals import Clinician, Phone, Principal, hash_secret
from consultcam.commits.schemas import LastCommitOut
from consultcam.config import WARN_IMAGES, Settings
from consultcam.db import UnitOfWork
from consultcam.errors import Conflict, NotAuthenticated, Unprocessable
from consultcam.events.bus import publish_after_commit
from consultcam.images.schemas import ImageOut
from consultcam.kit.status import SessionStatus
from consultcam.models import CaptureSession, PhoneCredential, utcnow
from consultcam.runtime import Runtime
from consultcam.sessions import access, repository
from consultcam.sessions.encounters import names_a_record_encounter
from consultcam.sessions.schemas import (
    ConsentIn,
    ConsentOut,
    PairingOut,
    PatientOut,
    PhoneOut,
    SessionCreate,
    SessionOut,
)
from consultcam.storage.keys import session_prefix


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
    images: Sequence[ImageOut] | None = None,
) -> SessionOut:
    """The API shape of a session."""
    return SessionOut(
        id=session.id,
        status=session.status,  # type: ignore[arg-type]
        encounter_id=session.encounter_id,
        encounter_in_record=names_a_record_encounter(session.encounter_id),
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
        images=list(images) if images is not None else None,
    )


async def get_session(
    uow: UnitOfWork, session_id: str, *, with_images: bool = False, for_update: bool = False
) -> CaptureSession:
    """The session, optionally with its images; raises ResourceNotFound (404). `for_update`: see
    `lock_session`."""
    session = await repository.find_session(
        uow.session, session_id, with_images=with_images, for_update=for_update
    )
    if session is None:
        raise access.session_not_found()
    return session


async def lock_session(uow: UnitOfWork, session_id: str) -> CaptureSession:
    """The session, its row locked until the transaction ends (PostgreSQL: `SELECT … FOR NO KEY UPDATE`;
    no-op on SQLite, where a writing unit of work holds the database's write lock from its first
    statement). Call it before checking a rule that a concurrent writer could break between the check and
    the commit: the session is open, fewer than MAX_IMAGES photos, an upload is still pending. An object
    already loaded in this unit of work is refreshed with the locked row. Raises ResourceNotFound (404)."""
    return await get_session(uow, session_id, for_update=True)


def require_open(session: CaptureSession, settings: Settings) -> None:
    """Raise Conflict (409) unless the session accepts photos and changes."""
    if session.status == SessionStatus.OPEN and session_expires_at(session, settings) <= utcnow():
        raise Conflict(
            "This capture session has expired. Start a new session on the desktop.", error="SessionExpired"
        )
    if session.status != SessionStatus.OPEN:
        words = _CLOSED_WORDS.get(session.status, session.status)
        raise Conflict(
            f"This capture session {words}; it takes no more changes. Start a new session on the "
            "desktop if more photos are needed.",
            error="SessionClosed",
        )


#: How a 409 says why a session takes no more changes, by its status.
_CLOSED_WORDS: dict[str, str] = {
    SessionStatus.COMMITTING: "is being committed to the record",
    SessionStatus.COMMITTED: "has been committed to the record",
    SessionStatus.CANCELLED: "was cancelled",
    SessionStatus.EXPIRED: "has expired",
}


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
    """How many photos count against MAX_IMAGES: the session's pending and ready images."""
    return await repository.live_image_count(uow.session, session_id)


async def current_phone(uow: UnitOfWork, session_id: str) -> PhoneCredential | None:
    """The most recently paired phone that is not revoked."""
    return await repository.current_phone(uow.session, session_id)


async def create_session(
    uow: UnitOfWork, rt: Runtime, actor: Clinician, data: SessionCreate
) -> tuple[CaptureSession, bool]:
    """Open a capture session for an encounter, or return the encounter's open one.

    Returns (session, created). Raises Conflict (409) when the encounter's open session belongs to another
    patient: the EMR context is inconsistent and photos must not go to the wrong record. A sign-in bound to
    a provider and facility (a Medtech launch) or to one EHR's Practitioner (a SMART launch) opens sessions
    under them only (`access.bind_new_session`: 403 for a request naming others; the SMART EHR's issuer is
    stamped as `launch_issuer`) and never resumes another's (409 `EncounterHeldElsewhere`). An open
    session that has idled out is expired here (as the sweeper would) and a new one opened.

    Concurrent calls for one encounter (double clicks, two web processes) open one session: the partial
    unique index `uq_capture_sessions_open_encounter` (migration 0002) refuses a second open row, and the
    loser of the race resumes the winner's session.
    """
    data = access.bind_new_session(actor, data)  # a launch's sign-in files under its provider and facility
    existing = await repository.open_session_of_encounter(uow.session, data.encounter_id)
    if existing is not None and session_expires_at(existing, rt.settings) <= utcnow():
        reason = "retention" if existing.retain_until <= utcnow() else "idle"
        await end_session(uow, rt, None, existing, SessionStatus.EXPIRED, reason)
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
        launch_issuer=actor.launch_issuer,  # a SMART launch's EHR; None for every other sign-in
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
        existing = await repository.open_session_of_encounter(uow.session, data.encounter_id)
        if existing is None:
            raise
        return _resume(uow, actor, existing, data), False
    audit.record(uow.session, actor, "session.created", session_id=session.id, encounter_id=data.encounter_id)
    return session, True


def _resume(
    uow: UnitOfWork, actor: Clinician, existing: CaptureSession, data: SessionCreate
) -> CaptureSession:
    """Return the encounter's open session to its clinician; Conflict (409) when it is out of a bound
    sign-in's reach (`access.require_resumable`), or another patient's."""
    access.require_resumable(actor, existing)
    if existing.patient_id != data.patient.id:
        raise Conflict(
            "This encounter already has an open capture session for a different patient. "
            "Check the patient in the EMR, or cancel the other session first.",
            error="EncounterPatientMismatch",
        )
    touch(existing)
    audit.record(uow.session, actor, "session.resumed", session_id=existing.id)
    return existing


async def authenticate_phone(uow: UnitOfWork, phone_token: str, *, touch: bool) -> Phone:
    """The phone for a presented credential; raises NotAuthenticated (401) when unknown or revoked.
    `touch` records when it was last seen (only in writing transactions)."""
    phone = await repository.phone_by_hash(uow.session, hash_secret(phone_token))
    if phone is None or phone.revoked_at is not None:
        raise NotAuthenticated(
            "This phone is no longer connected to the session. Scan a new QR code from the desktop.",
            error="PhoneNotPaired",
        )
    if touch and (utcnow() - phone.last_seen_at).total_seconds() > 30:  # at most one write per half minute
        # Lock order (consultcam.db): the session row before the phone's, or this request and a
        # cancellation (session, then its phones) could each wait for the other.
        await repository.lock_session_row(uow.session, phone.session_id)
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
    phones = await repository.live_phones(uow.session, session.id, phone_id)
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
    uow: UnitOfWork,
    rt: Runtime,
    actor: Principal | None,
    session: CaptureSession,
    status: SessionStatus,
    reason: str,
) -> None:
    """Cancel or expire a session: images and their objects deleted (after commit), phones signed out,
    `session.expired` published. Idempotent for sessions already ended. Raises Conflict (409) when a commit
    claimed the session meanwhile."""
    await lock_session(uow, session.id)  # refreshes `session`: a commit may have claimed it since it was read
    if session.status in (SessionStatus.CANCELLED, SessionStatus.EXPIRED):
        return
    if session.status != SessionStatus.OPEN:
        require_open(session, rt.settings)
    session.status = status
    session.version += 1
    # The pages learn why the session ended first, then that the phone is signed out.
    publish_after_commit(uow, rt.bus, session.id, "session.expired", {"reason": reason})
    await revoke_phones(uow, rt, actor, session, reason=reason)
    images = await repository.images_of(uow.session, session.id)
    for image in images:
        await uow.session.delete(image)
    audit.record(
        uow.session,
        actor,
        "session.cancelled" if status == SessionStatus.CANCELLED else "session.expired",
        session_id=session.id,
        reason=reason,
        images=len(images),
    )
    store, prefix = rt.store, session_prefix(session.id)

    async def _delete_objects() -> None:
        await store.delete_prefix(prefix)

    uow.after_commit(_delete_objects)
