"""Clinical images: presigned upload slots, reading, metadata and edits, deletion, rendering, and the sweep
of uploads never registered.

Registration (untrusted bytes becoming a clinical image) is `consultcam.images.registration`; the SQL is
`consultcam.images.repository`. Functions that take `uow` run inside their caller's transaction; those that
take `tx` open their own (see consultcam.db.Transactions).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio

from consultcam import audit
from consultcam.auth.principals import Phone, Principal
from consultcam.db import Transactions, UnitOfWork
from consultcam.errors import (
    Conflict,
    ConsultcamError,
    NotPermitted,
    PayloadTooLarge,
    ResourceNotFound,
    Unprocessable,
    UnsupportedMediaType,
)
from consultcam.events.bus import publish_after_commit
from consultcam.images import admission, repository
from consultcam.images.processing import render as rendering
from consultcam.images.processing.edits import validate_edits
from consultcam.images.processing.formats import ACCEPTED_CONTENT_TYPES
from consultcam.images.schemas import ImageOut, ImagePatch, ImageUrls, UploadOut, UploadRequest
from consultcam.kit.status import ImageStatus
from consultcam.models import CaptureSession, ClinicalImage, utcnow
from consultcam.sessions import service as sessions
from consultcam.storage.keys import parse_upload_key, upload_key
from consultcam.storage.store import ObjectStore

if TYPE_CHECKING:
    from consultcam.runtime import Runtime

#: Photos decoded at once in this process (see `admission`; the AI job prepares its JPEG under it too).
IMAGE_WORK = admission.IMAGE_WORK

#: Uploads registered this long after their URL expired are abandoned (the sweeper deletes them).
UPLOAD_GRACE = timedelta(minutes=5)

#: What `get_image` finds unless told otherwise: registered photos not yet committed.
_READY = (ImageStatus.READY,)


def image_out(image: ClinicalImage, rt: Runtime, urls: ImageUrls | None = None) -> ImageOut:
    """The API shape of an image (`urls` only in direct responses, never in events)."""
    return ImageOut(
        id=image.id,
        session_id=image.session_id,
        status=image.status,
        source=image.source,
        content_type=image.content_type,
        size_bytes=image.size_bytes,
        width=image.width,
        height=image.height,
        sha256=image.sha256,
        captured_at=image.captured_at,
        created_at=image.created_at,
        expires_at=image.created_at + timedelta(hours=rt.settings.retention_hours),
        metadata=image.image_metadata or {},
        edits=image.edits or {},
        quality=image.quality,
        analysis=image.analysis or {},
        resource_id=image.resource_id,
        commit_error=image.commit_error,
        urls=urls,
    )


async def image_out_with_urls(image: ClinicalImage, rt: Runtime) -> ImageOut:
    """The image with fresh short-lived presigned GET URLs for the full JPEG and the thumbnail."""
    urls = None
    if image.object_key and image.thumbnail_key and image.status == ImageStatus.READY:
        ttl = rt.settings.download_url_ttl_seconds
        urls = ImageUrls(
            full=await rt.store.presign_get(image.object_key, expires_in=ttl),
            thumbnail=await rt.store.presign_get(image.thumbnail_key, expires_in=ttl),
        )
    return image_out(image, rt, urls)


def event_image(image: ClinicalImage, rt: Runtime) -> dict[str, Any]:
    """An image as carried in events: JSON-ready, without URLs (they are per-viewer and short-lived)."""
    return image_out(image, rt).model_dump(mode="json", by_alias=True, exclude={"urls"})


async def get_image(
    uow: UnitOfWork,
    session_id: str,
    image_id: str,
    *,
    statuses: tuple[ImageStatus, ...] = _READY,
    for_update: bool = False,
) -> ClinicalImage:
    """An image of the session in one of `statuses`; raises ResourceNotFound (404) otherwise.
    `for_update`: lock the row and re-read it (PostgreSQL; a no-op on SQLite, see `sessions.lock_session`).
    """
    image = await repository.find(uow, image_id, for_update=for_update)
    if image is None or image.session_id != session_id or image.status not in statuses:
        raise ResourceNotFound(
            "No such photo in this session: it may have been deleted or committed.", error="ImageNotFound"
        )
    return image


async def list_images(uow: UnitOfWork, rt: Runtime, session_id: str) -> list[ImageOut]:
    """The session's registered images (ready or committed), oldest first, with fresh URLs."""
    images = await repository.in_session(uow, session_id, (ImageStatus.READY, ImageStatus.COMMITTED))
    return [await image_out_with_urls(image, rt) for image in images]


