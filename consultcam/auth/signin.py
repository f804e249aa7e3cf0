"""Server-side clinician sign-in sessions: what a browser's sign-in cookie names, and how it ends.

A sign-in starts when a clinician proves who they are in a browser: the embedded login link or form
(`method` "embedded", proven by CONSULTCAM_CLINICIAN_TOKEN), an identity provider's authorization code
flow (`method` "oidc", issue 13), a Medtech ALEX Apps launch (`method` "medtech", `consultcam.launch`),
which binds the sign-in to the launch's provider and facility, or a SMART App Launch (`method` "smart",
`consultcam.launch.smart`), bound to the launching user's Practitioner at that EHR (its `iss`). The browser
gets an HttpOnly, SameSite=Lax cookie carrying only a 256-bit random value; the database keeps its SHA-256
with the clinician, when it was made and last used, its idle and absolute expiry, and when it ended. So:

- `POST /logout` ends it on the server (`end`): the same cookie replayed afterwards, from any browser and on
  any web process, is refused like no cookie at all. A new sign-in in the same browser ends the old one.
- It counts only while the server still trusts what it was proven against (`binding`): changing
  CONSULTCAM_CLINICIAN_TOKEN signs every browser out; with OIDC on, embedded sign-ins count only when
  CONSULTCAM_OIDC_ALLOW_EMBEDDED_TOKEN is true.
- It ends by itself after CONSULTCAM_SIGNIN_IDLE_MINUTES without a request, and CONSULTCAM_SIGNIN_MAX_HOURS
  after it began whatever the use; the sweeper deletes what no longer counts (`sweep`).

The cookie's value is a bearer secret: never logged, never in the audit trail (which names the sign-in by
its row id). Functions take the unit of work (they never commit), except `touch`, which runs on its own
after a response (see `consultcam.deps`), and `sweep`, which owns its transaction. Their SQL is
`consultcam.auth.repository`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, cast

from consultcam import audit
from consultcam.auth import repository
from consultcam.auth.principals import Clinician, hash_secret, new_secret
from consultcam.config import Settings
from consultcam.db import Transactions, UnitOfWork
from consultcam.models import SignInSession, utcnow
from consultcam.runtime import Runtime

log = logging.getLogger(__name__)

Method = Literal["embedded", "oidc", "medtech", "smart"]
#: Why a sign-in ended: the clinician signed out, or signed in again in the same browser.
EndReason = Literal["signed-out", "replaced"]
#: A sign-in's last-seen time is written at most this often (one small write per browser per minute).
TOUCH_EVERY = timedelta(seconds=60)
#: What a cookie made by `start` looks like (`secrets.token_urlsafe(32)`); anything else is not looked up.
_COOKIE_SHAPE = re.compile(r"[A-Za-z0-9_-]{32,128}")


def embedded_token_accepted(settings: Settings) -> bool:
    """The embedded clinician token (and sign-ins made with it) counts: embedded mode, or OIDC with
    CONSULTCAM_OIDC_ALLOW_EMBEDDED_TOKEN true."""
    return not settings.oidc_enabled or settings.oidc_allow_embedded_token


def binding(settings: Settings, method: Method) -> str | None:
    """The fingerprint a sign-in made now by `method` carries, or None when the server accepts no sign-in
    of that kind. SHA-256 hex of what the method trusts (the embedded token; the OIDC issuer and audience;
    the ALEX server and client a Medtech launch was decoded by; the SMART issuers and client id a SMART
    launch was authorized under), domain-separated; the token itself is never stored."""
    if method == "embedded":
        if not (settings.clinician_token and embedded_token_accepted(settings)):
            return None
        material = f"consultcam:signin:embedded\0{settings.clinician_token}"
    elif method == "medtech":
        if not settings.emr_url.lower().startswith("alex+") or not settings.alex_client_id:
            return None
        material = f"consultcam:signin:medtech\0{settings.emr_url}\0{settings.alex_client_id}"
    elif method == "smart":
        if not settings.smart_issuers or not settings.smart_client_id:
            return None
        issuers = "\0".join(sorted(settings.smart_issuers))
        material = f"consultcam:signin:smart\0{settings.smart_client_id}\0{issuers}"
    else:
        if not settings.oidc_enabled:
            return None
        material = f"consultcam:signin:oidc\0{settings.oidc_issuer}\0{settings.oidc_audience}"
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class SignIn:
    """A sign-in that counts: its row `id`, the clinician it proves (with `credential_id` = `id`), and
    whether its last-seen time is due to be written (`touch_due`)."""

    id: str
    clinician: Clinician
    touch_due: bool


async def start(
    uow: UnitOfWork,
    settings: Settings,
    clinician: Clinician,
    method: Method,
    *,
    user_agent: str = "",
    sealed_id_token: str | None = None,
) -> tuple[str, Clinician]:
    """Begin a sign-in for `clinician`, proven by `method`. Returns (the cookie's value, shown only now; the
    clinician with its `credential_id`). Audited as `signin.started`. `sealed_id_token`: an OIDC sign-in's
    ID Token, sealed by the caller (`consultcam.auth.oidc_signin`), kept for logout's id_token_hint.

    Raises ValueError when the server accepts no sign-in by `method` (the caller checks the proof first).
    """
    fingerprint = binding(settings, method)
    if fingerprint is None:
        raise ValueError(f"sign-in by {method} is not accepted on this server")
    now = utcnow()
    secret = new_secret()
    row = await repository.add(
        uow.session,
        SignInSession(
            token_hash=hash_secret(secret),
            method=method,
            binding=fingerprint,
            subject=clinician.id,
            name=clinician.name,
            practitioner_id=clinician.practitioner_id,
            facility_id=clinician.facility_id,
            fhir_user=clinician.fhir_user,
            launch_issuer=clinician.launch_issuer,
            sealed_id_token=sealed_id_token,
            user_agent=user_agent[:300],
            created_at=now,
            last_seen_at=now,
            idle_expires_at=_idle_end(now, now + max_age(settings), settings),
            expires_at=now + max_age(settings),
        ),
    )
    signed_in = dataclasses.replace(clinician, credential_id=row.id)
    audit.record(uow.session, signed_in, "signin.started", signin_id=row.id, method=method)
    return secret, signed_in


def max_age(settings: Settings) -> timedelta:
    """The absolute lifetime of a sign-in (CONSULTCAM_SIGNIN_MAX_HOURS): also the cookie's Max-Age."""
    return timedelta(hours=settings.signin_max_hours)


