"""`consultcam s3-setup`: prepare the S3 bucket of `CONSULTCAM_STORAGE_URL` for consultcam. Idempotent.

What it does, in order (each an S3 API call; https://docs.aws.amazon.com/AmazonS3/latest/API/):

1. HeadBucket: the bucket exists, these credentials reach it, and it is in the region the clients sign for
   (`x-amz-bucket-region`; presigned URLs signed for another region are refused by S3).
2. PutBucketCors: one rule, ID `consultcam:<prefix>`, lets the public origin (the pages' origin) PUT, GET and
   HEAD with the headers a presigned upload needs (`content-type`, `x-amz-*`) and read `ETag`. Other rules on
   the bucket are kept (PutBucketCors replaces the whole configuration, so the rules are merged first).
3. PutPublicAccessBlock: all four settings on (no public ACLs, no public policies).
4. PutBucketEncryption: default encryption SSE-S3 (`AES256`), or SSE-KMS with `CONSULTCAM_S3_SSE_KMS_KEY_ID`
   and an S3 Bucket Key (fewer KMS calls). consultcam also asks for it on every write; the default covers
   anything else.
5. PutBucketLifecycleConfiguration: rule `consultcam:<prefix>` expires objects under the prefix after 1 day,
   and noncurrent versions and incomplete multipart uploads too; other rules are kept. It is a backstop only:
   S3 rounds expiry to the next midnight UTC, so it acts 24-48 h after a write; the sweeper is what deletes
   within the hour.
6. A write probe through the store (`check`): PutObject with the encryption header, then DeleteObject.

It warns when versioning is on (a deleted photo would stay as a noncurrent version until the rule removes it)
and when there is no prefix (the lifecycle rule then covers the whole bucket).

Permissions: s3:ListBucket, s3:GetBucketCORS/PutBucketCORS, s3:GetBucketPublicAccessBlock/
PutBucketPublicAccessBlock, s3:GetEncryptionConfiguration/PutEncryptionConfiguration,
s3:GetLifecycleConfiguration/PutLifecycleConfiguration, s3:GetBucketVersioning, s3:PutObject, s3:DeleteObject.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from consultcam.config import Settings
from consultcam.storage.s3 import S3ObjectStore, S3StoreError

if TYPE_CHECKING:  # the stubs are a development dependency (boto3-stubs[s3])
    from mypy_boto3_s3.type_defs import (
        CORSRuleTypeDef,
        LifecycleRuleTypeDef,
        PublicAccessBlockConfigurationTypeDef,
        ServerSideEncryptionRuleTypeDef,
    )

#: How long a browser may cache the CORS preflight (seconds).
CORS_MAX_AGE = 3600
#: The lifecycle backstop, in days (S3's smallest unit).
LIFECYCLE_DAYS = 1

_T = TypeVar("_T")


class S3SetupError(S3StoreError):
    """The bucket cannot be set up: the message says what is wrong and what to do."""


def browser_origin(url: str) -> str:
    """`scheme://host[:port]` of `url` (e.g. CONSULTCAM_PUBLIC_URL), lower-cased; raises ValueError unless it
    is an http(s) URL with a host. A wildcard is refused: these are patients' photos."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "The public origin must be the pages' http(s) URL, like https://consultcam.example.org, "
            f"not {url!r}."
        )
    return f"{parts.scheme}://{parts.netloc}".lower()


def cors_rule(rule_id: str, origin: str) -> CORSRuleTypeDef:
    """The CORS rule a presigned upload and a presigned image need from `origin`.

    S3 answers a preflight with the requested headers a rule matches, so `x-amz-*` would do; the encryption
    headers are also named because some S3-compatible servers (moto, for one) answer with the rule's list
    verbatim, and a browser reads `x-amz-*` there as a header name, not a pattern."""
    return {
        "ID": rule_id,
        "AllowedOrigins": [origin],
        "AllowedMethods": ["PUT", "GET", "HEAD"],
        "AllowedHeaders": [
            "content-type",
            "x-amz-server-side-encryption",
            "x-amz-server-side-encryption-aws-kms-key-id",
            "x-amz-*",
        ],
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": CORS_MAX_AGE,
    }


