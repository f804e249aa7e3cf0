"""The object store for a URL: the one place that knows every `ObjectStore` adapter."""

from __future__ import annotations

from consultcam.storage.local import LocalObjectStore
from consultcam.storage.s3 import S3ObjectStore
from consultcam.storage.store import ObjectStore


def create_store(
    url: str, *, secret_key: bytes, s3_endpoint_url: str = "", s3_sse_kms_key_id: str = ""
) -> ObjectStore:
    """The adapter for `CONSULTCAM_STORAGE_URL`: `file:///dir` (embedded) or `s3://bucket[/prefix]`
    (production; `s3_endpoint_url` and `s3_sse_kms_key_id` are `CONSULTCAM_S3_ENDPOINT_URL` and
    `CONSULTCAM_S3_SSE_KMS_KEY_ID`, see `consultcam.storage.s3`). Raises ValueError naming the setting when
    the URL is unsupported or malformed.
    """
    if url.startswith("file://"):
        return LocalObjectStore(url.removeprefix("file://"), secret_key=secret_key)
    if url.startswith("s3://"):
        return S3ObjectStore.from_url(url, endpoint_url=s3_endpoint_url, sse_kms_key_id=s3_sse_kms_key_id)
    raise ValueError(
        f"Unsupported CONSULTCAM_STORAGE_URL scheme in {url.split('://')[0]!r}: use file:///path "
        "(embedded) or s3://bucket/prefix (production)."
    )
