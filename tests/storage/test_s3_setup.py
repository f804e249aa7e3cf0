"""`consultcam s3-setup` (storage/setup.py) against moto over HTTP: CORS for the public origin, public access
blocked, default encryption, the 1-day lifecycle backstop on the prefix; idempotent; clear errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import httpx
import pytest

from consultcam.config import Settings
from consultcam.storage.s3 import S3ObjectStore
from consultcam.storage.setup import S3SetupError, browser_origin, setup_bucket
from tests.conftest import jpeg_bytes
from tests.storage.moto_server import REGION

ORIGIN = "https://consultcam.example.org"


def s3_settings(tmp_path: Path, url: str, endpoint: str, **extra: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", storage_url=url, s3_endpoint_url=endpoint, **extra)


async def test_setup_applies_cors_public_access_block_encryption_and_lifecycle(
    tmp_path, bucket, moto_endpoint, s3_admin
):
    settings = s3_settings(tmp_path, f"s3://{bucket}/clinic-a", moto_endpoint)

    lines = await setup_bucket(settings, f"{ORIGIN}/some/page")

    assert len(lines) == 6, lines
    assert all("(set" in line for line in lines[1:5]), lines
    assert "write probe" in lines[-1]
    [cors] = s3_admin.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert cors["ID"] == "consultcam:clinic-a/"
    assert cors["AllowedOrigins"] == [ORIGIN]
    assert sorted(cors["AllowedMethods"]) == ["GET", "HEAD", "PUT"]
    assert set(cors["AllowedHeaders"]) == {
        "content-type",
        "x-amz-*",
        "x-amz-server-side-encryption",
        "x-amz-server-side-encryption-aws-kms-key-id",
    }
    assert cors["ExposeHeaders"] == ["ETag"]
    assert cors["MaxAgeSeconds"] == 3600
    assert s3_admin.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    [sse] = s3_admin.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert sse["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    [rule] = s3_admin.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["ID"] == "consultcam:clinic-a/"
    assert rule["Status"] == "Enabled"
    assert rule["Filter"] == {"Prefix": "clinic-a/"}
    assert rule["Expiration"] == {"Days": 1}
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert s3_admin.list_objects_v2(Bucket=bucket)["KeyCount"] == 0  # the probe is gone


async def test_running_setup_again_changes_nothing(tmp_path, bucket, moto_endpoint, s3_admin):
    settings = s3_settings(tmp_path, f"s3://{bucket}/clinic-a", moto_endpoint)
    await setup_bucket(settings, ORIGIN)
    before = (
        s3_admin.get_bucket_cors(Bucket=bucket)["CORSRules"],
        s3_admin.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"],
    )

    lines = await setup_bucket(settings, ORIGIN)

    assert all("(unchanged" in line for line in lines[1:5]), lines
    after = (
        s3_admin.get_bucket_cors(Bucket=bucket)["CORSRules"],
        s3_admin.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"],
    )
    assert after == before


async def test_setup_keeps_other_rules_and_replaces_its_own(tmp_path, bucket, moto_endpoint, s3_admin):
    s3_admin.put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={
            "CORSRules": [{"ID": "website", "AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}]
        },
    )
    s3_admin.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 30}}
            ]
        },
    )
    settings = s3_settings(tmp_path, f"s3://{bucket}/clinic-a", moto_endpoint)
    await setup_bucket(settings, "https://old.example.org")

    lines = await setup_bucket(settings, ORIGIN)  # the practice moved its pages

    assert "1 other rule(s) kept" in lines[1]
    rules = {rule["ID"]: rule for rule in s3_admin.get_bucket_cors(Bucket=bucket)["CORSRules"]}
    assert set(rules) == {"website", "consultcam:clinic-a/"}
    assert rules["consultcam:clinic-a/"]["AllowedOrigins"] == [ORIGIN]
    lifecycle = s3_admin.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert sorted(rule["ID"] for rule in lifecycle) == ["consultcam:clinic-a/", "logs"]


async def test_the_cors_rule_lets_the_page_upload_and_show_photos(tmp_path, bucket, moto_endpoint):
    """A browser's preflight for the presigned PUT (Content-Type and the encryption header), then the PUT and
    the GET, as the page's origin: the CORS answers a browser needs."""
    settings = s3_settings(tmp_path, f"s3://{bucket}/clinic-a", moto_endpoint)
    await setup_bucket(settings, ORIGIN)
    store = S3ObjectStore(bucket, "clinic-a", endpoint_url=moto_endpoint)
    data = jpeg_bytes()
    presigned = await store.presign_put(
        "sessions/s/uploads/i", content_type="image/jpeg", size_bytes=len(data), expires_in=60
    )

    preflight = httpx.options(
        presigned.url,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": ",".join(h.lower() for h in presigned.headers),
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    # From our rule, not moto's own server-wide CORS layer (which would add DELETE, PATCH, POST).
    assert sorted(m.strip() for m in preflight.headers["access-control-allow-methods"].split(",")) == [
        "GET",
        "HEAD",
        "PUT",
    ]
    allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "x-amz-server-side-encryption"} <= allowed
    put = httpx.put(presigned.url, content=data, headers={**presigned.headers, "Origin": ORIGIN})
    assert put.status_code == 200
    assert put.headers["access-control-allow-origin"] == ORIGIN
    assert "etag" in put.headers["access-control-expose-headers"].lower()
    get = httpx.get(
        await store.presign_get("sessions/s/uploads/i", expires_in=60), headers={"Origin": ORIGIN}
    )
    assert get.headers["access-control-allow-origin"] == ORIGIN
    assert get.content == data

    refused = httpx.options(
        presigned.url, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"}
    )
    # S3 refuses a preflight no rule matches (moto's server-wide CORS layer still adds its headers to the
    # 403, so only the status is S3's answer here).
    assert refused.status_code == 403
    await store.close()