async def ready_images(uow: UnitOfWork, session_id: str) -> list[ClinicalImage]:
    """The session's registered, not yet committed images, oldest first: the gallery's order, which names
    photos "photo 1", "photo 2" … in messages, the ZIP and the commit."""
    return list(await repository.in_session(uow, session_id, _READY))


async def slots_in_use(
    uow: UnitOfWork, session_id: str, now: datetime, *, excluding: str | None = None
) -> int:
    """The session's slots that count against MAX_IMAGES at `now`: registered photos, and unregistered
    slots whose upload URL has not expired (`excluding` one image id)."""
    return await repository.count_slots_in_use(uow, session_id, now, excluding=excluding)


def session_full(count: int) -> Conflict:
    """409 `SessionFull`: the session holds `count` photos, MAX_IMAGES."""
    return Conflict(
        f"This session already has {count} photos, the most it can hold. Commit or delete some, "
        "or start another session.",
        error="SessionFull",
    )


def _source(actor: Principal) -> str:
    return "phone" if isinstance(actor, Phone) else "desktop"


async def issue_upload(
    uow: UnitOfWork, rt: Runtime, actor: Principal, session: CaptureSession, request: UploadRequest
) -> UploadOut:
    """Reserve an image slot and presign a PUT for it.

    A slot counts against MAX_IMAGES while it is registered, or unregistered with its upload URL still valid
    (UPLOAD_URL_TTL_SECONDS): one never used stops counting when its URL expires. Each credential (a phone,
    the clinician) may hold at most MAX_PENDING_UPLOADS unregistered slots with valid URLs, so one client
    asking for slots it never uses cannot fill the session for the others.

    Raises UnsupportedMediaType 415 (not JPEG/PNG/WebP/HEIC: SVG, GIF, PDF…), PayloadTooLarge 413 (over
    MAX_UPLOAD_BYTES, refused before any byte is sent), Conflict 409 (session not open, consent required and
    not recorded, or MAX_IMAGES reached), 429 TooManyPendingUploads with `Retry-After` (this credential's
    pending slots are at MAX_PENDING_UPLOADS; the header says when the first of them expires).
    """
    settings = rt.settings
    content_type = request.content_type.split(";")[0].strip()
    content_type = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}.get(content_type, content_type)
    if content_type not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"{content_type or 'This file type'} is not accepted. Send a photo as JPEG, PNG, WebP or HEIC.",
            error="UnsupportedImageType",
        )
    if request.size_bytes > settings.max_upload_bytes:
        raise PayloadTooLarge(
            f"This photo is {request.size_bytes / 1e6:.1f} MB; "
            f"the limit is {settings.max_upload_bytes / 1e6:.0f} MB. "
            "Resize it (the consultcam phone page does this for you) and try again.",
            error="UploadTooLarge",
        )
    # Count, then insert: without the lock, concurrent presigns on PostgreSQL all count the same number
    # and together overshoot MAX_IMAGES.
    await sessions.lock_session(uow, session.id)
    sessions.require_open(session, settings)
    sessions.require_consent(session, settings)
    now = utcnow()
    waiting = await repository.pending_upload_expiries(uow, session.id, actor.id, now)
    if len(waiting) >= settings.max_pending_uploads:
        error = ConsultcamError(
            f"This device already has {len(waiting)} photos waiting to be uploaded, the most it may have at "
            "once. Finish uploading those (or wait for their upload links to run out), then try again.",
            error="TooManyPendingUploads",
            status=429,
        )
        error.headers = {"Retry-After": str(max(1, math.ceil((min(waiting) - now).total_seconds())))}
        raise error
    count = await slots_in_use(uow, session.id, now)
    if count >= settings.max_images:
        raise session_full(count)
    image = ClinicalImage(
        session_id=session.id,
        status=ImageStatus.PENDING,
        source=_source(actor),
        uploaded_by=actor.id,
        filename=request.filename,
        upload_content_type=content_type,
        upload_size_bytes=request.size_bytes,
        created_at=now,
        upload_expires_at=now + timedelta(seconds=settings.upload_url_ttl_seconds),
        upload_key="",
    )
    await repository.add(uow, image)
    image.upload_key = upload_key(session.id, image.id)
    presigned = await rt.store.presign_put(
        image.upload_key,
        content_type=content_type,
        size_bytes=request.size_bytes,
        expires_in=settings.upload_url_ttl_seconds,
    )
    sessions.touch(session)
    audit.record(
        uow.session,
        actor,
        "image.upload_issued",
        session_id=session.id,
        image_id=image.id,
        content_type=content_type,
        size_bytes=request.size_bytes,
    )
    return UploadOut(
        image_id=image.id,
        upload_url=presigned.url,
        method=presigned.method,
        headers=presigned.headers,
        expires_at=presigned.expires_at,
    )


