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
    """Object storage with presigned URLs. Keys are `/`-separated, ASCII, with no `..` segments."""

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


def session_prefix(session_id: str) -> str:
    """Every object of a capture session lives under this prefix: cancel, commit, expiry delete one prefix."""
    return f"sessions/{session_id}/"


def upload_key(session_id: str, image_id: str) -> str:
    """Where the phone PUTs the bytes as captured (any accepted type), before verification."""
    return f"{session_prefix(session_id)}uploads/{image_id}"


def image_key(session_id: str, image_id: str) -> str:
    """The normalised JPEG (oriented, no EXIF)."""
    return f"{session_prefix(session_id)}{image_id}.jpg"


def thumbnail_key(session_id: str, image_id: str) -> str:
    """The thumbnail JPEG shown in galleries."""
    return f"{session_prefix(session_id)}{image_id}.thumb.jpg"


def create_store(url: str, *, secret_key: bytes) -> ObjectStore:
    """The adapter for `CONSULTCAM_STORAGE_URL`: `file:///dir` (embedded) or `s3://bucket/prefix`."""
    if url.startswith("file://"):
        from consultcam.storage.local import LocalObjectStore

        return LocalObjectStore(url.removeprefix("file://"), secret_key=secret_key)
    raise ValueError(
        f"Unsupported CONSULTCAM_STORAGE_URL scheme in {url.split('://')[0]!r}: use file:///path "
        "(s3://bucket/prefix arrives with the production adapters)."
    )
