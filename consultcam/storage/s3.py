"""The production object store: an S3 bucket (AWS S3 or an S3-compatible server such as MinIO), through boto3.

Configured by `CONSULTCAM_STORAGE_URL=s3://bucket[/prefix][?public_endpoint=https://…]`,
`CONSULTCAM_S3_ENDPOINT_URL` (S3-compatible servers only; unset on AWS) and `CONSULTCAM_S3_SSE_KMS_KEY_ID`
(optional). Credentials and region come from boto3's default chain: `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), `AWS_PROFILE`, `AWS_REGION`/`AWS_DEFAULT_REGION`, web
identity, ECS task or EC2 instance role
(https://boto3.amazonaws.com/v1/documentation/api/latest/guide/credentials.html).

Keys: the port's keys (`sessions/{sessionId}/…`, see `store.py`) live under the prefix, so
`s3://phi-photos/consultcam` stores `consultcam/sessions/{sessionId}/{imageId}.jpg`; `list` strips the prefix
again, so callers never see it.

Every object is written with server-side encryption: SSE-S3 (`AES256`) by default, SSE-KMS
(`aws:kms` with the configured key) when `CONSULTCAM_S3_SSE_KMS_KEY_ID` is set; both the server's own writes
and the phone's presigned PUT carry the header, and `consultcam s3-setup` also sets it as the bucket default.

Presigned URLs are SigV4 query-string authentication, made by botocore (`generate_presigned_url`), never by
hand (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html). Presigning is a local
computation; it makes no request. A URL signed with temporary credentials (an instance or task role, STS)
stops working when those credentials expire, whatever `X-Amz-Expires` says. URLs carry signatures: they are
never logged here, and error messages name the bucket and key, never a URL.

Permissions the web and worker processes need on `arn:aws:s3:::bucket` / `arn:aws:s3:::bucket/prefix/*`:
`s3:PutObject`, `s3:GetObject`, `s3:DeleteObject`, `s3:ListBucket` (without it S3 answers a HEAD of a missing
key with 403 instead of 404, and `head` raises instead of returning None), plus `kms:GenerateDataKey` and
`kms:Decrypt` on the key with SSE-KMS.

boto3 is synchronous: every call runs in a worker thread (`asyncio.to_thread`) on one client per store
(boto3 clients are thread-safe; https://boto3.amazonaws.com/v1/documentation/api/latest/guide/clients.html).
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypedDict, TypeVar
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from consultcam.storage.keys import check_key
from consultcam.storage.store import PresignedRequest, StoredObject

#: Longest a presigned GET may live (seconds): photos are shown, not shared.
MAX_GET_EXPIRES = 900
#: SigV4 query authentication allows at most 7 days.
MAX_SIGV4_EXPIRES = 7 * 24 * 3600
#: DeleteObjects takes at most 1,000 keys per request; ListObjectsV2 returns at most 1,000 per page.
S3_BATCH = 1000
#: Where `check` writes its probe, under the prefix (outside `sessions/`, so the sweeper never sees it).
PROBE_KEY = "readyz/probe"

#: botocore's S3 addressing styles.
Addressing = Literal["path", "virtual"]


class SSEParams(TypedDict, total=False):
    """PutObject's server-side encryption parameters (SSE-S3, or SSE-KMS with `SSEKMSKeyId`)."""

    ServerSideEncryption: Literal["AES256", "aws:kms"]
    SSEKMSKeyId: str


_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_T = TypeVar("_T")


class S3StoreError(RuntimeError):
    """An S3 call failed for a reason the operator must fix (missing bucket, permissions, credentials,
    unreachable endpoint). The message says what failed and what to check; it never contains a URL."""


@dataclass(frozen=True)
class S3Location:
    """A parsed `CONSULTCAM_STORAGE_URL`: bucket, key prefix (`""` or ending in `/`) and the endpoint browsers
    use when it differs from `CONSULTCAM_S3_ENDPOINT_URL` (`public_endpoint` query parameter)."""

    bucket: str
    prefix: str = ""
    public_endpoint_url: str = ""