def _idle_end(now: datetime, expires_at: datetime, settings: Settings) -> datetime:
    return min(now + timedelta(minutes=settings.signin_idle_minutes), expires_at)


async def authenticate(uow: UnitOfWork, settings: Settings, cookie: str) -> SignIn | None:
    """The sign-in a cookie's value names, if it still counts: not ended, neither idle nor absolute expiry
    passed, its binding still what the server trusts for its method, and, for a SMART sign-in, its EHR known
    (`launch_issuer`; migration 0008). Otherwise None (the caller answers as to a request with no cookie).
    Read-only: see `touch`."""
    if not _COOKIE_SHAPE.fullmatch(cookie):
        return None
    row = await repository.by_token_hash(uow.session, hash_secret(cookie))
    now = utcnow()
    if row is None or row.ended_at is not None or min(row.idle_expires_at, row.expires_at) <= now:
        return None
    if row.binding != binding(settings, cast(Method, row.method)):  # the column holds a `Method`
        return None
    if row.method == "smart" and row.launch_issuer is None:
        return None  # made before migration 0008: bound to a Practitioner of no one EHR, so it must not count
    return SignIn(
        id=row.id,
        clinician=Clinician(
            id=row.subject,
            name=row.name,
            credential_id=row.id,
            practitioner_id=row.practitioner_id,
            facility_id=row.facility_id,
            fhir_user=row.fhir_user,
            launch_issuer=row.launch_issuer,
        ),
        touch_due=now - row.last_seen_at >= TOUCH_EVERY,
    )


async def touch(rt: Runtime, signin_id: str) -> None:
    """Record that sign-in `signin_id` was used now, pushing its idle expiry on (never past its absolute
    expiry), in a transaction of its own. Run after the response (`BackgroundTasks`), so a request never
    holds two connections, nor, on SQLite, waits for its own write lock. Failures are logged, not raised."""
    now = utcnow()
    try:
        async with rt.unit_of_work() as uow:
            row = await repository.get(uow.session, signin_id)
            if row is not None and row.ended_at is None and row.expires_at > now:
                row.last_seen_at = now
                row.idle_expires_at = _idle_end(now, row.expires_at, rt.settings)
    except Exception:
        log.exception("sign-in %s: last-seen time not recorded", signin_id)


async def sealed_id_token(uow: UnitOfWork, cookie: str) -> str | None:
    """The sealed ID Token kept with the live sign-in a cookie's value names (an OIDC sign-in), else
    None: read before `end`, for RP-Initiated Logout's id_token_hint."""
    if not _COOKIE_SHAPE.fullmatch(cookie):
        return None
    row = await repository.by_token_hash(uow.session, hash_secret(cookie))
    return row.sealed_id_token if row is not None and row.ended_at is None else None


async def end(uow: UnitOfWork, rt: Runtime, cookie: str, reason: EndReason) -> str | None:
    """End the sign-in a cookie's value names, at once and for every web process: afterwards the same
    value is refused everywhere. Returns its id, or None when it names no live sign-in (already ended,
    expired, or never made: ending is idempotent). Audited as `signin.ended`; after the commit,
    `credential_ended` runs."""
    if not _COOKIE_SHAPE.fullmatch(cookie):
        return None
    now = utcnow()
    ended = await repository.end_live(uow.session, hash_secret(cookie), now, reason)
    if ended is None:
        return None
    clinician = Clinician(id=ended.subject, name=ended.name, credential_id=ended.id)
    audit.record(uow.session, clinician, "signin.ended", signin_id=ended.id, reason=reason)

    async def _after() -> None:
        await credential_ended(rt, ended.id)

    uow.after_commit(_after)
    return str(ended.id)


async def credential_ended(rt: Runtime, credential_id: str) -> None:
    """Runs once a clinician's sign-in `credential_id` has ended and the end is committed (sign-out, or a
    new sign-in in the same browser): the one place where a dead sign-in's effects beyond the database are
    undone. This is where the event streams the credential opened (`Clinician.credential_id` when the
    stream was authorised) are ended, on every web process, by the event streams' own call; the database
    already refuses the credential for every new request."""
    log.info("sign-in %s ended", credential_id)
    await rt.bus.end_streams(credential_id=credential_id)


async def sweep(tx: Transactions, now: datetime | None = None) -> int:
    """The sign-ins' sweep step (`retention.sweeper`), in a transaction of its own: delete the sign-ins that
    no longer count by time or by sign-out (ended, idle past, or past their absolute expiry); returns how
    many. A sign-in whose binding is stale (the token changed) is refused on use and deleted once it
    expires: a sweeper running with other settings must not delete live ones."""
    now = now or utcnow()
    async with tx() as uow:
        deleted = await repository.delete_dead(uow.session, now)
    return deleted
