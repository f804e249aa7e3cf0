"""HTTP endpoints for capture sessions and pairing (DESIGN.md, "HTTP API")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from consultcam import audit
from consultcam.auth.principals import PHONE_COOKIE, Clinician, Phone
from consultcam.commits import lease as commit_lease
from consultcam.config import WARN_IMAGES
from consultcam.deps import (
    ClinicianDep,
    RuntimeDep,
    SessionClinicianDep,
    SessionPrincipalDep,
    UoWDep,
)
from consultcam.errors import NO_STORE, NotAuthenticated
from consultcam.images.processing.formats import ACCEPTED_CONTENT_TYPES
from consultcam.images.service import list_images
from consultcam.kit.status import SessionStatus
from consultcam.ratelimit import rate_limit
from consultcam.runtime import Runtime
from consultcam.sessions import pairing as pairings
from consultcam.sessions import service
from consultcam.sessions.schemas import (
    CaptureSettings,
    ConsentIn,
    PairingOut,
    PairRequest,
    PairResponse,
    SessionCreate,
    SessionOut,
)

router = APIRouter(prefix="/api", tags=["sessions"])


def public_base_url(request: Request, rt: Runtime) -> str:
    """The base URL for QR codes: `CONSULTCAM_PUBLIC_URL`, else the URL this request came to."""
    return rt.settings.public_url or str(request.base_url).rstrip("/")


@router.post("/sessions", status_code=status.HTTP_201_CREATED, response_model=SessionOut)
async def create_session(
    body: SessionCreate,
    request: Request,
    response: Response,
    rt: RuntimeDep,
    uow: UoWDep,
    clinician: ClinicianDep,
) -> SessionOut:
    """Open a capture session for an encounter (or return its open one, 200) with a fresh QR code."""
    session, created = await service.create_session(uow, rt, clinician, body)
    pairing = await pairings.issue_pairing(uow, rt, clinician, session, public_base_url(request, rt))
    if not created:
        response.status_code = status.HTTP_200_OK
    count = await service.live_image_count(uow, session.id)
    return service.session_out(
        session,
        rt.settings,
        image_count=count,
        pairing=pairing,
        phone=await service.current_phone(uow, session.id),
    )


@router.post("/sessions/{session_id}/pairing", status_code=status.HTTP_201_CREATED, response_model=PairingOut)
async def new_pairing(
    session_id: str, request: Request, rt: RuntimeDep, uow: UoWDep, clinician: SessionClinicianDep
) -> PairingOut:
    """A new QR code; the previous unredeemed one stops working."""
    session = await service.get_session(uow, session_id)
    return await pairings.issue_pairing(uow, rt, clinician, session, public_base_url(request, rt))


@router.get("/sessions/{session_id}", response_model=SessionOut)
async def get_session(
    session_id: str, rt: RuntimeDep, uow: UoWDep, principal: SessionPrincipalDep
) -> SessionOut:
    """The session with its images and the connected phone."""
    session = await service.get_session(uow, session_id)
    await commit_lease.settle(uow, rt, session)  # a commit whose process died shows as interrupted
    images = await list_images(uow, rt, session_id)
    if isinstance(principal, Clinician):
        audit.record(uow.session, principal, "session.viewed", session_id=session_id)
    return service.session_out(
        session,
        rt.settings,
        image_count=len(images),
        images=images,
        phone=await service.current_phone(uow, session_id),
    )


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def cancel_session(
    session_id: str, rt: RuntimeDep, uow: UoWDep, clinician: SessionClinicianDep
) -> Response:
    """Cancel: photos and their objects are deleted, the phone is signed out."""
    session = await service.get_session(uow, session_id)
    # 409 once committed
    await service.end_session(uow, rt, clinician, session, SessionStatus.CANCELLED, "cancelled")
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=NO_STORE)


@router.delete("/sessions/{session_id}/phone", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_phone(
    session_id: str,
    rt: RuntimeDep,
    uow: UoWDep,
    principal: SessionPrincipalDep,
    reason: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """Sign phones out at once: the clinician every phone of the session; a phone only itself, with
    `reason=wrong-patient` (“Not this patient?”). Publishes `phone.revoked` `{phoneId, reason}`."""
    await service.sign_out_phones(uow, rt, principal, session_id, reason)
    response = Response(status_code=status.HTTP_204_NO_CONTENT, headers=NO_STORE)
    if isinstance(principal, Phone):  # the credential is dead: let the browser forget it too
        response.delete_cookie(PHONE_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.put("/sessions/{session_id}/consent", response_model=SessionOut)
async def record_consent(
    session_id: str, body: ConsentIn, rt: RuntimeDep, uow: UoWDep, principal: SessionPrincipalDep
) -> SessionOut:
    """Record the patient's consent to photography (the clinician, or the session's phone); recording again
    replaces it. 409 when the session is not open."""
    session = await service.record_consent(uow, rt, principal, session_id, body)
    return service.session_out(
        session,
        rt.settings,
        image_count=await service.live_image_count(uow, session_id),
        phone=await service.current_phone(uow, session_id),
    )


@router.post(
    "/pair",
    response_model=PairResponse,
    # Counted per client before the body is read or a transaction opened (CONSULTCAM_RATE_LIMIT_PAIR).
    dependencies=[Depends(rate_limit("pair"))],
    responses={429: {"description": "Too many codes tried from this client: wait Retry-After seconds"}},
)
async def pair(
    body: PairRequest, request: Request, response: Response, rt: RuntimeDep, uow: UoWDep
) -> PairResponse:
    """Redeem a QR code's pairing token: the phone gets its credential (also as an HttpOnly cookie). A
    phone still paired with another session leaves it (that desktop gets `phone.revoked`, reason
    "paired-elsewhere"). 429 with Retry-After when the client tried too many codes."""
    current: Phone | None = None
    if request.cookies.get(PHONE_COOKIE):  # a reload, or a phone moving from another session
        try:
            current = await service.authenticate_phone(uow, request.cookies[PHONE_COOKIE], touch=False)
        except NotAuthenticated:
            current = None
    pairing = await pairings.redeem_pairing(
        uow, rt, body.token, user_agent=request.headers.get("user-agent", ""), current=current
    )
    settings = rt.settings
    response.set_cookie(
        PHONE_COOKIE,
        pairing.phone_token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
        max_age=settings.retention_hours * 3600,
    )
    count = await service.live_image_count(uow, pairing.session.id)
    return PairResponse(
        session=service.session_out(pairing.session, settings, image_count=count, phone=pairing.phone),
        phone_token=pairing.phone_token,
        capture_settings=CaptureSettings(
            max_edge_px=settings.capture_max_edge_px,
            max_bytes=settings.capture_max_bytes,
            max_images=settings.max_images,
            warn_images=WARN_IMAGES,
            max_upload_bytes=settings.max_upload_bytes,
            accepted_types=sorted(ACCEPTED_CONTENT_TYPES),
            consent_required=settings.consent_required,
            required_metadata=list(settings.required_metadata),
            phone_can_commit=settings.phone_can_commit,
        ),
    )
