"""SMART App Launch 2.x (issue 13), what a launch the EHR vouched for opens (`consultcam.launch.smart`
checks it first: start, claim, check): the rules, no HTTP here.

`accept`, in the caller's transaction with the sign-in: the capture session for that encounter opened or
resumed (`sessions.service.create_session`; a standalone launch without encounter gets a stable key per EHR,
user, patient and day, `encounter_key`), the session's `SmartGrant` stored or replaced with the tokens sealed
(`seal(key, "smart-grant", {access_token, refresh_token?})`), audited `launch.accepted`. A refusal creates
none of them; the caller records `launch.refused` (`consultcam.launch.smart.record_refusal`).

The user signs in as `Clinician(id="smart:<iss host>:<fhirUser>", practitioner_id=<the Practitioner id of
fhirUser>, launch_issuer=<iss>)`, method "smart", where `iss` is the issuer the launch was accepted for,
exactly as listed in CONSULTCAM_SMART_ISSUERS: a bound sign-in (`consultcam.sessions.access`), which reaches
only that EHR's practitioner's sessions and opens sessions only for them (stamped with the issuer). A
Practitioner id names a user in one EHR only: another listed EHR's Practitioner/7 is someone else.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from pydantic import ValidationError

from consultcam import audit
from consultcam.auth.principals import Clinician
from consultcam.config import PRACTICE_TIMEZONE
from consultcam.db import UnitOfWork
from consultcam.errors import Conflict, NotPermitted
from consultcam.kit.sealing import seal
from consultcam.launch import smart_repository as repository
from consultcam.launch.smart import Checked, SmartRefused, practitioner_of, user_of
from consultcam.models import CaptureSession, SmartGrant, utcnow
from consultcam.runtime import Runtime
from consultcam.sessions.schemas import PatientIn, SessionCreate
from consultcam.sessions.service import create_session

__all__ = ["GRANT_PURPOSE", "Accepted", "accept", "clinician_of", "encounter_key"]

GRANT_PURPOSE = "smart-grant"


@dataclass(frozen=True)
class Accepted:
    """An accepted launch: the session opened or `resumed`, and the clinician to sign in."""

    session: CaptureSession
    clinician: Clinician
    resumed: bool


def clinician_of(checked: Checked) -> Clinician:
    """The user a launch signs in (see the module docstring), bound to their Practitioner id (`check`
    refused a launch without one) at the launch's EHR (`launch_issuer`: the accepted `iss`)."""
    practitioner = practitioner_of(checked.claims, checked.pending.server.iss)
    if practitioner is None:
        raise SmartRefused("not-a-practitioner", issuer=checked.pending.server.iss)
    host = urlsplit(checked.pending.server.iss).netloc
    name = checked.claims.get("name")
    return Clinician(
        id=f"smart:{host}:{user_of(checked)}"[:200],
        name=name if isinstance(name, str) and name else None,
        practitioner_id=practitioner,
        launch_issuer=checked.pending.server.iss,
    )


def encounter_key(iss: str, user: str, patient_id: str, now: datetime) -> str:
    """The encounter id of a standalone launch without an encounter: one per EHR, user, patient and
    Pacific/Auckland day: "sm-" + YYYYMMDD + "-" + 20 hex digits of SHA-256 over "iss\\0user\\0patient"
    (a valid FHIR id that says nothing about the patient), as the Medtech launch's `encounter_key`."""
    day = now.astimezone(PRACTICE_TIMEZONE).strftime("%Y%m%d")
    digest = hashlib.sha256(f"{iss}\0{user}\0{patient_id}".encode()).hexdigest()
    return f"sm-{day}-{digest[:20]}"


async def accept(uow: UnitOfWork, rt: Runtime, checked: Checked, now: datetime | None = None) -> Accepted:
    """Open or resume the session and store its grant, in the caller's transaction (which then starts the
    sign-in and commits). Audited `launch.accepted`. Raises SmartRefused "encounter-held" (the encounter's
    open session is another patient's or out of this user's reach) or "ehr-error" (the EHR's patient
    cannot be a session's, e.g. an NHI that fails its check)."""
    now = now or utcnow()
    who, iss, token = clinician_of(checked), checked.pending.server.iss, checked.token
    patient = checked.patient
    encounter_id = (
        checked.encounter.id
        if checked.encounter is not None
        else encounter_key(iss, user_of(checked), patient.id, now)
    )
    try:
        data = SessionCreate(
            encounter_id=encounter_id,
            patient=PatientIn(
                id=patient.id, name=patient.name, nhi=patient.nhi, birth_date=patient.birth_date
            ),
            practitioner_id=who.practitioner_id,
        )
    except ValidationError:
        raise SmartRefused("ehr-error", issuer=iss) from None
    try:
        session, created = await create_session(uow, rt, who, data)
    except (Conflict, NotPermitted):
        raise SmartRefused("encounter-held", issuer=iss) from None
    tokens = {"access_token": token.access_token}
    if token.refresh_token:
        tokens["refresh_token"] = token.refresh_token
    fhir_user = checked.claims.get("fhirUser")
    await repository.put_grant(
        uow.session,
        SmartGrant(
            session_id=session.id,
            issuer=iss,
            fhir_base=iss,
            token_endpoint=checked.pending.server.token_endpoint,
            client_id=rt.settings.smart_client_id,
            scope=token.scope or checked.pending.scope,
            fhir_user=user_of(checked) if isinstance(fhir_user, str) and fhir_user else None,
            sealed_tokens=seal(rt.settings.secret_key, GRANT_PURPOSE, tokens),
            access_expires_at=now + timedelta(seconds=token.expires_in) if token.expires_in else None,
            created_at=now,
            updated_at=now,
        ),
    )
    audit.record(
        uow.session,
        who,
        "launch.accepted",
        session_id=session.id,
        resumed=not created,
        method="smart",
        issuer=iss,
        standalone=checked.pending.launch is None,
    )
    return Accepted(session=session, clinician=who, resumed=not created)