def lifecycle_rule(rule_id: str, prefix: str) -> LifecycleRuleTypeDef:
    """Expire everything under `prefix` after a day: objects, noncurrent versions, unfinished multipart
    uploads."""
    return {
        "ID": rule_id,
        "Status": "Enabled",
        "Filter": {"Prefix": prefix},
        "Expiration": {"Days": LIFECYCLE_DAYS},
        "NoncurrentVersionExpiration": {"NoncurrentDays": LIFECYCLE_DAYS},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": LIFECYCLE_DAYS},
    }


def encryption_rule(kms_key_id: str) -> ServerSideEncryptionRuleTypeDef:
    """Default encryption: SSE-KMS with an S3 Bucket Key when a key is configured, else SSE-S3."""
    if kms_key_id:
        return {
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_id},
            "BucketKeyEnabled": True,
        }
    return {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}


async def setup_bucket(settings: Settings, public_origin: str) -> list[str]:
    """Set up the bucket of `settings.storage_url` (must be `s3://…`) for pages served from `public_origin`
    (a URL; only its origin is used). Returns one human-readable line per step, each saying whether it changed
    something; running it again changes nothing. Raises ValueError for a bad setting or origin, S3SetupError
    (with what to fix) when the bucket is missing, unreachable, in another region or the credentials lack a
    permission."""
    origin = browser_origin(public_origin)
    url = settings.resolved_storage_url
    if not url.startswith("s3://"):
        raise ValueError(
            f"CONSULTCAM_STORAGE_URL is {url.split('://')[0]}://…; s3-setup is for s3://bucket/prefix."
        )
    store = S3ObjectStore.from_url(
        url, endpoint_url=settings.s3_endpoint_url, sse_kms_key_id=settings.s3_sse_kms_key_id
    )
    try:
        lines = await asyncio.to_thread(_setup, store, origin)
        try:
            await store.check()
        except S3StoreError as exc:
            raise S3SetupError(f"The bucket is set up, but the write probe failed: {exc}") from exc
        lines.append(f"write probe: PutObject and DeleteObject under '{store.prefix}' ok")
        return lines
    finally:
        await store.close()


class _NotSupported(Exception):
    """The server does not implement this bucket setting (S3-compatible servers: 501 NotImplemented)."""


def _setup(store: S3ObjectStore, origin: str) -> list[str]:
    client, bucket = store.client, store.bucket
    where = store.endpoint_url or f"AWS S3 {store.region}"
    head = _call(store, "HeadBucket", "s3:ListBucket", lambda: client.head_bucket(Bucket=bucket))
    bucket_region = head.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
    if bucket_region and store.region and bucket_region != store.region:
        raise S3SetupError(
            f"Bucket {bucket!r} is in region {bucket_region}, but the clients sign for {store.region}: "
            f"set AWS_REGION={bucket_region} (presigned URLs signed for another region are refused)."
        )
    lines = [f"bucket {bucket!r} ({where}, region {bucket_region or store.region}): reachable"]
    steps: list[tuple[str, Callable[[], str]]] = [
        ("CORS", lambda: _cors(store, origin)),
        ("public access", lambda: _public_access_block(store)),
        ("default encryption", lambda: _encryption(store)),
        ("lifecycle", lambda: _lifecycle(store)),
    ]
    for name, step in steps:
        try:
            lines.append(f"{name}: {step()}")
        except _NotSupported as exc:
            lines.append(
                f"WARNING: {name}: this server does not support it ({exc}); "
                "configure it on the server itself."
            )
    versioning: Mapping[str, Any]
    try:
        versioning = _call(
            store,
            "GetBucketVersioning",
            "s3:GetBucketVersioning",
            lambda: client.get_bucket_versioning(Bucket=bucket),
        )
    except _NotSupported:
        versioning = {}
    if versioning.get("Status") == "Enabled":
        lines.append(
            "WARNING: versioning is on: a deleted photo stays as a noncurrent version until the lifecycle "
            "rule removes it (1-2 days). Use a bucket without versioning, or suspend it."
        )
    return lines


def _rule_id(store: S3ObjectStore) -> str:
    """One CORS rule and one lifecycle rule per deployment (prefix), so deployments can share a bucket."""
    return f"consultcam:{store.prefix or '/'}"


