"""The Medtech ALEX Apps launch (issue 12, docs/medtech.md): the rules, with no HTTP in sight.

Medtech Evolution opens `/launch/medtech?context=…&signature=…` when the GP clicks consultcam's icon (ALEX
Apps Configuration). Only ALEX can decode the pair: it answers `{patientId|null, facilityCode, providerId,
createdTime}`. A launch is accepted only when:

1. this server has Medtech ALEX (`alex+https://…` EMR URL; else "not-configured");
2. the context has not been used before (a cheap look-up first, then the primary key of
   `launch_context_uses` in the accepting transaction: "replayed"). Only its SHA-256 is stored
   (`context_hash`: over context, NUL, signature), until the context would be too old anyway;
3. ALEX decodes it ("bad-signature"; ALEX unreachable, failing or refusing our credentials: "alex-…");
4. `createdTime` is at most `MAX_AGE` (5 minutes) old and at most `MAX_SKEW` (2 minutes) ahead of our
   clock: Medtech's and our clocks differ by seconds, not minutes ("expired", "future");
5. a patient is open in Medtech ("no-patient": the GP is asked to open one and click again);
6. ALEX has that patient at that facility ("patient-not-found"): name, NHI and birth date come from ALEX's
   `Patient`, never from the URL.

Then, in one transaction (`accept`): the used-context row, the capture session, the GP's sign-in (the caller
adds it: `web.pages.begin_signin`) and the audit event `launch.accepted`. A refusal creates none of them;
the caller records `launch.refused` with the reason (`record_refusal`), never the context.

The session: the same GP (provider) at the same facility with an open session for the same patient resumes
it (`session.resumed`). Otherwise a new one opens (`sessions.service.create_session`). Medtech gives no
encounter, so the encounter id is a stable key per patient, GP and day (`encounter_key`):
"mt-" + the Pacific/Auckland date as YYYYMMDD + "-" + the first 20 hex digits of SHA-256 over
"facility\\0provider\\0patient"; e.g. "mt-20261204-3f9c0e…". It is a valid FHIR id (32 characters), says
nothing about the patient, and is the same for every launch of that GP for that patient that day.

The GP signs in as `Clinician(id="medtech:<facility>:<provider>", practitioner_id=<provider>,
facility_id=<facility>)`, method "medtech": bound to that provider and facility.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.exc import IntegrityError

from consultcam import audit
from consultcam.auth.principals import Clinician
from consultcam.config import PRACTICE_TIMEZONE
from consultcam.db import Transactions, UnitOfWork
from consultcam.launch import repository
from consultcam.launch.port import AlexPatient, LaunchContext, LaunchFailure
from consultcam.models import CaptureSession, utcnow
from consultcam.runtime import Runtime
from consultcam.sessions import repository as sessions_repository
from consultcam.sessions.schemas import PatientIn, SessionCreate
from consultcam.sessions.service import create_session, session_expires_at, touch

__all__ = [
    "MAX_AGE",
    "MAX_SKEW",
    "Accepted",
    "Checked",
    "LaunchRefused",
    "Reason",
    "accept",
    "check",
    "clinician_of",
    "context_hash",
    "encounter_key",
    "record_refusal",
    "sweep",
]

#: A context older than this is refused (issue 12): a launch URL is used at once, never kept.
MAX_AGE = timedelta(minutes=5)
#: A context this far ahead of our clock is refused: more than clock skew between Medtech and us.
MAX_SKEW = timedelta(minutes=2)

#: Why a launch was refused (the audit's `reason`; the page says it in words).
Reason = Literal[
    "not-configured",
    "bad-request",
    "bad-signature",
    "expired",
    "future",
    "replayed",
    "no-patient",
    "patient-not-found",
    "alex-unreachable",
    "alex-credentials",
    "alex-error",
]


class LaunchRefused(Exception):
    """A launch that is not accepted; `reason` says why (see `Reason`). `facility_id`/`practitioner_id`
    when ALEX decoded the context, for the audit trail."""

    def __init__(
        self, reason: Reason, *, facility_id: str | None = None, practitioner_id: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason: Reason = reason
        self.facility_id = facility_id
        self.practitioner_id = practitioner_id


@dataclass(frozen=True)
class Checked:
    """A launch ALEX vouched for: its `context_hash`, the decoded `context` and the `patient`."""

    context_hash: str
    context: LaunchContext
    patient: AlexPatient


@dataclass(frozen=True)
class Accepted:
    """An accepted launch: the session opened or `resumed`, and the clinician to sign in."""

    session: CaptureSession
    clinician: Clinician
    resumed: bool


def context_hash(context: str, signature: str) -> str:
    """SHA-256 hex over `context` NUL `signature`: what `launch_context_uses` keeps instead of the pair."""
    return hashlib.sha256(f"{context}\0{signature}".encode()).hexdigest()


def encounter_key(facility_id: str, practitioner_id: str, patient_id: str, now: datetime) -> str:
    """The encounter id of a Medtech launch: one per patient, GP, facility and Pacific/Auckland day (see the
    module docstring). `now` is aware."""
    day = now.astimezone(PRACTICE_TIMEZONE).strftime("%Y%m%d")
    digest = hashlib.sha256(f"{facility_id}\0{practitioner_id}\0{patient_id}".encode()).hexdigest()
    return f"mt-{day}-{digest[:20]}"


def clinician_of(context: LaunchContext) -> Clinician:
    """The GP a launch signs in: bound to the context's provider and facility."""
    return Clinician(
        id=f"medtech:{context.facility_code}:{context.provider_id}",
        practitioner_id=context.provider_id,
        facility_id=context.facility_code,
    )


