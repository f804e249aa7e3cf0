"""HTTP endpoints for clinical images: presigned uploads, registration, listing, edits, download (one
photo, or the session's ZIP)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import StreamingResponse

from consultcam.deps import (
    ReadSessionPrincipalDep,
    ReadUoWDep,
    RuntimeDep,
    SessionClinicianDep,
    SessionPrincipalDep,
    StandaloneSessionClinicianDep,
    StandaloneSessionPrincipalDep,
    UoWDep,
)
from consultcam.errors import NO_STORE
from consultcam.images import archive, registration, service
from consultcam.images.schemas import (
    ImageList,
    ImageOut,
    ImagePatch,
    RegisterRequest,
    UploadOut,
    UploadRequest,
)
from consultcam.kit.status import ImageStatus
from consultcam.sessions.service import get_session

router = APIRouter(prefix="/api/sessions/{session_id}", tags=["images"])


@router.post("/uploads", status_code=status.HTTP_201_CREATED, response_model=UploadOut)
async def create_upload(
    session_id: str, body: UploadRequest, rt: RuntimeDep, uow: UoWDep, principal: SessionPrincipalDep
) -> UploadOut:
    """A presigned PUT URL for one photo (413 too large, 415 not an image type, 409 full or closed, 429 this
    device already holds CONSULTCAM_MAX_PENDING_UPLOADS unused URLs)."""
    session = await get_session(uow, session_id)
    return await service.issue_upload(uow, rt, principal, session, body)


@router.post("/images", status_code=status.HTTP_201_CREATED, response_model=ImageOut)
async def register_image(
    session_id: str,
    body: RegisterRequest,
    response: Response,
    rt: RuntimeDep,
    principal: StandaloneSessionPrincipalDep,
) -> ImageOut:
    """Verify and record an uploaded photo (422 when it is missing, not a valid image or too big to decode;
    503 with Retry-After when the server's decode memory stayed full; send it again then)."""
    image, created = await registration.register_image(rt.unit_of_work, rt, principal, session_id, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return await service.image_out_with_urls(image, rt)


@router.get("/images", response_model=ImageList)
async def list_images(
    session_id: str, rt: RuntimeDep, uow: ReadUoWDep, principal: ReadSessionPrincipalDep
) -> ImageList:
    """The session's photos with short-lived URLs."""
    await get_session(uow, session_id)
    return ImageList(images=await service.list_images(uow, rt, session_id))


@router.get("/images/{image_id}", response_model=ImageOut)
async def get_image(
    session_id: str, image_id: str, rt: RuntimeDep, uow: ReadUoWDep, principal: ReadSessionPrincipalDep
) -> ImageOut:
    """One photo with short-lived URLs."""
    image = await service.get_image(
        uow, session_id, image_id, statuses=(ImageStatus.READY, ImageStatus.COMMITTED)
    )
    return await service.image_out_with_urls(image, rt)


@router.patch("/images/{image_id}", response_model=ImageOut)
async def update_image(
    session_id: str,
    image_id: str,
    body: ImagePatch,
    rt: RuntimeDep,
    uow: UoWDep,
    clinician: SessionClinicianDep,
) -> ImageOut:
    """Change a photo's metadata or edits (clinician only)."""
    session = await get_session(uow, session_id)
    image = await service.update_image(uow, rt, clinician, session, image_id, body)
    return await service.image_out_with_urls(image, rt)


@router.delete("/images/{image_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_image(
    session_id: str, image_id: str, rt: RuntimeDep, uow: UoWDep, principal: SessionPrincipalDep
) -> Response:
    """Delete a photo (the clinician, or the phone that took it)."""
    session = await get_session(uow, session_id)
    await service.delete_image(uow, rt, principal, session, image_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=NO_STORE)


@router.get("/images/{image_id}/download", response_class=Response)
async def download_image(
    session_id: str, image_id: str, rt: RuntimeDep, clinician: StandaloneSessionClinicianDep
) -> Response:
    """The JPEG with its edits burned in, as an attachment (clinician only, never cached; `nosniff` comes
    with every response from the app's security headers)."""
    session, image, data = await service.rendered_jpeg(rt.unit_of_work, rt, clinician, session_id, image_id)
    name = f"{session.encounter_id}-{image.id[:8]}.jpg".replace('"', "")
    return Response(
        data,
        media_type="image/jpeg",
        headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/download", response_class=StreamingResponse)
async def download_session(
    session_id: str, rt: RuntimeDep, clinician: StandaloneSessionClinicianDep
) -> StreamingResponse:
    """Every ready photo with its edits burned in, as one ZIP attachment (clinician only, never cached;
    409 `NoPhotos` when there is none)."""
    built = await archive.session_archive(rt.unit_of_work, rt, clinician, session_id)
    return StreamingResponse(
        built.chunks(),
        media_type="application/zip",
        headers={
            **NO_STORE,
            "Content-Disposition": f'attachment; filename="{built.filename}"',
            "Content-Length": str(built.size_bytes),
        },
    )
