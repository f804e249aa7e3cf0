"""The object store port: where photo bytes live between upload and commit.

Two adapters: `local.LocalObjectStore` (a folder; the app serves HMAC-signed, expiring URLs) and, in
production, S3 with boto's presigned URLs. Keys look like `sessions/{sessionId}/{imageId}.jpg`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class PresignedRequest:
    """A request the browser makes straight to the store: `method` `url` with exactly `headers`."""

    url: str
    method: str
    expires_at: datetime
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredObject:
    """What a HEAD tells: size in bytes and last modification (aware UTC)."""

    key: str
    size_bytes: int
    modified_at: datetime


class ObjectStore(Protocol):
    """Object storage with presigned URLs. Keys are `/`-separated, ASCII, with no `..` segments.

    `public_origin` is `scheme://host[:port]` of the presigned URLs when they point outside the app (S3), for
    the pages' Content-Security-Policy; None when the app serves them itself (same origin). Adapters without
    the attribute are read as None.
    """

    public_origin: str | None

    async def presign_put(
        self, key: str, *, content_type: str, size_bytes: int, expires_in: int
    ) -> PresignedRequest:
        """A PUT URL valid for `expires_in` seconds that accepts exactly `size_bytes` of `content_type`."""
        ...

    async def presign_get(self, key: str, *, expires_in: int) -> str:
        """A GET URL valid for `expires_in` seconds; responses carry `Cache-Control: no-store`."""
        ...

    async def head(self, key: str) -> StoredObject | None:
        """Size and modification time, or None when there is no such object."""
        ...

    async def get(self, key: str) -> bytes:
        """The object's bytes; raises KeyError when missing."""
        ...

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        """Write (or replace) an object atomically."""
        ...

    async def delete(self, *keys: str) -> None:
        """Delete objects; missing keys are ignored."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`; returns how many."""
        ...

    async def list(self, prefix: str) -> list[StoredObject]:
        """Every object under `prefix` (used by the sweeper to find orphans)."""
        ...

    async def check(self) -> None:
        """Readiness: raise when the store cannot be written."""
        ...

    async def close(self) -> None:
        """Release connections (at shutdown)."""
        ...


def session_prefix(session_id: str) -> str:
    """Every object of a capture session lives under this prefix: cancel, commit, expiry delete one prefix."""
    return f"sessions/{session_id}/"


def upload_key(session_id: str, image_id: str) -> str:
    """Where the phone PUTs the bytes as captured (any accepted type), before verification. Read once by
    each registration attempt, never after: a presigned S3 URL cannot be revoked, so a later PUT only makes
    an orphan the sweeper deletes."""
    return f"{session_prefix(session_id)}uploads/{image_id}"


def parse_upload_key(key: str) -> tuple[str, str] | None:
    """(session id, image id) of an `upload_key`, or None when `key` is not one."""
    parts = key.split("/")
    if len(parts) == 4 and parts[0] == "sessions" and parts[2] == "uploads" and all(parts):
        return parts[1], parts[3]
    return None


def image_key(session_id: str, image_id: str, version: str = "") -> str:
    """The normalised JPEG (oriented, no EXIF). `version` (registration uses the start of the JPEG's
    SHA-256) gives each registration attempt keys of its own, so one never overwrites another's photo."""
    return f"{session_prefix(session_id)}{image_id}{'.' + version if version else ''}.jpg"


def thumbnail_key(session_id: str, image_id: str, version: str = "") -> str:
    """The thumbnail JPEG shown in galleries (`version` as for `image_key`)."""
    return f"{session_prefix(session_id)}{image_id}{'.' + version if version else ''}.thumb.jpg"


def create_store(
    url: str, *, secret_key: bytes, s3_endpoint_url: str = "", s3_sse_kms_key_id: str = ""
) -> ObjectStore:
    """The adapter for `CONSULTCAM_STORAGE_URL`: `file:///dir` (embedded) or `s3://bucket[/prefix]`
    (production; `s3_endpoint_url` and `s3_sse_kms_key_id` are `CONSULTCAM_S3_ENDPOINT_URL` and
    `CONSULTCAM_S3_SSE_KMS_KEY_ID`, see `consultcam.storage.s3`). Raises ValueError naming the setting when
    the URL is unsupported or malformed.
    """
    if url.startswith("file://"):
        from consultcam.storage.local import LocalObjectStore

        return LocalObjectStore(url.removeprefix("file://"), secret_key=secret_key)
    if url.startswith("s3://"):
        from consultcam.storage.s3 import S3ObjectStore

        return S3ObjectStore.from_url(url, endpoint_url=s3_endpoint_url, sse_kms_key_id=s3_sse_kms_key_id)
    raise ValueError(
        f"Unsupported CONSULTCAM_STORAGE_URL scheme in {url.split('://')[0]!r}: use file:///path "
        "(embedded) or s3://bucket/prefix (production)."
    )
