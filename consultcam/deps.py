"""FastAPI dependencies: the runtime, the request's unit of work, who is calling, and whether they may act
on the path's capture session. Every endpoint under `/api/sessions/{session_id}` takes one session-scoped
dependency: `SessionPrincipalDep` (a clinician or that session's phone) or `SessionClinicianDep` (clinician
only), each also in a read-only and an outside-transaction form. They apply the one rule of who reaches a
session (`consultcam.sessions.access`): a phone only its own, a clinician signed in by a Medtech launch only
the sessions of their provider at their facility, any other clinician every session; out of reach is 404
`SessionNotFound`, as if the session did not exist. `tests/security/test_launch_binding.py` walks every such
route, so a new one cannot skip it.

`UoWDep` ends before the response is sent (`scope="function"`), so a client never sees a 2xx for work
that then fails to commit, and events go out only after the commit.

Who is calling, in order (`authenticate_clinician`, then the phone credential):

- OIDC on (`CONSULTCAM_OIDC_ISSUER` and `_AUDIENCE`) and a JWT-shaped bearer (three base64url segments):
  verified by `consultcam.auth.oidc`; a refused token is 401 `InvalidToken` with
  `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3.1), an unreachable issuer 503. It is never
  tried as a phone credential (those contain no dots).
- The embedded clinician token as a bearer: always in embedded mode; with OIDC on only when
  `CONSULTCAM_OIDC_ALLOW_EMBEDDED_TOKEN` is true (default false: a production deployment must not keep a
  static master token).
- The sign-in cookie: a server-side sign-in session that still counts (`consultcam.auth.signin`); the
  `Clinician` carries its id as `credential_id`. Its last-seen time is written after the response
  (`BackgroundTasks`), at most once a minute, in a transaction of its own.
- Anything else is tried as a phone credential (bearer or cookie): a live one is a `Phone` (403
  `ClinicianOnly` where only a clinician may act), an unknown one 401.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import BackgroundTasks, Depends, Request

from consultcam.auth import signin
from consultcam.auth.oidc import OIDCVerifier, looks_like_jwt
from consultcam.auth.oidc_login import OIDCLogin
from consultcam.auth.principals import (
    CLINICIAN_COOKIE,
    EMBEDDED_CLINICIAN,
    PHONE_COOKIE,
    Clinician,
    Principal,
    bearer_token,
    is_clinician_token,
)
from consultcam.auth.signin import embedded_token_accepted
from consultcam.config import Settings
from consultcam.db import UnitOfWork
from consultcam.errors import NotAuthenticated, NotPermitted
from consultcam.runtime import Runtime
from consultcam.sessions import access
from consultcam.sessions.service import authenticate_phone


def get_runtime(request: Request) -> Runtime:
    """The app's runtime (`app.state.runtime`, set by `create_app`)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_uow(rt: RuntimeDep) -> AsyncIterator[UnitOfWork]:
    async with rt.unit_of_work() as uow:
        yield uow


async def get_read_uow(rt: RuntimeDep) -> AsyncIterator[UnitOfWork]:
    async with rt.unit_of_work(writes=False) as uow:
        yield uow


UoWDep = Annotated[UnitOfWork, Depends(get_uow, scope="function")]
ReadUoWDep = Annotated[UnitOfWork, Depends(get_read_uow, scope="function")]


def oidc_verifier(request: Request, rt: Runtime) -> OIDCVerifier | None:
    """The app's OIDC verifier, made at first use and kept on `app.state` so every request shares its JWKS
    cache; None when OIDC is not configured."""
    if not rt.settings.oidc_enabled:
        return None
    verifier: OIDCVerifier | None = getattr(request.app.state, "oidc_verifier", None)
    if verifier is None:
        verifier = request.app.state.oidc_verifier = OIDCVerifier.from_settings(rt.settings)
    return verifier


def oidc_login(request: Request, rt: Runtime) -> OIDCLogin | None:
    """The app's OIDC sign-in client (browser sign-in by the authorization code flow), made at first use
    and kept on `app.state` so every request shares its discovery and key cache; None when
    CONSULTCAM_OIDC_CLIENT_ID is not set."""
    if not rt.settings.oidc_login_enabled:
        return None
    login: OIDCLogin | None = getattr(request.app.state, "oidc_login", None)
    if login is None:
        login = request.app.state.oidc_login = OIDCLogin.from_settings(rt.settings)
    return login


async def _from_signin(
    request: Request, rt: Runtime, uow: UnitOfWork | None, background: BackgroundTasks | None
) -> Clinician | None:
    """The clinician of the request's sign-in cookie when its sign-in still counts, else None; schedules
    the sign-in's last-seen write after the response when one is due."""
    cookie = request.cookies.get(CLINICIAN_COOKIE)
    if not cookie:
        return None
    if uow is None:
        async with rt.unit_of_work(writes=False) as own:
            found = await signin.authenticate(own, rt.settings, cookie)
    else:
        found = await signin.authenticate(uow, rt.settings, cookie)
    if found is None:
        return None
    if found.touch_due and background is not None:
        background.add_task(signin.touch, rt, found.id)
    return found.clinician


