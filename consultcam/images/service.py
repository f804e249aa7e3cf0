"""Clinical images: presigned uploads, verification at registration, metadata and edits, deletion.

Registration (DESIGN.md step 4) is where untrusted bytes become a clinical image: the stored object must
exist, have the declared size and real image magic bytes, decode under the pixel cap, and is then
re-encoded upright with every EXIF/GPS tag removed. A rejected upload is deleted, row and object.
"""

from __future__ import annotations

import functools
import math
import time
from datetime import datetime, timedelta

import anyio
from sqlalchemy import func, or_, select

from consultcam import audit, metrics
from consultcam.auth import Phone, Principal
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
from consultcam.images import admission, processing
from consultcam.images.schemas import (
    ImageOut,
    ImagePatch,
    ImageUrls,
    RegisterRequest,
    UploadOut,
    UploadRequest,
)
from consultcam.models import CaptureSession, ClinicalImage, utcnow
from consultcam.runtime import Runtime, UnitOfWork
from consultcam.sessions import service as sessions
from consultcam.storage.store import image_key, parse_upload_key, thumbnail_key, upload_key

#: Photos decoded at once in this process (see `admission`; the AI job prepares its JPEG under it too).
IMAGE_WORK = admission.IMAGE_WORK

#: Uploads registered this long after their URL expired are abandoned (the sweeper deletes them).
UPLOAD_GRACE = timedelta(minutes=5)


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
    if image.object_key and image.thumbnail_key and image.status == "ready":
        ttl = rt.settings.download_url_ttl_seconds
        urls = ImageUrls(
            full=await rt.store.presign_get(image.object_key, expires_in=ttl),
            thumbnail=await rt.store.presign_get(image.thumbnail_key, expires_in=ttl),
        )
    return image_out(image, rt, urls)


def event_image(image: ClinicalImage, rt: Runtime) -> dict:
    """An image as carried in events: JSON-ready, without URLs (they are per-viewer and short-lived)."""
    return image_out(image, rt).model_dump(mode="json", by_alias=True, exclude={"urls"})


async def get_image(
    uow: UnitOfWork,
    session_id: str,
    image_id: str,
    *,
    statuses: tuple[str, ...] = ("ready",),
    for_update: bool = False,
) -> ClinicalImage:
    """An image of the session in one of `statuses`; raises ResourceNotFound (404) otherwise.
    `for_update`: lock the row and re-read it (PostgreSQL; a no-op on SQLite, see `sessions.lock_session`).
    """
    image = await uow.session.get(
        ClinicalImage,
        image_id,
        with_for_update={"key_share": True} if for_update else None,
        populate_existing=for_update,
    )
    if image is None or image.session_id != session_id or image.status not in statuses:
        raise ResourceNotFound(
            "No such photo in this session: it may have been deleted or committed.", error="ImageNotFound"
        )
    return image


async def list_images(uow: UnitOfWork, rt: Runtime, session_id: str) -> list[ImageOut]:
    """The session's registered images, oldest first, with fresh URLs."""
    images = (
        (
            await uow.session.execute(
                select(ClinicalImage)
                .where(
                    ClinicalImage.session_id == session_id, ClinicalImage.status.in_(("ready", "committed"))
                )
                .order_by(ClinicalImage.created_at)
            )
        )
        .scalars()
        .all()
    )
    return [await image_out_with_urls(image, rt) for image in images]


async def ready_images(uow: UnitOfWork, session_id: str) -> list[ClinicalImage]:
    """The session's registered, not yet committed images, oldest first: the gallery's order, which names
    photos "photo 1", "photo 2" … in messages, the ZIP and the commit."""
    result = await uow.session.execute(
        select(ClinicalImage)
        .where(ClinicalImage.session_id == session_id, ClinicalImage.status == "ready")
        .order_by(ClinicalImage.created_at)
    )
    return list(result.scalars().all())


async def slots_in_use(
    uow: UnitOfWork, session_id: str, now: datetime, *, excluding: str | None = None
) -> int:
    """The session's slots that count against MAX_IMAGES at `now`: registered photos, and unregistered
    slots whose upload URL has not expired (`excluding` one image id)."""
    query = (
        select(func.count())
        .select_from(ClinicalImage)
        .where(
            ClinicalImage.session_id == session_id,
            or_(
                ClinicalImage.status == "ready",
                (ClinicalImage.status == "pending") & (ClinicalImage.upload_expires_at > now),
            ),
        )
    )
    if excluding is not None:
        query = query.where(ClinicalImage.id != excluding)
    return int((await uow.session.execute(query)).scalar_one())