def _cors(store: S3ObjectStore, origin: str) -> str:
    """Our CORS rule for `origin`, merged with the bucket's other rules (PutBucketCors replaces them all)."""
    client, bucket, rule_id = store.client, store.bucket, _rule_id(store)
    existing = _optional(
        store,
        "GetBucketCors",
        "s3:GetBucketCORS",
        ("NoSuchCORSConfiguration",),
        "CORSRules",
        lambda: client.get_bucket_cors(Bucket=bucket),
    )
    wanted = cors_rule(rule_id, origin)
    others = [rule for rule in existing if rule.get("ID") != rule_id]
    if [rule for rule in existing if rule.get("ID") == rule_id] == [wanted]:
        state = "unchanged"
    else:
        _call(
            store,
            "PutBucketCors",
            "s3:PutBucketCORS",
            lambda: client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [*others, wanted]}),
        )
        state = "set"
    kept = f"; {len(others)} other rule(s) kept" if others else ""
    return f"rule {rule_id!r} lets {origin} PUT, GET and HEAD ({state}{kept})"


def _public_access_block(store: S3ObjectStore) -> str:
    client, bucket = store.client, store.bucket
    blocks: PublicAccessBlockConfigurationTypeDef = {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    current = _optional(
        store,
        "GetPublicAccessBlock",
        "s3:GetBucketPublicAccessBlock",
        ("NoSuchPublicAccessBlockConfiguration",),
        "PublicAccessBlockConfiguration",
        lambda: client.get_public_access_block(Bucket=bucket),
        default={},
    )
    if current == blocks:
        state = "unchanged"
    else:
        _call(
            store,
            "PutPublicAccessBlock",
            "s3:PutBucketPublicAccessBlock",
            lambda: client.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=blocks),
        )
        state = "set"
    return f"blocked, all four settings on ({state})"


def _encryption(store: S3ObjectStore) -> str:
    client, bucket = store.client, store.bucket
    wanted = encryption_rule(store.sse_kms_key_id)
    current = _optional(
        store,
        "GetBucketEncryption",
        "s3:GetEncryptionConfiguration",
        ("ServerSideEncryptionConfigurationNotFoundError",),
        "ServerSideEncryptionConfiguration",
        lambda: client.get_bucket_encryption(Bucket=bucket),
        default={},
    ).get("Rules", [])
    described = (
        f"SSE-KMS with key {store.sse_kms_key_id} and a bucket key"
        if store.sse_kms_key_id
        else "SSE-S3 (AES256)"
    )
    if [_sse_essentials(rule) for rule in current] == [_sse_essentials(wanted)]:
        return f"{described} (unchanged)"
    _call(
        store,
        "PutBucketEncryption",
        "s3:PutEncryptionConfiguration",
        lambda: client.put_bucket_encryption(
            Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [wanted]}
        ),
    )
    was = ", ".join(r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm", "?") for r in current)
    return f"{described} (set; was {was})" if was else f"{described} (set)"


def _lifecycle(store: S3ObjectStore) -> str:
    """Our expiry rule on the prefix, merged with the bucket's other rules (the Put replaces them all)."""
    client, bucket, prefix, rule_id = store.client, store.bucket, store.prefix, _rule_id(store)
    rules = _optional(
        store,
        "GetBucketLifecycleConfiguration",
        "s3:GetLifecycleConfiguration",
        ("NoSuchLifecycleConfiguration",),
        "Rules",
        lambda: client.get_bucket_lifecycle_configuration(Bucket=bucket),
    )
    wanted = lifecycle_rule(rule_id, prefix)
    others = [rule for rule in rules if rule.get("ID") != rule_id]
    mine = [rule for rule in rules if rule.get("ID") == rule_id]
    if [_lifecycle_essentials(rule) for rule in mine] == [_lifecycle_essentials(wanted)]:
        state = "unchanged"
    else:
        _call(
            store,
            "PutBucketLifecycleConfiguration",
            "s3:PutLifecycleConfiguration",
            lambda: client.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": [*others, wanted]}
            ),
        )
        state = "set"
    kept = f"; {len(others)} other rule(s) kept" if others else ""
    scope = f"under '{prefix}'" if prefix else "in the WHOLE bucket (no prefix in CONSULTCAM_STORAGE_URL)"
    return (
        f"rule {rule_id!r} expires objects {scope} after {LIFECYCLE_DAYS} day, a backstop to the sweeper "
        f"({state}{kept})"
    )