async def authenticate_clinician(
    request: Request,
    rt: Runtime,
    uow: UnitOfWork | None = None,
    background: BackgroundTasks | None = None,
) -> Clinician | None:
    """The clinician proven by the request (an OIDC bearer JWT, the embedded token as a bearer, or the
    sign-in cookie), else None. The sign-in is looked up in `uow` (the request's, when it has one) or in a
    read-only transaction of its own; `background` gets the sign-in's last-seen write.

    Raises `consultcam.auth.oidc.InvalidToken` (401) when OIDC is on and a JWT-shaped bearer fails
    verification, and `IdentityProviderUnavailable` (503) when the issuer's keys cannot be fetched.
    """
    bearer = bearer_token(request.headers.get("authorization"))
    embedded = embedded_token_accepted(rt.settings)
    if bearer and embedded and is_clinician_token(bearer, rt.settings.clinician_token):
        return EMBEDDED_CLINICIAN
    verifier = oidc_verifier(request, rt)
    if verifier is not None and bearer and looks_like_jwt(bearer):
        return await verifier.verify(bearer)
    return await _from_signin(request, rt, uow, background)


def _sign_in_hint(settings: Settings) -> str:
    if settings.oidc_enabled:
        hint = (
            "send Authorization: Bearer <token> with a token from your practice's identity provider "
            f"({settings.oidc_issuer})"
        )
        if not settings.oidc_allow_embedded_token:
            hint += "; the embedded clinician token is not accepted on this server"
        return hint
    return (
        "open the login link that `consultcam serve` printed, or send Authorization: Bearer <clinician token>"
    )


async def _require_clinician(
    request: Request, rt: Runtime, uow: UnitOfWork | None, background: BackgroundTasks | None
) -> Clinician:
    """The clinician proven by the request, looked up in `uow` (or in a read-only transaction of its own);
    see `get_clinician` for the refusals."""
    clinician = await authenticate_clinician(request, rt, uow, background)
    if clinician is not None:
        return clinician
    token = bearer_token(request.headers.get("authorization")) or request.cookies.get(PHONE_COOKIE)
    if token:
        try:
            if uow is None:
                async with rt.unit_of_work(writes=False) as own:
                    await authenticate_phone(own, token, touch=False)
            else:
                await authenticate_phone(uow, token, touch=False)
        except NotAuthenticated as exc:
            raise NotAuthenticated(
                "The credential sent is not valid: a wrong clinician token, or a phone that is no longer "
                f"paired. Sign in again: {_sign_in_hint(rt.settings)}.",
                error="InvalidCredential",
            ) from exc
        raise NotPermitted("Only the clinician at the desktop can do this.", error="ClinicianOnly")
    raise NotAuthenticated(f"Sign in first as the clinician: {_sign_in_hint(rt.settings)}.")


async def get_clinician(request: Request, rt: RuntimeDep, background: BackgroundTasks) -> Clinician:
    """Only a clinician passes: a paired phone gets 403 (phones never commit or edit); no credential, or one
    that is neither the clinician's nor a live phone credential (a wrong token, a signed-out cookie), 401
    (RFC 6750 §3.1); a refused OIDC token 401 `InvalidToken`; an unreachable OIDC issuer 503. For calls
    that are not about one capture session (`POST /api/sessions`); those under `/api/sessions/{session_id}`
    take `SessionClinicianDep` or one of its forms."""
    return await _require_clinician(request, rt, None, background)


async def _principal(
    request: Request, rt: Runtime, uow: UnitOfWork, background: BackgroundTasks, *, touch: bool
) -> Principal:
    clinician = await authenticate_clinician(request, rt, uow, background)
    if clinician is not None:
        return clinician
    token = bearer_token(request.headers.get("authorization")) or request.cookies.get(PHONE_COOKIE)
    if not token:
        raise NotAuthenticated("Sign in first (clinician), or scan the session's QR code (phone).")
    return await authenticate_phone(uow, token, touch=touch)


async def get_principal(
    request: Request, rt: RuntimeDep, uow: UoWDep, background: BackgroundTasks
) -> Principal:
    """A clinician or a paired phone (in a writing request)."""
    return await _principal(request, rt, uow, background, touch=True)


async def get_read_principal(
    request: Request, rt: RuntimeDep, uow: ReadUoWDep, background: BackgroundTasks
) -> Principal:
    """A clinician or a paired phone (in a read-only request)."""
    return await _principal(request, rt, uow, background, touch=False)


