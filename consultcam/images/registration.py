"""Registration (DESIGN.md step 4): where untrusted bytes become a clinical image, the one place for it.

The stored upload must exist, have the declared size and real image magic bytes, decode under the pixel cap
and the decode memory budget (`admission`), and is then re-encoded upright with every EXIF/GPS tag removed
(`processing.normalise`), or, when it is already an upright sRGB baseline JPEG within the edge cap (what the
phone pages send), kept as it is less its metadata segments (issue 15). A rejected upload is deleted, row
and object. A registered image is announced (`image.added`) and, when the practice configured an AI
endpoint, queued for its description (`consultcam.analysis.service.schedule_analysis`, by task name).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

import anyio

from consultcam import audit, metrics
from consultcam.analysis.service import schedule_analysis
from consultcam.auth.principals import Principal
from consultcam.db import Transactions
from consultcam.errors import ConsultcamError, Unprocessable
from consultcam.events.bus import publish_after_commit
from consultcam.images import admission, repository
from consultcam.images.processing.formats import ImageRejected
from consultcam.images.processing.normalise import ImageHeader, NormalisedImage, inspect, normalise
from consultcam.images.schemas import RegisterRequest
from consultcam.images.service import event_image, get_image, session_full, slots_in_use
from consultcam.kit import jobs
from consultcam.kit.status import ImageStatus
from consultcam.models import ClinicalImage, utcnow
from consultcam.sessions import service as sessions
from consultcam.storage.keys import image_key, thumbnail_key
from consultcam.storage.store import ObjectStore

if TYPE_CHECKING:
    from consultcam.config import Settings
    from consultcam.runtime import Runtime

_SLOT = (ImageStatus.PENDING, ImageStatus.READY)
T = TypeVar("T")


async def register_image(
    tx: Transactions, rt: Runtime, actor: Principal, session_id: str, request: RegisterRequest
) -> tuple[ClinicalImage, bool]:
    """Verify and normalise an uploaded object and record it. Returns (image, created); registering the
    same image again, or twice at once, returns the one image (idempotent retries).

    Three steps, each owning its transaction (`tx`), so the decoding (tens to hundreds of ms) never holds
    the database's write lock: read the slot, verify and normalise the bytes with no transaction open, then
    record the result in a short one. The upload is read once per attempt and the normalised photo is
    written under keys named by its SHA-256, so a PUT to the upload URL during or after registration never
    changes a registered photo: a concurrent attempt that loses deletes only its own objects (a presigned S3
    URL cannot be revoked). Decoding is admitted by memory (`admission`): the cost is estimated from the
    header first.

    Raises ResourceNotFound 404 (no such upload), Conflict 409 (session closed, or full when an expired
    slot is registered late), Unprocessable 422 when the bytes never arrived (the slot stays for a retry)
    or are not a valid image, or would need more memory than the whole decode budget (object and slot
    deleted; 415 for a type we do not accept), DecodersBusy 503 with `Retry-After` when no memory came free
    within CONSULTCAM_DECODE_WAIT_SECONDS (the slot stays for a retry).
    """
    started = time.perf_counter()
    settings = rt.settings
    async with tx(writes=False) as uow:
        session = await sessions.get_session(uow, session_id)
        image = await get_image(uow, session_id, request.image_id, statuses=_SLOT)
        if image.status == ImageStatus.READY:
            return image, False
        sessions.require_open(session, settings)
    try:
        normalised = await _verified(rt.store, settings, image)
    except ImageRejected as rejected:
        metrics.IMAGES_REJECTED.labels(rejected.error).inc()
        await _reject(tx, rt.store, actor, image, rejected)
        raise ConsultcamError(rejected.detail, error=rejected.error, status=rejected.status) from rejected
    version = normalised.sha256[:16]
    keys = image_key(session_id, image.id, version), thumbnail_key(session_id, image.id, version)
    try:
        # Both at once (against S3 each is a round trip), and both finished before going on: when one
        # fails, `finally` then deletes whatever the other wrote.
        written = await asyncio.gather(
            rt.store.put(keys[0], normalised.jpeg, content_type="image/jpeg"),
            rt.store.put(keys[1], normalised.thumbnail, content_type="image/jpeg"),
            return_exceptions=True,
        )
        for outcome in written:
            if isinstance(outcome, BaseException):
                raise outcome
        async with tx() as uow:
            # Both locked (session first, see consultcam.db) and re-read: a concurrent registration of the
            # same upload, a commit claiming the session or a cancellation may have committed since.
            session = await sessions.lock_session(uow, session_id)
            image = await get_image(uow, session_id, request.image_id, statuses=_SLOT, for_update=True)
            if image.status == ImageStatus.READY:  # a concurrent registration of the same upload won
                return image, False
            sessions.require_open(session, settings)
            now = utcnow()
            if image.upload_expires_at <= now:  # no longer counted: is there still room for it?
                count = await slots_in_use(uow, session_id, now, excluding=image.id)
                if count >= settings.max_images:
                    raise session_full(count)
            image.object_key, image.thumbnail_key = keys
            image.status = ImageStatus.READY
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
            # job queued after the commit (issue 6).
            schedule_analysis(uow, settings, functools.partial(jobs.enqueue, rt.broker), image)
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


async def _verified(store: ObjectStore, settings: Settings, image: ClinicalImage) -> NormalisedImage:
    """The slot's uploaded bytes, read once, verified and normalised in a worker thread under the decode
    memory budget. Raises Unprocessable 422 `UploadMissing` (the slot stays for a retry), ImageRejected
    (the caller deletes the slot), DecodersBusy 503."""
    stored = await store.head(image.upload_key)
    if stored is None:
        raise Unprocessable(
            "The photo has not arrived in storage. Upload it again, then register it.", error="UploadMissing"
        )
    try:
        data = await store.get(image.upload_key) if stored.size_bytes == image.upload_size_bytes else b""
    except KeyError as exc:  # gone since the HEAD: the photo or its session was deleted meanwhile
        raise Unprocessable(
            "The photo is no longer in storage. Upload it again, then register it.", error="UploadMissing"
        ) from exc
    if len(data) != image.upload_size_bytes:  # checked on what was read: it may have changed since the HEAD
        raise ImageRejected(
            422,
            "UploadSizeMismatch",
            f"The stored file has {len(data) or stored.size_bytes} bytes "
            f"but {image.upload_size_bytes} were announced. Upload the photo again.",
        )

    def on_upload(step: Callable[..., T]) -> Callable[[], T]:  # inspect and normalise read it alike
        return functools.partial(
            step,
            data,
            declared_content_type=image.upload_content_type,
            max_pixels=settings.max_image_pixels,
            max_edge_px=settings.capture_max_edge_px,
        )

    header = await anyio.to_thread.run_sync(on_upload(inspect))
    if not admission.fits(settings, header.decode_bytes):
        raise _too_costly(header, settings.decode_memory_budget_mb)
    async with admission.decode_memory(settings, header.decode_bytes):
        return await anyio.to_thread.run_sync(
            on_upload(normalise), limiter=admission.decode_threads(settings)
        )


def _too_costly(header: ImageHeader, budget_mb: int) -> ImageRejected:
    megapixels, needed = header.width * header.height / 1e6, header.decode_bytes / 2**20
    return ImageRejected(
        422,
        "ImageTooLargeToDecode",
        f"Reading this {megapixels:.0f}-megapixel image would take about {needed:.0f} MB "
        f"of memory, more than this server gives one photo ({budget_mb} MB). Resize it (the consultcam pages "
        "do this for you) or send it as a JPEG, then upload it again.",
    )


async def _reject(
    tx: Transactions, store: ObjectStore, actor: Principal, image: ClinicalImage, rejected: ImageRejected
) -> None:
    """Delete a rejected upload, slot and object, and audit why (in a transaction of its own)."""
    async with tx() as uow:
        row = await repository.find(uow, image.id)
        if row is not None and row.status == ImageStatus.PENDING:
            await repository.delete(uow, row)
            audit.record(
                uow.session,
                actor,
                "image.rejected",
                session_id=image.session_id,
                image_id=image.id,
                reason=rejected.error,
            )
    await store.delete(image.upload_key)