async def require_upload_slot(tx: Transactions, key: str) -> None:
    """Let a PUT through the folder store's signed URL write `key` only while it is an upload slot waiting
    for its bytes: once the photo is registered (or deleted) its URL stops working, though unexpired.
    Reads in a transaction of its own.

    Raises Conflict 409 `UploadAlreadyRegistered` for a registered photo, NotPermitted 403
    `InvalidUploadUrl` when the key is no pending slot (deleted, rejected, abandoned, or not an upload key).
    """
    parsed = parse_upload_key(key)
    async with tx(writes=False) as uow:
        image = await repository.find(uow, parsed[1]) if parsed else None
    if image is None or image.session_id != (parsed or ("", ""))[0] or image.upload_key != key:
        raise NotPermitted(
            "Upload refused: this upload URL is no longer valid. Ask for a new upload URL.",
            error="InvalidUploadUrl",
        )
    if image.status != ImageStatus.PENDING:
        raise Conflict(
            "This upload URL has been used: its photo is already registered and cannot be replaced. "
            "Ask for a new upload URL to add another photo.",
            error="UploadAlreadyRegistered",
        )


async def update_image(
    uow: UnitOfWork, rt: Runtime, actor: Principal, session: CaptureSession, image_id: str, patch: ImagePatch
) -> ClinicalImage:
    """Change metadata (given fields replace stored ones; null clears) and/or replace the edits.

    Raises 404, 409 (session closed), 422 for invalid edits (with what is wrong).
    """
    await sessions.lock_session(uow, session.id)  # a commit must not claim the session halfway through
    sessions.require_open(session, rt.settings)
    image = await get_image(uow, session.id, image_id)
    if patch.metadata is not None:
        changes = patch.metadata.model_dump(mode="json", exclude_unset=True)
        merged = {**(image.image_metadata or {}), **changes}
        image.image_metadata = {k: v for k, v in merged.items() if v is not None}
    if patch.edits is not None:
        try:
            image.edits = validate_edits(patch.edits)
        except ValueError as exc:
            raise Unprocessable(f"The edits are not valid: {exc}", error="InvalidEdits") from exc
    sessions.touch(session)
    audit.record(
        uow.session,
        actor,
        "image.updated",
        session_id=session.id,
        image_id=image.id,
        fields=sorted(patch.model_dump(exclude_unset=True)),
    )
    publish_after_commit(uow, rt.bus, session.id, "image.updated", {"image": event_image(image, rt)})
    return image


async def delete_image(
    uow: UnitOfWork, rt: Runtime, actor: Principal, session: CaptureSession, image_id: str
) -> None:
    """Delete a photo and its objects. A phone may delete only photos it uploaded. Raises 404, 409."""
    await sessions.lock_session(uow, session.id)  # a running commit may be reading this photo's object
    sessions.require_open(session, rt.settings)
    image = await get_image(uow, session.id, image_id, statuses=(ImageStatus.PENDING, ImageStatus.READY))
    if isinstance(actor, Phone) and image.uploaded_by != actor.id:
        raise ResourceNotFound("No such photo from this phone.", error="ImageNotFound")
    keys = [k for k in (image.upload_key, image.object_key, image.thumbnail_key) if k]
    await repository.delete(uow, image)
    sessions.touch(session)
    audit.record(uow.session, actor, "image.deleted", session_id=session.id, image_id=image_id)
    publish_after_commit(uow, rt.bus, session.id, "image.deleted", {"imageId": image_id})
    store = rt.store

    async def _delete_objects() -> None:
        await store.delete(*keys)

    uow.after_commit(_delete_objects)