def parse_s3_url(url: str) -> S3Location:
    """Parse `s3://bucket[/prefix][?public_endpoint=https://host[:port]]`.

    Raises ValueError naming `CONSULTCAM_STORAGE_URL` when the bucket name breaks S3's naming rules
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html) or the prefix is not a
    clean `/`-separated path (letters, digits, `.`, `_`, `-`; no `..`).
    """
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ValueError(
            f"CONSULTCAM_STORAGE_URL must start with s3:// for the S3 store, not {parts.scheme}://"
        )
    bucket = parts.netloc
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ValueError(
            f"CONSULTCAM_STORAGE_URL names the bucket {bucket!r}, which is not a valid S3 bucket name "
            "(3-63 characters: lower-case letters, digits, dots and hyphens). Use s3://bucket/prefix."
        )
    prefix = parts.path.strip("/")
    if prefix:
        try:
            check_key(prefix)
        except ValueError as exc:
            raise ValueError(
                f"CONSULTCAM_STORAGE_URL has the key prefix {prefix!r}: use letters, digits, '.', '_' "
                "and '-' in '/'-separated parts, with no '..'."
            ) from exc
        prefix += "/"
    query = parse_qs(parts.query)
    unknown = set(query) - {"public_endpoint"}
    if unknown:
        raise ValueError(
            f"CONSULTCAM_STORAGE_URL has unknown parameters {sorted(unknown)}; "
            "only public_endpoint is understood."
        )
    public = query.get("public_endpoint", [""])[0].rstrip("/")
    if public and urlsplit(public).scheme not in ("http", "https"):
        raise ValueError("CONSULTCAM_STORAGE_URL: public_endpoint must be an http(s):// URL.")
    return S3Location(bucket, prefix, public)


def _config(addressing_style: Addressing, *, unsigned: bool = False) -> Config:
    """SigV4 always (botocore still presigns virtual-hosted URLs with SigV2 unless told), standard retries,
    short timeouts (readiness waits 3 s), and a connection pool as large as the default thread pool."""
    return Config(
        signature_version=UNSIGNED if unsigned else "s3v4",
        s3={"addressing_style": addressing_style},
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=32,
    )


