"""The object store port: where photo bytes live between upload and commit.

Two adapters: `local.LocalObjectStore` (a folder; the app serves HMAC-signed, expiring URLs) and, in
production, `s3.S3ObjectStore` with boto's presigned URLs; `registry.create_store` picks one for a URL. Keys
look like `sessions/{sessionId}/{imageId}.jpg` (`keys.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

__all__ = ["ObjectStore", "PresignedRequest", "StoredObject"]


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
