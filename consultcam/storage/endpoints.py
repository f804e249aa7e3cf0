"""The embedded object store's signed-URL endpoints: PUT and GET `/api/storage/{key}`.

Only mounted when `CONSULTCAM_STORAGE_URL` is a `file://` folder; with S3 the browser talks to S3 directly.
A signed PUT URL writes only into an upload slot still waiting for its bytes (`require_upload_slot`): once
the photo is registered the URL stops working, even before it expires.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from consultcam.errors import NO_STORE, ConsultcamError, NotPermitted, PayloadTooLarge
from consultcam.images.service import require_upload_slot
from consultcam.storage.local import InvalidSignature, LocalObjectStore

router = APIRouter(include_in_schema=False)


def _store(request: Request) -> LocalObjectStore:
    store = request.app.state.runtime.store
    assert isinstance(store, LocalObjectStore)
    return store


@router.put("/api/storage/{key:path}")
async def put_object(key: str, request: Request) -> Response:
    """Receive an upload through a signed URL; the body must be exactly the signed length and type."""
    store = _store(request)
    try:
        content_type, length = store.verify("PUT", key, dict(request.query_params))
    except (InvalidSignature, ValueError) as exc:
        raise NotPermitted(
            f"Upload refused: {exc}. Ask for a new upload URL.", error="InvalidUploadUrl"
        ) from exc
    # The signature proves the URL is ours and unexpired; the slot must also still be waiting for its bytes.
    await require_upload_slot(request.app.state.runtime.unit_of_work, key)
    if request.headers.get("content-type", "").split(";")[0].strip() != content_type:
        raise ConsultcamError(
            f"Send the header Content-Type: {content_type}, as the upload URL was signed for.",
            error="ContentTypeMismatch",
        )
    declared = request.headers.get("content-length")
    if declared is not None and length is not None and int(declared) != length:
        raise ConsultcamError(
            f"The upload URL is for exactly {length} bytes; this request has {declared}.",
            error="ContentLengthMismatch",
        )
    chunks, received = [], 0
    async for chunk in request.stream():
        received += len(chunk)
        if length is not None and received > length:
            raise PayloadTooLarge(
                f"The upload URL is for {length} bytes; more arrived.", error="UploadTooLarge"
            )
        chunks.append(chunk)
    if length is not None and received != length:
        raise ConsultcamError(
            f"The upload URL is for {length} bytes; {received} arrived. Send the whole file.",
            error="ContentLengthMismatch",
        )
    await store.put_chunks(key, chunks)
    return Response(status_code=200, headers=NO_STORE)


@router.get("/api/storage/{key:path}")
async def get_object(key: str, request: Request) -> Response:
    """Serve an object through a signed GET URL, never cached (`nosniff` comes with every response from the
    app's security headers)."""
    store = _store(request)
    try:
        store.verify("GET", key, dict(request.query_params))
        data = await store.get(key)
    except (InvalidSignature, ValueError) as exc:
        raise NotPermitted(
            f"Download refused: {exc}. Reload the page for a fresh link.", error="InvalidDownloadUrl"
        ) from exc
    except KeyError as exc:
        raise ConsultcamError(
            "This photo is no longer stored (committed, deleted or expired).", error="NotFound", status=404
        ) from exc
    return Response(data, media_type="image/jpeg", headers=NO_STORE)