async def check(rt: Runtime, context: str, signature: str, now: datetime | None = None) -> Checked:
    """Rules 1 to 6 of the module docstring, outside any writing transaction (ALEX may take seconds; no
    database lock is held meanwhile). `now` (aware) is for tests. Raises LaunchRefused."""
    now = now or utcnow()
    alex = rt.medtech_launch
    if alex is None:
        raise LaunchRefused("not-configured")
    digest = context_hash(context, signature)
    async with rt.unit_of_work(writes=False) as uow:
        if await repository.context_used(uow.session, digest):
            raise LaunchRefused("replayed")
    try:
        decoded = await alex.decode(context, signature)
    except LaunchFailure as failure:
        raise LaunchRefused(failure.why) from None
    who = {"facility_id": decoded.facility_code, "practitioner_id": decoded.provider_id}
    if now - decoded.created_at > MAX_AGE:
        raise LaunchRefused("expired", **who)
    if decoded.created_at - now > MAX_SKEW:
        raise LaunchRefused("future", **who)
    if decoded.patient_id is None:
        raise LaunchRefused("no-patient", **who)
    try:
        patient = await alex.read_patient(decoded.patient_id, decoded.facility_code)
    except LaunchFailure as failure:
        raise LaunchRefused(failure.why, **who) from None
    return Checked(context_hash=digest, context=decoded, patient=patient)


async def accept(uow: UnitOfWork, rt: Runtime, checked: Checked, now: datetime | None = None) -> Accepted:
    """Use the context and open or resume the GP's session for the patient, in the caller's transaction
    (which then starts the sign-in and commits). Audited `launch.accepted`. Raises LaunchRefused
    "replayed" when the context was used meanwhile (the transaction must then be rolled back), or
    "alex-error" when ALEX's patient cannot be a session's (e.g. an NHI that fails its check)."""
    now = now or utcnow()
    ctx, who = checked.context, clinician_of(checked.context)
    refused = {"facility_id": ctx.facility_code, "practitioner_id": ctx.provider_id}
    try:
        async with uow.session.begin_nested():
            await repository.add_context_use(
                uow.session, checked.context_hash, now, ctx.created_at + MAX_AGE + MAX_SKEW
            )
    except IntegrityError:
        raise LaunchRefused("replayed", **refused) from None
    patient = checked.patient
    resumable = [
        s
        for s in await sessions_repository.open_sessions_of_practitioner(
            uow.session, ctx.provider_id, ctx.facility_code, patient.id, who.launch_issuer
        )
        if session_expires_at(s, rt.settings) > now
    ]
    if resumable:
        session, resumed = resumable[0], True
        touch(session)
        audit.record(uow.session, who, "session.resumed", session_id=session.id)
    else:
        try:
            data = SessionCreate(
                encounter_id=encounter_key(ctx.facility_code, ctx.provider_id, patient.id, now),
                patient=PatientIn(
                    id=patient.id, name=patient.name, nhi=patient.nhi, birth_date=patient.birth_date
                ),
                practitioner_id=ctx.provider_id,
                facility_id=ctx.facility_code,
            )
        except ValueError:  # pydantic's ValidationError: ALEX's patient is not one we can commit to
            raise LaunchRefused("alex-error", **refused) from None
        session, created = await create_session(uow, rt, who, data)
        resumed = not created
    audit.record(
        uow.session,
        who,
        "launch.accepted",
        session_id=session.id,
        resumed=resumed,
        facility_id=ctx.facility_code,
        practitioner_id=ctx.provider_id,
    )
    return Accepted(session=session, clinician=who, resumed=resumed)


async def record_refusal(tx: Transactions, refused: LaunchRefused, client: str) -> None:
    """Audit `launch.refused` {reason, client, facility_id?, practitioner_id?} in a transaction of its own
    (the launch's, if any, was rolled back). Never the context, the signature or the patient."""
    detail = {"reason": refused.reason, "client": client}
    if refused.facility_id:
        detail |= {"facility_id": refused.facility_id, "practitioner_id": refused.practitioner_id or ""}
    async with tx() as uow:
        audit.record(uow.session, None, "launch.refused", system="medtech-launch", **detail)


async def sweep(tx: Transactions, now: datetime | None = None) -> int:
    """The launches' sweep step (`retention.sweeper`), in a transaction of its own: delete the used-context
    rows past their expiry (the context would be refused as expired by then anyway); returns how many."""
    now = now or utcnow()
    async with tx() as uow:
        return await repository.delete_expired_context_uses(uow.session, now)