async def _pending_upload_expiries(
    uow: UnitOfWork, session_id: str, uploader: str, now: datetime
) -> list[datetime]:
    """When each of `uploader`'s unregistered slots in the session with a valid upload URL expires."""
    result = await uow.session.execute(
        select(ClinicalImage.upload_expires_at).where(
            ClinicalImage.session_id == session_id,
            ClinicalImage.uploaded_by == uploader,
            ClinicalImage.status == "pending",
            ClinicalImage.upload_expires_at > now,
        )
    )
    return list(result.scalars().all())


def _session_full(count: int) -> Conflict:
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
    if content_type not in processing.ACCEPTED_CONTENT_TYPES:
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
    waiting = await _pending_upload_expiries(uow, session.id, actor.id, now)
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
        raise _session_full(count)
    image = ClinicalImage(
        session_id=session.id,
        status="pending",
        source=_source(actor),
        uploaded_by=actor.id,
        filename=request.filename,
        upload_content_type=content_type,
        upload_size_bytes=request.size_bytes,
        created_at=now,
        upload_expires_at=now + timedelta(seconds=settings.upload_url_ttl_seconds),
        upload_key="",
    )
    uow.session.add(image)
    await uow.session.flush()
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


async def require_upload_slot(rt: Runtime, key: str) -> None:
    """Let a PUT through the folder store's signed URL write `key` only while it is an upload slot waiting
    for its bytes: once the photo is registered (or deleted) its URL stops working, though unexpired.

    Raises Conflict 409 `UploadAlreadyRegistered` for a registered photo, NotPermitted 403
    `InvalidUploadUrl` when the key is no pending slot (deleted, rejected, abandoned, or not an upload key).
    """
    parsed = parse_upload_key(key)
    async with rt.unit_of_work(writes=False) as uow:
        image = await uow.session.get(ClinicalImage, parsed[1]) if parsed else None
    if image is None or image.session_id != (parsed or ("", ""))[0] or image.upload_key != key:
        raise NotPermitted(
            "Upload refused: this upload URL is no longer valid. Ask for a new upload URL.",
            error="InvalidUploadUrl",
        )
    if image.status != "pending":
        raise Conflict(
            "This upload URL has been used: its photo is already registered and cannot be replaced. "
            "Ask for a new upload URL to add another photo.",
            error="UploadAlreadyRegistered",
        )


