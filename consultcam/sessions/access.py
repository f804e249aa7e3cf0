"""Who may reach a capture session: the one rule, for every call and every open event stream (issue 12).

- A paired phone reaches only the session it was paired with.
- A clinician whose sign-in is bound by an EMR launch (`Clinician.bound`, `consultcam.auth.signin`):
  method "medtech" to a provider and facility (no issuer), or "smart" to the fhirUser's Practitioner at one
  EHR (no facility; `launch_issuer` the `iss` as listed in CONSULTCAM_SMART_ISSUERS), reaches only the
  capture sessions whose `practitioner_id`, `facility_id` AND `launch_issuer` all equal the sign-in's
  (exact strings, None equal only to None). DESIGN.md, "Launch and sign-in": the launch signs the GP in
  "with a session cookie bound to that provider and facility". The issuer keeps EHRs apart: two EHRs in
  CONSULTCAM_SMART_ISSUERS may both have a Practitioner/7, who are two people (migration 0008, which gives
  a session from before it the issuer of its launch's grant).
- Any other clinician (the embedded token, an OIDC sign-in or bearer) reaches every session.

A session out of reach answers 404 `SessionNotFound` with the same words as one that does not exist, so a
caller learns nothing of another provider's sessions (not even that the id exists). The HTTP side applies
it through `consultcam.deps` (every route under `/api/sessions/{session_id}` takes one of its session-scoped
dependencies; `tests/security/test_launch_binding.py` walks them all), and the event stream re-applies it
before every batch (`consultcam.events.endpoints`).

Opening a session (`bind_new_session`, from `consultcam.sessions.service.create_session`): a bound clinician's
session gets their provider and facility, and their issuer (`Clinician.launch_issuer`, not a request field:
the request cannot name one); a request naming another provider or facility is 403 `PractitionerMismatch` or
`FacilityMismatch`. Resuming the encounter's open session is refused (409 `EncounterHeldElsewhere`) when that
session is out of the clinician's reach: it is never handed over (`require_resumable`).
"""

from __future__ import annotations

import re

from consultcam.auth.principals import Clinician, Phone, Principal
from consultcam.db import UnitOfWork
from consultcam.errors import Conflict, NotPermitted, ResourceNotFound
from consultcam.models import CaptureSession
from consultcam.sessions import repository
from consultcam.sessions.schemas import SessionCreate


def session_not_found() -> ResourceNotFound:
    """The answer for a session the caller may not reach, the same as for one that does not exist."""
    return ResourceNotFound(
        "No such capture session: it may have been committed, cancelled or expired, or it is not yours. "
        "Start a new one from the desktop.",
        error="SessionNotFound",
    )


def reaches(
    clinician: Clinician, practitioner_id: str | None, facility_id: str | None, launch_issuer: str | None
) -> bool:
    """Whether `clinician` may reach a session of this practitioner, facility and launch issuer (the
    session's three columns, `repository.session_owner`): always when the sign-in is unbound; when bound,
    only when all three equal the sign-in's (exact strings; None equals only None)."""
    if not clinician.bound:
        return True
    return (
        practitioner_id == clinician.practitioner_id
        and facility_id == clinician.facility_id
        and launch_issuer == clinician.launch_issuer
    )


async def authorise(uow: UnitOfWork, principal: Principal, session_id: str) -> None:
    """Raise 404 `SessionNotFound` (`session_not_found`) unless `principal` may reach session `session_id`:
    a phone only its own (decided from the credential, no query); a bound clinician only their provider's
    at their facility or EHR (one indexed read of the session's three columns in `uow`, which may be
    read-only); an unbound clinician every session (no query: nothing changes for them)."""
    if isinstance(principal, Phone):
        if principal.session_id != session_id:
            raise session_not_found()
        return
    if not principal.bound:
        return
    owner = await repository.session_owner(uow.session, session_id)
    if owner is None or not reaches(principal, *owner):
        raise session_not_found()


_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def fhir_practitioner_id(fhir_user: str | None) -> str | None:
    """The Practitioner id of an OIDC `fhirUser` claim ("Practitioner/123" or an absolute URL ending so,
    SMART App Launch 2.x §"fhirUser"), or None for anything else (a Patient, a RelatedPerson, junk)."""
    if not fhir_user:
        return None
    parts = fhir_user.rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] != "Practitioner" or not _FHIR_ID.fullmatch(parts[-1]):
        return None
    return parts[-1]


def bind_new_session(clinician: Clinician, data: SessionCreate) -> SessionCreate:
    """`POST /api/sessions` as `clinician`: for a bound sign-in, `data` with the sign-in's practitioner and
    facility (what the request left out defaults to them); unbound, `data` unchanged except that a missing
    practitioner defaults to the OIDC sign-in's `fhirUser` Practitioner (`fhir_practitioner_id`).

    Raises NotPermitted (403 `PractitionerMismatch`, `FacilityMismatch`) when a bound sign-in's request names
    another practitioner or facility: a launch signs in one GP at one practice, who may not open sessions
    filed under someone else."""
    if not clinician.bound:
        practitioner = fhir_practitioner_id(clinician.fhir_user)
        if data.practitioner_id is None and practitioner is not None:
            return data.model_copy(update={"practitioner_id": practitioner})
        return data
    if data.practitioner_id is not None and data.practitioner_id != clinician.practitioner_id:
        raise NotPermitted(
            f"You were signed in by your patient record system's launch as provider "
            f"{clinician.practitioner_id or '(none)'}, so a session cannot be opened for provider "
            f"{data.practitioner_id}. Leave practitionerId out (it defaults to yours), or have that provider "
            "open consultcam from the patient record system.",
            error="PractitionerMismatch",
        )
    if data.facility_id is not None and data.facility_id != clinician.facility_id:
        raise NotPermitted(
            f"You were signed in by your patient record system's launch at facility "
            f"{clinician.facility_id or '(none)'}, so a session cannot be opened for facility "
            f"{data.facility_id}. Leave facilityId out (it defaults to yours), or open consultcam from the "
            "patient record system at that practice.",
            error="FacilityMismatch",
        )
    return data.model_copy(
        update={"practitioner_id": clinician.practitioner_id, "facility_id": clinician.facility_id}
    )


def require_resumable(clinician: Clinician, existing: CaptureSession) -> None:
    """Raise Conflict (409 `EncounterHeldElsewhere`) when the encounter's open session is out of
    `clinician`'s reach (`reaches`): it belongs to another provider, facility or EHR (the same Practitioner
    id at another of CONSULTCAM_SMART_ISSUERS is another provider) and must not be handed to
    this sign-in. The answer names neither the session, nor its patient, nor whose it is; it only says the
    encounter is taken (the one open session per encounter is a database rule, so it cannot be hidden)."""
    if not reaches(clinician, existing.practitioner_id, existing.facility_id, existing.launch_issuer):
        raise Conflict(
            "This encounter already has an open capture session of another provider or practice, which "
            "your sign-in cannot take over. Ask them to commit or cancel it, or open consultcam from your "
            "patient record system again for your own patient.",
            error="EncounterHeldElsewhere",
        )