def _sse_essentials(rule: Mapping[str, Any]) -> tuple[Any, ...]:
    default = rule.get("ApplyServerSideEncryptionByDefault", {})
    return default.get("SSEAlgorithm"), default.get("KMSMasterKeyID"), bool(rule.get("BucketKeyEnabled"))


def _lifecycle_essentials(rule: Mapping[str, Any]) -> tuple[Any, ...]:
    prefix = rule.get("Filter", {}).get("Prefix", rule.get("Prefix", ""))
    return (
        rule.get("Status"),
        prefix,
        rule.get("Expiration", {}).get("Days"),
        rule.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays"),
        rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation"),
    )


def _optional(
    store: S3ObjectStore,
    operation: str,
    action: str,
    missing_codes: tuple[str, ...],
    field: str,
    fn: Callable[[], Mapping[str, Any]],
    default: Any = None,
) -> Any:
    """A Get…Configuration call whose "not configured" error means empty."""
    try:
        return fn().get(field, [] if default is None else default)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in missing_codes:
            return [] if default is None else default
        _raise_if_unsupported(exc)
        raise _setup_error(store, operation, action, exc) from exc
    except BotoCoreError as exc:
        raise _transport_error(store, operation, exc) from exc


def _call(store: S3ObjectStore, operation: str, action: str, fn: Callable[[], _T]) -> _T:
    try:
        return fn()
    except ClientError as exc:
        if operation != "HeadBucket":
            _raise_if_unsupported(exc)
        raise _setup_error(store, operation, action, exc) from exc
    except BotoCoreError as exc:
        raise _transport_error(store, operation, exc) from exc


def _raise_if_unsupported(exc: ClientError) -> None:
    code = exc.response.get("Error", {}).get("Code") or ""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if status == 501 or code in ("NotImplemented", "XNotImplemented"):
        raise _NotSupported(code or "HTTP 501") from exc


def _setup_error(store: S3ObjectStore, operation: str, action: str, exc: ClientError) -> S3SetupError:
    code = exc.response.get("Error", {}).get("Code") or "?"
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    bucket, region = store.bucket, store.region
    if operation == "HeadBucket" and (status == 404 or code in ("404", "NoSuchBucket")):
        return S3SetupError(
            f"Bucket {bucket!r} does not exist at {store.endpoint_url or 'AWS S3'}. Create it in {region} "
            f"(aws s3api create-bucket --bucket {bucket} --region {region} "
            f"--create-bucket-configuration LocationConstraint={region}), or fix CONSULTCAM_STORAGE_URL; "
            "then run consultcam s3-setup again."
        )
    if status == 403 or code in ("AccessDenied", "403", "AllAccessDisabled"):
        return S3SetupError(
            f"{operation} on bucket {bucket!r} was refused ({code}): the credentials in use lack {action} on "
            f"arn:aws:s3:::{bucket}, or the bucket belongs to another account. Check AWS_PROFILE / "
            "AWS_ACCESS_KEY_ID and the IAM policy."
        )
    if status == 301 or code == "PermanentRedirect":
        return S3SetupError(f"Bucket {bucket!r} is not in {region}: set AWS_REGION to the bucket's region.")
    return S3SetupError(f"{operation} on bucket {bucket!r} failed: {code} (HTTP {status}).")


def _transport_error(store: S3ObjectStore, operation: str, exc: BotoCoreError) -> S3SetupError:
    if isinstance(exc, NoCredentialsError):
        return S3SetupError(
            "No AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, "
            "or run with an instance or task role."
        )
    if isinstance(exc, EndpointConnectionError):
        return S3SetupError(
            f"Cannot reach {store.endpoint_url or 'AWS S3 in ' + str(store.region)} for {operation}: check "
            "CONSULTCAM_S3_ENDPOINT_URL, AWS_REGION and the network."
        )
    return S3SetupError(f"{operation} on bucket {store.bucket!r} failed: {type(exc).__name__}.")