async def register_image(
    rt: Runtime, actor: Principal, session_id: str, request: RegisterRequest
) -> tuple[ClinicalImage, bool]:
    """Verify and normalise an uploaded object and record it. Returns (image, created); registering the
    same image again, or twice at once, returns the one image (idempotent retries).

    Three steps, so the decoding (tens to hundreds of ms) never holds the database's write lock: read the
    slot, verify and normalise the bytes with no transaction open, then record the result in a short one.
    The upload is read once per attempt and the normalised photo is written under keys named by its
    SHA-256, so a PUT to the upload URL during or after registration never changes a registered photo: a
    concurrent attempt that loses deletes only its own objects (a presigned S3 URL cannot be revoked).
    Decoding is admitted by memory (`admission`): the cost is estimated from the header first.

    Raises ResourceNotFound 404 (no such upload), Conflict 409 (session closed, or full when an expired
    slot is registered late), Unprocessable 422 when the bytes never arrived (the slot stays for a retry)
    or are not a valid image, or would need more memory than the whole decode budget (object and slot
    deleted; 415 for a type we do not accept), DecodersBusy 503 with `Retry-After` when no memory came free
    within CONSULTCAM_DECODE_WAIT_SECONDS (the slot stays for a retry).
    """
    started = time.perf_counter()
    settings = rt.settings
    async with rt.unit_of_work(writes=False) as uow:
        session = await sessions.get_session(uow, session_id)
        image = await get_image(uow, session_id, request.image_id, statuses=("pending", "ready"))
        if image.status == "ready":
            return image, False
        sessions.require_open(session, settings)
    stored = await rt.store.head(image.upload_key)
    if stored is None:
        raise Unprocessable(
            "The photo has not arrived in storage. Upload it again, then register it.", error="UploadMissing"
        )
    try:
        try:
            data = (
                await rt.store.get(image.upload_key) if stored.size_bytes == image.upload_size_bytes else b""
            )
        except KeyError as exc:  # gone since the HEAD: the photo or its session was deleted meanwhile
            raise Unprocessable(
                "The photo is no longer in storage. Upload it again, then register it.", error="UploadMissing"
            ) from exc
        if (
            len(data) != image.upload_size_bytes
        ):  # checked on what was read: it may have changed since the HEAD
            raise processing.ImageRejected(
                422,
                "UploadSizeMismatch",
                f"The stored file has {len(data) or stored.size_bytes} bytes "
                f"but {image.upload_size_bytes} were announced. Upload the photo again.",
            )
        options = {
            "declared_content_type": image.upload_content_type,
            "max_pixels": settings.max_image_pixels,
            "max_edge_px": settings.capture_max_edge_px,
        }
        header = await anyio.to_thread.run_sync(functools.partial(processing.inspect, data, **options))
        if not admission.fits(settings, header.decode_bytes):
            raise _too_costly(header, settings.decode_memory_budget_mb)
        async with admission.decode_memory(settings, header.decode_bytes):
            normalised = await anyio.to_thread.run_sync(
                functools.partial(processing.normalise, data, **options),
                limiter=admission.decode_threads(settings),
            )
    except processing.ImageRejected as rejected:
        metrics.IMAGES_REJECTED.labels(rejected.error).inc()
        await _reject(rt, actor, image, rejected)
        raise ConsultcamError(rejected.detail, error=rejected.error, status=rejected.status) from rejected
    del data
    version = normalised.sha256[:16]
    keys = image_key(session_id, image.id, version), thumbnail_key(session_id, image.id, version)
    await rt.store.put(keys[0], normalised.jpeg, content_type="image/jpeg")
    await rt.store.put(keys[1], normalised.thumbnail, content_type="image/jpeg")
    try:
        async with rt.unit_of_work() as uow:
            # Both locked (session first, see consultcam.db) and re-read: a concurrent registration of the
            # same upload, a commit claiming the session or a cancellation may have committed since.
            session = await sessions.lock_session(uow, session_id)
            image = await get_image(
                uow, session_id, request.image_id, statuses=("pending", "ready"), for_update=True
            )
            if image.status == "ready":  # a concurrent registration of the same upload won
                return image, False
            sessions.require_open(session, settings)
            now = utcnow()
            if image.upload_expires_at <= now:  # no longer counted: is there still room for it?
                count = await slots_in_use(uow, session_id, now, excluding=image.id)
                if count >= settings.max_images:
                    raise _session_full(count)
            image.object_key, image.thumbnail_key = keys
            image.status = "ready"
            image.content_type = "image/jpeg"
            image.size_bytes = len(normalised.jpeg)
            image.width, image.height, image.sha256 = normalised.width, normalised.height, normalised.sha256
            # A capture time outside the session's window (a wrong phone clock) is not recorded: warned.
            image.captured_at, ignored = request.plausible_captured_at(
                session.created_at,
                now,
                before=timedelta(hours=settings.capture_before_session_hours),
                skew=timedelta(seconds=settings.capture_clock_skew_seconds),
            )
            image.registered_at = now
            image.image_metadata = (
                request.metadata.model_dump(mode="json", exclude_none=True) if request.metadata else {}
            )
            image.quality = {**normalised.quality, "warnings": [*normalised.quality["warnings"], *ignored]}
            # The AI description: "disabled" unless the practice configures an endpoint, else "pending" and a
            # job queued after the commit (issue 6). Imported here: the job module imports this one.
            from consultcam.analysis.tasks import schedule_analysis

            schedule_analysis(uow, rt, image)
            sessions.touch(session)
            audit.record(
                uow.session,
                actor,
                "image.uploaded",
                session_id=session_id,
                image_id=image.id,
                source_type=normalised.source_content_type,
                size_bytes=image.size_bytes,
                width=image.width,
                height=image.height,
            )
            publish_after_commit(uow, rt.bus, session_id, "image.added", {"image": event_image(image, rt)})
    finally:
        # Whatever this attempt wrote and did not record is nobody's: a winner's keys differ unless its
        # bytes were the same (then they are the same objects, and stay).
        if image.object_key != keys[0]:
            await rt.store.delete(*keys)
    await rt.store.delete(image.upload_key)
    metrics.IMAGES_REGISTERED.labels(image.source).inc()
    metrics.REGISTER_SECONDS.observe(time.perf_counter() - started)
    return image, True