async def get_principal_outside_transaction(
    request: Request, rt: RuntimeDep, background: BackgroundTasks
) -> Principal:
    """A clinician or a paired phone, checked in a transaction of its own that ends at once: for endpoints
    whose service runs its own transactions (image registration), so a request never holds one pooled
    connection while waiting for another (a pool-exhaustion deadlock under load)."""
    async with rt.unit_of_work(writes=False) as uow:
        return await _principal(request, rt, uow, background, touch=False)


ClinicianDep = Annotated[Clinician, Depends(get_clinician)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
ReadPrincipalDep = Annotated[Principal, Depends(get_read_principal)]
StandalonePrincipalDep = Annotated[Principal, Depends(get_principal_outside_transaction)]


# -- one capture session: `{session_id}` in the path -----------------------------------------------------


async def authorise_session(uow: UnitOfWork, principal: Principal, session_id: str) -> None:
    """The caller may act on session `session_id`, or 404 `SessionNotFound` as if it did not exist: a phone
    reaches only its own session, a clinician whose sign-in is bound to a provider and facility (a Medtech
    launch) only theirs, any other clinician every session (`consultcam.sessions.access.authorise`, which
    reads the session's provider and facility in `uow` for a bound clinician only). The event stream
    calls it again before every batch it sends."""
    await access.authorise(uow, principal, session_id)


async def get_session_principal(session_id: str, uow: UoWDep, principal: PrincipalDep) -> Principal:
    """The caller (as `get_principal`, in the request's writing transaction), authorised for the path's
    `{session_id}` (`authorise_session`)."""
    await authorise_session(uow, principal, session_id)
    return principal


async def get_read_session_principal(
    session_id: str, uow: ReadUoWDep, principal: ReadPrincipalDep
) -> Principal:
    """The caller (as `get_read_principal`, in a read-only request), authorised for the path's
    `{session_id}`."""
    await authorise_session(uow, principal, session_id)
    return principal


async def get_standalone_session_principal(
    session_id: str, request: Request, rt: RuntimeDep, background: BackgroundTasks
) -> Principal:
    """The caller (as `get_principal_outside_transaction`), authorised for the path's `{session_id}`, both
    in one read-only transaction of its own that ends at once."""
    async with rt.unit_of_work(writes=False) as uow:
        principal = await _principal(request, rt, uow, background, touch=False)
        await authorise_session(uow, principal, session_id)
    return principal


async def get_session_clinician(
    session_id: str, request: Request, rt: RuntimeDep, uow: UoWDep, background: BackgroundTasks
) -> Clinician:
    """Only a clinician (as `get_clinician`, looked up in the request's writing transaction), authorised
    for the path's `{session_id}` (`authorise_session`: a bound sign-in reaches only its own sessions)."""
    clinician = await _require_clinician(request, rt, uow, background)
    await authorise_session(uow, clinician, session_id)
    return clinician


async def get_read_session_clinician(
    session_id: str, request: Request, rt: RuntimeDep, uow: ReadUoWDep, background: BackgroundTasks
) -> Clinician:
    """`get_session_clinician` in a read-only request."""
    clinician = await _require_clinician(request, rt, uow, background)
    await authorise_session(uow, clinician, session_id)
    return clinician


async def get_standalone_session_clinician(
    session_id: str, request: Request, rt: RuntimeDep, background: BackgroundTasks
) -> Clinician:
    """`get_session_clinician` in a read-only transaction of its own that ends at once, for endpoints whose
    service runs its own transactions (download, ZIP)."""
    async with rt.unit_of_work(writes=False) as uow:
        clinician = await _require_clinician(request, rt, uow, background)
        await authorise_session(uow, clinician, session_id)
    return clinician


#: For every endpoint under `/api/sessions/{session_id}` (tests/security/test_launch_binding.py checks that
#: each takes one): a clinician, or the phone paired with that session (any other phone, and a bound
#: clinician outside their provider and facility: 404), in the request's writing transaction, its read-only
#: one, or a transaction of its own (for services that open their own).
SessionPrincipalDep = Annotated[Principal, Depends(get_session_principal)]
ReadSessionPrincipalDep = Annotated[Principal, Depends(get_read_session_principal)]
StandaloneSessionPrincipalDep = Annotated[Principal, Depends(get_standalone_session_principal)]
#: The clinician-only forms (a phone: 403 `ClinicianOnly`).
SessionClinicianDep = Annotated[Clinician, Depends(get_session_clinician)]
ReadSessionClinicianDep = Annotated[Clinician, Depends(get_read_session_clinician)]
StandaloneSessionClinicianDep = Annotated[Clinician, Depends(get_standalone_session_clinician)]

#: The dependencies that authorise a caller for the path's `{session_id}`.
SESSION_AUTHORISERS = (
    get_session_principal,
    get_read_session_principal,
    get_standalone_session_principal,
    get_session_clinician,
    get_read_session_clinician,
    get_standalone_session_clinician,
)