async def render_image(rt: Runtime, image: ClinicalImage) -> bytes:
    """The stored JPEG of a ready image with its edits burned in (`processing.render.render`): what
    download, the session's ZIP and the commit send. Opens no transaction. Decoding runs in a worker thread
    under IMAGE_WORK and the decode memory budget, never on the event loop. Raises ResourceNotFound (404)
    when the object is no longer stored, Unprocessable (422) `InvalidEdits` when the stored edits cannot be
    applied to this photo (a crop under one pixel of a tiny photo) and `StoredPhotoDamaged` when the stored
    photo no longer decodes (it did when registered: the store corrupted it). A lossless
    rotation or crop runs jpegtran in a child process from that same worker thread, so as many run at once
    as the thread limit allows."""
    assert image.object_key
    try:
        data = await rt.store.get(image.object_key)
    except KeyError as exc:
        raise ResourceNotFound("This photo is no longer stored.", error="ImageNotFound") from exc
    if not image.edits:
        return data
    cost = rendering.render_cost(image.width or 0, image.height or 0, len(data))
    try:
        # Admitted by memory like a registration, but never refused for load: a commit must not fail for it.
        async with admission.decode_memory(rt.settings, cost, wait=False):
            return await anyio.to_thread.run_sync(
                rendering.render, data, image.edits, limiter=admission.decode_threads(rt.settings)
            )
    except rendering.StoredPhotoDamaged as exc:
        raise Unprocessable(
            "The stored copy of this photo is damaged and cannot be read. Delete it and take it again; if it "
            "happens again, tell the practice's IT (the photo store may be failing).",
            error="StoredPhotoDamaged",
        ) from exc
    except ValueError as exc:
        raise Unprocessable(
            f"This photo's edits cannot be applied: {exc}. Open it in the editor and change or clear them.",
            error="InvalidEdits",
        ) from exc


async def rendered_jpeg(
    tx: Transactions, rt: Runtime, actor: Principal, session_id: str, image_id: str
) -> tuple[CaptureSession, ClinicalImage, bytes]:
    """The JPEG with its edits burned in, for download; audited. Reads, then audits, each in a transaction
    of its own: the rendering holds none (on SQLite a writing one would hold every phone's and desktop's
    writes meanwhile). Raises 404."""
    async with tx(writes=False) as uow:
        session = await sessions.get_session(uow, session_id)
        image = await get_image(uow, session_id, image_id)
    rendered = await render_image(rt, image)
    async with tx() as uow:
        audit.record(uow.session, actor, "image.downloaded", session_id=session_id, image_id=image.id)
    return session, image, rendered


async def sweep_unregistered_uploads(tx: Transactions, store: ObjectStore, now: datetime) -> int:
    """The sweeper's images step: delete every upload slot never registered whose URL expired more than
    UPLOAD_GRACE before `now`, its row and its uploaded object (if any), audited `upload.abandoned`. Each
    slot in a transaction of its own, deleted only if still pending (it may have been registered since).
    Returns how many were deleted."""
    async with tx(writes=False) as uow:
        abandoned = await repository.abandoned_upload_ids(uow, now - UPLOAD_GRACE)
    deleted = 0
    for image_id in abandoned:
        async with tx() as uow:
            # Conditional, not read-then-delete: a late registration of this slot must not lose its row.
            gone = await repository.delete_if_pending(uow, image_id)
            if gone is None:
                continue
            session_id, key = gone
            audit.record(uow.session, None, "upload.abandoned", session_id=session_id, image_id=image_id)
        # After the commit, not inside the write transaction (a crash between leaves an orphan for
        # `retention.uploads.delete_orphan_objects`).
        await store.delete(key)
        deleted += 1
    return deleted