def _too_costly(header: processing.ImageHeader, budget_mb: int) -> processing.ImageRejected:
    megapixels, needed = header.width * header.height / 1e6, header.decode_bytes / 2**20
    return processing.ImageRejected(
        422,
        "ImageTooLargeToDecode",
        f"Reading this {megapixels:.0f}-megapixel image would take about {needed:.0f} MB "
        f"of memory, more than this server gives one photo ({budget_mb} MB). Resize it (the consultcam pages "
        "do this for you) or send it as a JPEG, then upload it again.",
    )


async def _reject(
    rt: Runtime, actor: Principal, image: ClinicalImage, rejected: processing.ImageRejected
) -> None:
    """Delete a rejected upload, slot and object, and audit why."""
    async with rt.unit_of_work() as uow:
        row = await uow.session.get(ClinicalImage, image.id)
        if row is not None and row.status == "pending":
            await uow.session.delete(row)
            audit.record(
                uow.session,
                actor,
                "image.rejected",
                session_id=image.session_id,
                image_id=image.id,
                reason=rejected.error,
            )
    await rt.store.delete(image.upload_key)


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
            image.edits = processing.validate_edits(patch.edits)
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
    image = await get_image(uow, session.id, image_id, statuses=("pending", "ready"))
    if isinstance(actor, Phone) and image.uploaded_by != actor.id:
        raise ResourceNotFound("No such photo from this phone.", error="ImageNotFound")
    keys = [k for k in (image.upload_key, image.object_key, image.thumbnail_key) if k]
    await uow.session.delete(image)
    sessions.touch(session)
    audit.record(uow.session, actor, "image.deleted", session_id=session.id, image_id=image_id)
    publish_after_commit(uow, rt.bus, session.id, "image.deleted", {"imageId": image_id})
    store = rt.store

    async def _delete_objects() -> None:
        await store.delete(*keys)

    uow.after_commit(_delete_objects)


async def render_image(rt: Runtime, image: ClinicalImage) -> bytes:
    """The stored JPEG of a ready image with its edits burned in (`processing.render`): what download, the
    session's ZIP and the commit send. Decoding runs in a worker thread under IMAGE_WORK and the decode
    memory budget, never on the event loop. Raises ResourceNotFound (404) when the object is no longer
    stored, Unprocessable (422) when the stored edits cannot be applied to this photo (a crop under one pixel
    of a tiny photo)."""
    assert image.object_key
    try:
        data = await rt.store.get(image.object_key)
    except KeyError as exc:
        raise ResourceNotFound("This photo is no longer stored.", error="ImageNotFound") from exc
    if not image.edits:
        return data
    cost = processing.render_cost(image.width or 0, image.height or 0, len(data))
    try:
        # Admitted by memory like a registration, but never refused for load: a commit must not fail for it.
        async with admission.decode_memory(rt.settings, cost, wait=False):
            return await anyio.to_thread.run_sync(
                processing.render, data, image.edits, limiter=admission.decode_threads(rt.settings)
            )
    except ValueError as exc:
        raise Unprocessable(
            f"This photo's edits cannot be applied: {exc}. Open it in the editor and change or clear them.",
            error="InvalidEdits",
        ) from exc


async def rendered_jpeg(
    rt: Runtime, actor: Principal, session_id: str, image_id: str
) -> tuple[CaptureSession, ClinicalImage, bytes]:
    """The JPEG with its edits burned in, for download; audited. The rendering holds no transaction (on
    SQLite a writing one would hold every phone's and desktop's writes meanwhile). Raises 404."""
    async with rt.unit_of_work(writes=False) as uow:
        session = await sessions.get_session(uow, session_id)
        image = await get_image(uow, session_id, image_id)
    rendered = await render_image(rt, image)
    async with rt.unit_of_work() as uow:
        audit.record(uow.session, actor, "image.downloaded", session_id=session_id, image_id=image.id)
    return session, image, rendered
