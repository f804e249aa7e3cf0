"""FastAPI dependencies: the runtime, the request's unit of work, and who is calling.

`UoWDep` ends before the response is sent (`scope="function"`), so a client never sees a 2xx for work
that then fails to commit, and events go out only after the commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from consultcam.auth import (
    CLINICIAN_COOKIE,
    EMBEDDED_CLINICIAN,
    PHONE_COOKIE,
    Clinician,
    Phone,
    Principal,
    bearer_token,
    is_clinician_token,
    verify_clinician_cookie,
)
from consultcam.db import UnitOfWork
from consultcam.errors import NotAuthenticated, NotPermitted, ResourceNotFound
from consultcam.runtime import Runtime
from consultcam.sessions.service import authenticate_phone


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_uow(rt: RuntimeDep) -> AsyncIterator[UnitOfWork]:
    async with rt.unit_of_work() as uow:
        yield uow


async def get_read_uow(rt: RuntimeDep) -> AsyncIterator[UnitOfWork]:
    async with rt.unit_of_work(writes=False) as uow:
        yield uow


UoWDep = Annotated[UnitOfWork, Depends(get_uow, scope="function")]
ReadUoWDep = Annotated[UnitOfWork, Depends(get_read_uow, scope="function")]


def clinician_from_request(request: Request, rt: Runtime) -> Clinician | None:
    """The clinician proven by a Bearer token or the signed cookie, else None."""
    token = rt.settings.clinician_token
    bearer = bearer_token(request.headers.get("authorization"))
    if bearer and is_clinician_token(bearer, token):
        return EMBEDDED_CLINICIAN
    cookie = request.cookies.get(CLINICIAN_COOKIE)
    if cookie and verify_clinician_cookie(cookie, rt.settings.secret_key, token):
        return EMBEDDED_CLINICIAN
    return None


async def get_clinician(request: Request, rt: RuntimeDep) -> Clinician:
    """Only a clinician passes: a paired phone gets 403 (phones never commit or edit); no credential, or one
    that is neither the clinician's nor a live phone credential (a wrong token), 401 (RFC 6750 §3.1)."""
    clinician = clinician_from_request(request, rt)
    if clinician is not None:
        return clinician
    token = bearer_token(request.headers.get("authorization")) or request.cookies.get(PHONE_COOKIE)
    if token:
        async with rt.unit_of_work(writes=False) as uow:
            try:
                await authenticate_phone(uow, token, touch=False)
            except NotAuthenticated as exc:
                raise NotAuthenticated(
                    "The credential sent is not valid: a wrong clinician token, or a phone that is no longer "
                    "paired. Sign in again with the login link that `consultcam serve` printed.",
                    error="InvalidCredential",
                ) from exc
        raise NotPermitted("Only the clinician at the desktop can do this.", error="ClinicianOnly")
    raise NotAuthenticated(
        "Sign in first: open the login link that `consultcam serve` printed, or send "
        "Authorization: Bearer <clinician token>."
    )


async def _principal(request: Request, rt: Runtime, uow: UnitOfWork, *, touch: bool) -> Principal:
    clinician = clinician_from_request(request, rt)
    if clinician is not None:
        return clinician
    token = bearer_token(request.headers.get("authorization")) or request.cookies.get(PHONE_COOKIE)
    if not token:
        raise NotAuthenticated("Sign in first (clinician), or scan the session's QR code (phone).")
    return await authenticate_phone(uow, token, touch=touch)


async def get_principal(request: Request, rt: RuntimeDep, uow: UoWDep) -> Principal:
    """A clinician or a paired phone (in a writing request)."""
    return await _principal(request, rt, uow, touch=True)


async def get_read_principal(request: Request, rt: RuntimeDep, uow: ReadUoWDep) -> Principal:
    """A clinician or a paired phone (in a read-only request)."""
    return await _principal(request, rt, uow, touch=False)


ClinicianDep = Annotated[Clinician, Depends(get_clinician)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
ReadPrincipalDep = Annotated[Principal, Depends(get_read_principal)]


def authorise_session(principal: Principal, session_id: str) -> None:
    """A phone may touch only its own session: any other answers 404, as if it did not exist."""
    if isinstance(principal, Phone) and principal.session_id != session_id:
        raise ResourceNotFound("No such capture session.", error="SessionNotFound")