class S3ObjectStore:
    """The `ObjectStore` port on one S3 bucket, every key under `prefix`.

    `endpoint_url` is the server's endpoint for an S3-compatible store (path-style addressing: MinIO, moto,
    Ceph); unset on AWS, where addressing is virtual-hosted on the regional endpoint
    (`https://bucket.s3.<region>.amazonaws.com`), which a browser can reach without a redirect and a CORS
    failure. `public_endpoint_url` is what browsers reach when that differs from what the server reaches
    (e.g. `http://minio:9000` inside a private network, `https://s3.example.org` outside): presigned URLs
    are made by a second client on that endpoint, because the host is part of the signature.
    `sse_kms_key_id` switches SSE-S3 for SSE-KMS with that key (id, ARN or `alias/…`).
    `page_size` is ListObjectsV2's MaxKeys per page (tests use small pages to cross page boundaries).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str = "",
        public_endpoint_url: str = "",
        sse_kms_key_id: str = "",
        region_name: str | None = None,
        page_size: int = S3_BATCH,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url.rstrip("/")
        self.public_endpoint_url = public_endpoint_url.rstrip("/") or self.endpoint_url
        self.sse_kms_key_id = sse_kms_key_id
        self.page_size = max(1, min(page_size, S3_BATCH))
        addressing: Addressing = "path" if self.endpoint_url else "virtual"
        session = boto3.session.Session(region_name=region_name)
        self.client = session.client("s3", endpoint_url=self.endpoint_url or None, config=_config(addressing))
        if self.public_endpoint_url != self.endpoint_url:
            public_addressing: Addressing = "path" if self.public_endpoint_url else "virtual"
            self.presign_client = session.client(
                "s3", endpoint_url=self.public_endpoint_url or None, config=_config(public_addressing)
            )
        else:
            self.presign_client = self.client
        self.region = self.client.meta.region_name
        self.public_origin: str | None = self._browser_origin(session, addressing)

    @classmethod
    def from_url(cls, url: str, *, endpoint_url: str = "", sse_kms_key_id: str = "") -> S3ObjectStore:
        """The store for `CONSULTCAM_STORAGE_URL=s3://…` (see `parse_s3_url`); ValueError for a bad URL."""
        location = parse_s3_url(url)
        return cls(
            location.bucket,
            location.prefix,
            endpoint_url=endpoint_url,
            public_endpoint_url=location.public_endpoint_url,
            sse_kms_key_id=sse_kms_key_id,
        )

    def _browser_origin(self, session: boto3.session.Session, addressing: Addressing) -> str:
        """`scheme://host[:port]` of the presigned URLs, for the page's CSP `connect-src` and `img-src`.

        Taken from a URL botocore makes, unsigned (no credentials needed), so it is exactly the host the
        browser will be sent to, whatever addressing style and region botocore picks."""
        public_addressing: Addressing = "path" if self.public_endpoint_url else addressing
        unsigned = session.client(
            "s3",
            endpoint_url=self.public_endpoint_url or None,
            config=_config(public_addressing, unsigned=True),
        )
        try:
            url = unsigned.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": f"{self.prefix}origin"}
            )
        finally:
            unsigned.close()
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    # -- keys and encryption -------------------------------------------------------------------------

    def full_key(self, key: str) -> str:
        """The bucket key for a port key: the prefix plus `key` (validated: no `..`, no leading `/`)."""
        return self.prefix + check_key(key)

    def _full_prefix(self, prefix: str) -> str:
        """A port prefix as a bucket prefix with directory semantics: `sessions/abc` matches
        `sessions/abc/…`, never `sessions/abcdef/…` (as the folder store does)."""
        stripped = prefix.strip("/")
        return self.prefix + (check_key(stripped) + "/" if stripped else "")

    @property
    def sse_params(self) -> SSEParams:
        """PutObject parameters for server-side encryption: SSE-S3, or SSE-KMS with the configured key."""
        if self.sse_kms_key_id:
            return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.sse_kms_key_id}
        return {"ServerSideEncryption": "AES256"}

    @property
    def sse_headers(self) -> dict[str, str]:
        """The HTTP headers `sse_params` become (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html),
        which a presigned PUT signs and the browser must therefore send."""
        if self.sse_kms_key_id:
            return {
                "x-amz-server-side-encryption": "aws:kms",
                "x-amz-server-side-encryption-aws-kms-key-id": self.sse_kms_key_id,
            }
        return {"x-amz-server-side-encryption": "AES256"}

    # -- calls -----------------------------------------------------------------------------------------

    async def _call(self, operation: str, key: str, fn: Callable[[], _T]) -> _T:
        """Run a blocking boto3 call in a thread, turning botocore failures into S3StoreError."""
        try:
            return await asyncio.to_thread(fn)
        except ClientError as exc:
            raise self._client_error(operation, key, exc) from exc
        except NoCredentialsError as exc:
            raise S3StoreError(
                f"S3 {operation}: no AWS credentials found. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "or AWS_PROFILE, or run with an instance or task role."
            ) from exc
        except EndpointConnectionError as exc:
            where = self.endpoint_url or f"S3 in {self.region}"
            raise S3StoreError(
                f"S3 {operation}: cannot reach {where}. Check CONSULTCAM_S3_ENDPOINT_URL and the network."
            ) from exc
        except BotoCoreError as exc:
            raise S3StoreError(
                f"S3 {operation} on bucket {self.bucket!r} failed: {type(exc).__name__}."
            ) from exc

    def _client_error(self, operation: str, key: str, exc: ClientError) -> S3StoreError:
        error = exc.response.get("Error", {})
        code = error.get("Code") or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
        what = (
            f"S3 {operation} on s3://{self.bucket}/{key}"
            if key
            else f"S3 {operation} on bucket {self.bucket!r}"
        )
        missing = "The bucket does not exist: create it (in this region) or fix CONSULTCAM_STORAGE_URL."
        denied = "The credentials lack permission: see the IAM actions in consultcam/storage/s3.py."
        elsewhere = "The bucket is in another region: set AWS_REGION to the bucket's region."
        hint = {
            "NoSuchBucket": missing,
            "404": missing,
            "AccessDenied": denied,
            "403": denied,
            "InvalidAccessKeyId": "The AWS access key is unknown to this endpoint: check the credentials.",
            "SignatureDoesNotMatch": "The AWS secret key does not match the access key: check them.",
            "PermanentRedirect": elsewhere,
            "301": elsewhere,
            "KMS.NotFoundException": "The KMS key in CONSULTCAM_S3_SSE_KMS_KEY_ID does not exist here.",
        }.get(code, "")
        return S3StoreError(f"{what} failed: {code}. {hint}".strip())

    # -- the port -------------------------------------------------------------------------------------

    async def presign_put(
        self, key: str, *, content_type: str, size_bytes: int, expires_in: int
    ) -> PresignedRequest:
        """A SigV4 presigned PutObject URL for exactly `size_bytes` bytes of `content_type`, encrypted.

        Signed (`X-Amz-SignedHeaders`): `content-length`, `content-type`, `host`,
        `x-amz-server-side-encryption` (and `x-amz-server-side-encryption-aws-kms-key-id` with SSE-KMS), plus
        the method, bucket, key and `X-Amz-Expires`. The payload itself is not (query-string auth uses
        `UNSIGNED-PAYLOAD`); the size is bound by Content-Length, and registration re-checks size and content.
        S3 refuses with 403 `SignatureDoesNotMatch` a request whose signed headers differ: another type,
        another length or a missing encryption header.

        `headers` is exactly what the browser must set: `Content-Type` and the encryption header(s). It does
        not set Content-Length (a forbidden header name in fetch/XHR; the browser sends the body's length,
        which matches when the body is the announced file) nor Host.
        Raises S3StoreError when there are no credentials to sign with.
        """
        full = self.full_key(key)
        expires = max(1, min(expires_in, MAX_SIGV4_EXPIRES))
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": full,
            "ContentType": content_type,
            "ContentLength": size_bytes,
            **self.sse_params,
        }
        url = await self._call(
            "presign PutObject",
            full,
            lambda: self.presign_client.generate_presigned_url(
                "put_object", Params=params, ExpiresIn=expires, HttpMethod="PUT"
            ),
        )
        return PresignedRequest(
            url=url,
            method="PUT",
            expires_at=datetime.now(UTC) + timedelta(seconds=expires),
            headers={"Content-Type": content_type, **self.sse_headers},
        )

    async def presign_get(self, key: str, *, expires_in: int) -> str:
        """A SigV4 presigned GetObject URL valid for `min(expires_in, 900)` seconds; S3 answers it with
        `Cache-Control: no-store` (`response-cache-control`, part of the signed query). Only `host` is a
        signed header, so an `<img src>` works. Raises S3StoreError when there are no credentials to sign
        with."""
        full = self.full_key(key)
        expires = max(1, min(expires_in, MAX_GET_EXPIRES))
        params = {"Bucket": self.bucket, "Key": full, "ResponseCacheControl": "no-store"}
        return await self._call(
            "presign GetObject",
            full,
            lambda: self.presign_client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires
            ),
        )

    async def head(self, key: str) -> StoredObject | None:
        """HeadObject: size and LastModified, or None on 404. A missing bucket reads as None too (a HEAD
        answer has no error code to tell them apart; `check` does). Raises S3StoreError otherwise (a 403 for
        a missing key means the credentials lack s3:ListBucket)."""
        full = self.full_key(key)

        def call() -> StoredObject | None:
            try:
                response = self.client.head_object(Bucket=self.bucket, Key=full)
            except ClientError as exc:
                if _is_not_found(exc):
                    return None
                raise
            return StoredObject(key, int(response["ContentLength"]), _utc(response["LastModified"]))

        return await self._call("HeadObject", full, call)

    async def get(self, key: str) -> bytes:
        """GetObject's body; raises KeyError when there is no such object, S3StoreError on other failures."""
        full = self.full_key(key)

        def call() -> bytes | None:
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=full)
            except ClientError as exc:
                if _is_not_found(exc):
                    return None
                raise
            with response["Body"] as body:
                return body.read()

        data = await self._call("GetObject", full, call)
        if data is None:
            raise KeyError(key)
        return data

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        """PutObject with server-side encryption (atomic: readers see the old object or the new one)."""
        full = self.full_key(key)
        await self._call(
            "PutObject",
            full,
            lambda: self.client.put_object(
                Bucket=self.bucket, Key=full, Body=data, ContentType=content_type, **self.sse_params
            ),
        )

    async def delete(self, *keys: str) -> None:
        """DeleteObjects in batches of 1,000 (S3 reports missing keys as deleted). Raises S3StoreError naming
        the first key S3 could not delete."""
        full_keys = [self.full_key(key) for key in keys]
        await self._delete_full(full_keys)

    async def _delete_full(self, full_keys: builtins.list[str]) -> None:
        for start in range(0, len(full_keys), S3_BATCH):
            batch = full_keys[start : start + S3_BATCH]
            delete = functools.partial(
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            response = await self._call("DeleteObjects", "", delete)
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise S3StoreError(
                    f"S3 DeleteObjects on bucket {self.bucket!r}: {len(errors)} of {len(batch)} keys not "
                    f"deleted, first s3://{self.bucket}/{first.get('Key')}: {first.get('Code')}."
                )

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix` (ListObjectsV2 pages, then DeleteObjects batches); returns how
        many there were."""
        full_prefix = self._full_prefix(prefix)
        found = await self._list_full(full_prefix)
        await self._delete_full([key for key, _size, _modified in found])
        return len(found)

    async def list(self, prefix: str) -> builtins.list[StoredObject]:
        """Every object under `prefix` (ListObjectsV2, all pages), keyed as the port sees them (no prefix)."""
        full_prefix = self._full_prefix(prefix)
        return [
            StoredObject(key.removeprefix(self.prefix), size, modified)
            for key, size, modified in await self._list_full(full_prefix)
        ]

    async def _list_full(self, full_prefix: str) -> builtins.list[tuple[str, int, datetime]]:
        def call() -> builtins.list[tuple[str, int, datetime]]:
            paginator = self.client.get_paginator("list_objects_v2")
            pages = paginator.paginate(
                Bucket=self.bucket, Prefix=full_prefix, PaginationConfig={"PageSize": self.page_size}
            )
            return [
                (item["Key"], int(item["Size"]), _utc(item["LastModified"]))
                for page in pages
                for item in page.get("Contents", [])
            ]

        return await self._call("ListObjectsV2", full_prefix, call)

    async def check(self) -> None:
        """Readiness: HeadBucket (the bucket exists and these credentials reach it), then a PutObject and
        DeleteObject of `<prefix>readyz/probe` (they may write). Raises S3StoreError saying what to fix."""
        await self._call("HeadBucket", "", lambda: self.client.head_bucket(Bucket=self.bucket))
        probe = self.prefix + PROBE_KEY
        await self._call(
            "PutObject",
            probe,
            lambda: self.client.put_object(
                Bucket=self.bucket, Key=probe, Body=b"ok", ContentType="text/plain", **self.sse_params
            ),
        )
        await self._call(
            "DeleteObject", probe, lambda: self.client.delete_object(Bucket=self.bucket, Key=probe)
        )

    async def close(self) -> None:
        """Close the clients' connection pools."""
        self.client.close()
        if self.presign_client is not self.client:
            self.presign_client.close()


def _is_not_found(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("404", "NoSuchKey", "NotFound") or (status == 404 and code != "NoSuchBucket")


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