async def test_setup_with_a_kms_key_sets_sse_kms_with_a_bucket_key(tmp_path, bucket, moto_endpoint, s3_admin):
    settings = s3_settings(tmp_path, f"s3://{bucket}", moto_endpoint, s3_sse_kms_key_id="alias/consultcam")

    lines = await setup_bucket(settings, ORIGIN)

    [sse] = s3_admin.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert sse["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": "alias/consultcam",
    }
    assert sse["BucketKeyEnabled"] is True
    assert "SSE-KMS with key alias/consultcam" in lines[3]
    assert "WHOLE bucket" in lines[4]  # no prefix: the operator is told
    [rule] = s3_admin.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["ID"] == "consultcam:/"
    assert rule["Filter"] == {"Prefix": ""}


async def test_setup_warns_when_versioning_would_keep_deleted_photos(
    tmp_path, bucket, moto_endpoint, s3_admin
):
    s3_admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    lines = await setup_bucket(s3_settings(tmp_path, f"s3://{bucket}/p", moto_endpoint), ORIGIN)
    assert lines[-2].startswith("WARNING: versioning is on")


async def test_setup_refuses_a_missing_bucket_with_what_to_do(tmp_path, moto_endpoint):
    settings = s3_settings(tmp_path, "s3://consultcam-missing-bucket/p", moto_endpoint)
    with pytest.raises(S3SetupError, match="does not exist") as raised:
        await setup_bucket(settings, ORIGIN)
    assert "aws s3api create-bucket --bucket consultcam-missing-bucket" in str(raised.value)
    assert f"LocationConstraint={REGION}" in str(raised.value)


async def test_setup_refuses_a_bucket_in_another_region(tmp_path, moto_endpoint):
    frankfurt = boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-central-1")
    frankfurt.create_bucket(
        Bucket="consultcam-in-frankfurt", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    frankfurt.close()
    settings = s3_settings(tmp_path, "s3://consultcam-in-frankfurt/p", moto_endpoint)
    with pytest.raises(S3SetupError, match="AWS_REGION=eu-central-1"):
        await setup_bucket(settings, ORIGIN)


async def test_setup_needs_an_s3_url_and_a_real_origin(tmp_path, bucket, moto_endpoint):
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        await setup_bucket(Settings(data_dir=tmp_path / "data"), ORIGIN)
    settings = s3_settings(tmp_path, f"s3://{bucket}/p", moto_endpoint)
    for bad in ("*", "consultcam.example.org", "ftp://x", ""):
        with pytest.raises(ValueError, match="public origin"):
            await setup_bucket(settings, bad)
    assert (
        browser_origin("HTTPS://Consultcam.Example.org:8443/m/abc?x=1")
        == "https://consultcam.example.org:8443"
    )


async def test_a_server_without_bucket_cors_gets_a_warning_and_the_rest_is_set_up(
    tmp_path, bucket, moto_endpoint, s3_admin, monkeypatch
):
    """MinIO answers PutBucketCors with 501 NotImplemented (it sets CORS server-wide): played here by a
    botocore before-call hook that answers in the server's place."""
    original = S3ObjectStore.from_url

    def without_cors(url: str, **kwargs: Any) -> S3ObjectStore:
        store = original(url, **kwargs)

        def not_implemented(**_: Any) -> tuple[Any, dict[str, Any]]:
            http = SimpleNamespace(status_code=501, headers={}, content=b"")
            return http, {"Error": {"Code": "NotImplemented"}, "ResponseMetadata": {"HTTPStatusCode": 501}}

        store.client.meta.events.register("before-call.s3.GetBucketCors", not_implemented)
        return store

    monkeypatch.setattr(S3ObjectStore, "from_url", staticmethod(without_cors))

    lines = await setup_bucket(s3_settings(tmp_path, f"s3://{bucket}/p", moto_endpoint), ORIGIN)

    assert lines[1].startswith("WARNING: CORS: this server does not support it (NotImplemented)")
    assert "(set)" in lines[3]
    assert s3_admin.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"][0]["ID"] == "consultcam:p/"
