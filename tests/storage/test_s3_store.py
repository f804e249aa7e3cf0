"""The S3 adapter against a real S3 protocol server (moto, over HTTP): presigned PUT and GET made by botocore,
encryption on every object, keys under the prefix, paginated list and batched deletes, readiness errors.

moto does not check signatures, so what S3 itself would refuse (another Content-Type, another length, a
missing encryption header) is shown by checking the presigned URL against botocore's own SigV4 signer: the
signature matches the request the browser sends with the returned headers, and no longer matches when any
signed header differs (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import botocore.auth
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from consultcam.storage import s3 as s3_module
from consultcam.storage.keys import image_key, session_prefix, upload_key
from consultcam.storage.registry import create_store
from consultcam.storage.s3 import S3ObjectStore, S3StoreError, parse_s3_url
from tests.conftest import jpeg_bytes
from tests.storage.moto_server import ACCESS_KEY, REGION, SECRET_KEY, free_port

PREFIX = "clinic-a/photos/"


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def signed_headers(url: str) -> list[str]:
    return query(url)["X-Amz-SignedHeaders"].split(";")


def sigv4_matches(url: str, request: httpx.Request) -> bool:
    """Verify a presigned URL as S3 does: recompute the SigV4 signature with botocore's signer over the
    headers the URL says are signed, taken from the request actually sent, at the URL's own X-Amz-Date."""
    params = query(url)
    parts = urlsplit(url)
    operation = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.startswith("X-Amz-")
    ]
    bare = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(operation), ""))
    names = params["X-Amz-SignedHeaders"].split(";")
    if any(name not in request.headers for name in names):
        return False
    aws_request = AWSRequest(method=request.method, url=bare, headers={n: request.headers[n] for n in names})
    scope_region = params["X-Amz-Credential"].split("/")[2]
    signer = botocore.auth.S3SigV4QueryAuth(
        Credentials(ACCESS_KEY, SECRET_KEY), "s3", scope_region, expires=int(params["X-Amz-Expires"])
    )
    signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda *a, **k: signed_at  # type: ignore[assignment]
    try:
        signer.add_auth(aws_request)
    finally:
        botocore.auth.get_current_datetime = original
    return query(aws_request.url)["X-Amz-Signature"] == params["X-Amz-Signature"]


# -- presigned PUT ---------------------------------------------------------------------------------------


async def test_a_presigned_put_stores_the_bytes_encrypted_under_the_prefix(store, s3_admin, bucket):
    data = jpeg_bytes()
    key = upload_key("sess1", "img1")

    presigned = await store.presign_put(key, content_type="image/jpeg", size_bytes=len(data), expires_in=300)

    assert presigned.method == "PUT"
    assert presigned.headers == {"Content-Type": "image/jpeg", "x-amz-server-side-encryption": "AES256"}
    assert timedelta(seconds=295) < presigned.expires_at - datetime.now(UTC) <= timedelta(seconds=300)
    assert urlsplit(presigned.url).path == f"/{bucket}/{PREFIX}sessions/sess1/uploads/img1"
    response = httpx.put(presigned.url, content=data, headers=presigned.headers)
    assert response.status_code == 200, response.text

    stored = await store.head(key)
    assert stored is not None
    assert (stored.key, stored.size_bytes) == (key, len(data))
    assert abs(stored.modified_at - datetime.now(UTC)) < timedelta(minutes=1)
    behind = s3_admin.head_object(Bucket=bucket, Key=f"{PREFIX}{key}")
    assert behind["ServerSideEncryption"] == "AES256"
    assert behind["ContentType"] == "image/jpeg"
    assert behind["ContentLength"] == len(data)
    assert await store.get(key) == data


async def test_the_put_signature_binds_type_length_and_encryption(store):
    data = jpeg_bytes()
    presigned = await store.presign_put(
        upload_key("s", "i"), content_type="image/jpeg", size_bytes=len(data), expires_in=300
    )

    assert signed_headers(presigned.url) == [
        "content-length",
        "content-type",
        "host",
        "x-amz-server-side-encryption",
    ]
    assert query(presigned.url)["X-Amz-Expires"] == "300"
    # What the page sets is exactly the signed headers besides those the browser sets itself.
    assert {h.lower() for h in presigned.headers} == set(signed_headers(presigned.url)) - {
        "content-length",
        "host",
    }

    def browser(content: bytes, **headers: str) -> httpx.Request:
        return httpx.Request("PUT", presigned.url, content=content, headers={**presigned.headers, **headers})

    assert sigv4_matches(presigned.url, browser(data))
    assert not sigv4_matches(presigned.url, browser(data, **{"Content-Type": "image/png"}))
    assert not sigv4_matches(presigned.url, browser(data + b"\0"))
    assert not sigv4_matches(presigned.url, browser(data[:-1]))
    assert not sigv4_matches(presigned.url, browser(data, **{"x-amz-server-side-encryption": "aws:kms"}))
    without_sse = httpx.Request("PUT", presigned.url, content=data, headers={"Content-Type": "image/jpeg"})
    assert not sigv4_matches(presigned.url, without_sse)


async def test_with_a_kms_key_objects_and_uploads_use_sse_kms(bucket, moto_endpoint, s3_admin):
    key_id = "arn:aws:kms:ap-southeast-2:123456789012:key/00000000-1111-2222-3333-444444444444"
    store = S3ObjectStore(bucket, "kms", endpoint_url=moto_endpoint, sse_kms_key_id=key_id)
    data = jpeg_bytes()
    presigned = await store.presign_put(
        upload_key("s", "i"), content_type="image/jpeg", size_bytes=len(data), expires_in=60
    )
    assert presigned.headers == {
        "Content-Type": "image/jpeg",
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": key_id,
    }
    assert {h.lower() for h in presigned.headers} | {"content-length", "host"} == set(
        signed_headers(presigned.url)
    )
    assert httpx.put(presigned.url, content=data, headers=presigned.headers).status_code == 200
    await store.put("sessions/s/i.jpg", data, content_type="image/jpeg")

    for key in ("kms/sessions/s/uploads/i", "kms/sessions/s/i.jpg"):
        behind = s3_admin.head_object(Bucket=bucket, Key=key)
        assert behind["ServerSideEncryption"] == "aws:kms"
        assert behind["SSEKMSKeyId"] == key_id
    await store.close()


# -- presigned GET ---------------------------------------------------------------------------------------


async def test_a_presigned_get_serves_the_bytes_never_cached_and_lives_at_most_15_minutes(store):
    data = jpeg_bytes("coffee.jpg")
    key = image_key("sess1", "img1")
    await store.put(key, data, content_type="image/jpeg")

    url = await store.presign_get(key, expires_in=3600)

    assert query(url)["X-Amz-Expires"] == "900"
    assert query(url)["response-cache-control"] == "no-store"
    assert signed_headers(url) == ["host"]  # an <img src> can load it
    assert sigv4_matches(url, httpx.Request("GET", url))
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "image/jpeg"
    assert query(await store.presign_get(key, expires_in=60))["X-Amz-Expires"] == "60"


# -- head, get, delete, list -----------------------------------------------------------------------------


async def test_missing_objects_read_as_none_keyerror_or_nothing_to_delete(store):
    assert await store.head("sessions/none/x.jpg") is None
    with pytest.raises(KeyError):
        await store.get("sessions/none/x.jpg")
    await store.delete("sessions/none/x.jpg", "sessions/none/y.jpg")
    await store.delete()
    assert await store.delete_prefix(session_prefix("none")) == 0
    assert await store.list("sessions/") == []


async def test_list_and_delete_prefix_cross_pages_and_keep_neighbours(store, s3_admin, bucket, monkeypatch):
    calls: dict[str, int] = {"ListObjectsV2": 0, "DeleteObjects": 0}

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    store.client.meta.events.register("before-call.s3.ListObjectsV2", count)
    store.client.meta.events.register("before-call.s3.DeleteObjects", count)
    monkeypatch.setattr(s3_module, "S3_BATCH", 4)
    for i in range(7):
        await store.put(f"sessions/s1/{i}.jpg", b"x" * i, content_type="image/jpeg")
    await store.put("sessions/s10/a.jpg", b"neighbour", content_type="image/jpeg")
    await store.put("sessions/s2/a.jpg", b"other", content_type="image/jpeg")
    s3_admin.put_object(Bucket=bucket, Key="outside-the-prefix/sessions/s1/z.jpg", Body=b"not ours")

    listed = await store.list(session_prefix("s1"))
    assert sorted(obj.key for obj in listed) == [f"sessions/s1/{i}.jpg" for i in range(7)]
    assert {obj.key: obj.size_bytes for obj in listed}["sessions/s1/6.jpg"] == 6
    assert calls["ListObjectsV2"] == 3  # pages of 3
    assert len(await store.list("sessions/")) == 9
    assert [o.key for o in await store.list("sessions/s1")] == [o.key for o in listed]  # a folder, not s10

    calls["ListObjectsV2"] = 0
    assert await store.delete_prefix(session_prefix("s1")) == 7
    assert calls["DeleteObjects"] == 2  # batches of 4 (S3 allows 1,000)
    assert sorted(o.key for o in await store.list("sessions/")) == ["sessions/s10/a.jpg", "sessions/s2/a.jpg"]
    everything = [o["Key"] for o in s3_admin.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(everything) == [
        f"{PREFIX}sessions/s10/a.jpg",
        f"{PREFIX}sessions/s2/a.jpg",
        "outside-the-prefix/sessions/s1/z.jpg",
    ]

    await store.delete("sessions/s2/a.jpg", "sessions/s10/a.jpg")
    assert await store.list("sessions/") == []


async def test_keys_that_could_escape_the_prefix_are_refused(store):
    for key in ("../secret", "/sessions/x", "sessions/../../x", "sessions//x", ""):
        with pytest.raises(ValueError, match="invalid object key"):
            await store.head(key)
    assert store.full_key("sessions/a/b.jpg") == f"{PREFIX}sessions/a/b.jpg"


# -- readiness -------------------------------------------------------------------------------------------


async def test_check_writes_a_probe_and_leaves_nothing(store, s3_admin, bucket):
    await store.check()
    assert s3_admin.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


async def test_check_says_clearly_when_the_bucket_is_missing(moto_endpoint):
    store = S3ObjectStore("consultcam-no-such-bucket", "p", endpoint_url=moto_endpoint)
    with pytest.raises(S3StoreError, match="does not exist") as raised:
        await store.check()
    message = str(raised.value)
    assert "consultcam-no-such-bucket" in message
    assert "CONSULTCAM_STORAGE_URL" in message
    assert "X-Amz" not in message
    with pytest.raises(S3StoreError, match="NoSuchBucket"):
        await store.get("sessions/a/b.jpg")
    await store.close()


async def test_check_says_clearly_when_the_endpoint_is_unreachable():
    store = S3ObjectStore("bucket", endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(S3StoreError, match=r"cannot reach .*CONSULTCAM_S3_ENDPOINT_URL"):
        await store.check()
    await store.close()


async def test_presigning_without_credentials_says_what_to_set(bucket, moto_endpoint, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = S3ObjectStore(bucket, endpoint_url=moto_endpoint)
    with pytest.raises(S3StoreError, match="no AWS credentials"):
        await store.presign_get("sessions/a/b.jpg", expires_in=60)
    await store.close()


# -- configuration ---------------------------------------------------------------------------------------


def test_storage_urls_parse_to_bucket_prefix_and_public_endpoint():
    assert parse_s3_url("s3://photos") == s3_module.S3Location("photos", "")
    assert parse_s3_url("s3://photos/") == s3_module.S3Location("photos", "")
    assert parse_s3_url("s3://photos//clinic/a//") == s3_module.S3Location("photos", "clinic/a/")
    assert parse_s3_url("s3://photos/p?public_endpoint=https://s3.example.org/") == s3_module.S3Location(
        "photos", "p/", "https://s3.example.org"
    )
    for bad in ("s3://Photos_Bucket/p", "s3://ab", "s3://photos/a/../b", "s3://photos/p?region=x"):
        with pytest.raises(ValueError, match="CONSULTCAM_STORAGE_URL"):
            parse_s3_url(bad)


def test_create_store_builds_the_s3_adapter_from_the_settings_values(moto_endpoint):
    store = create_store(
        "s3://photos/clinic", secret_key=b"k" * 32, s3_endpoint_url=moto_endpoint, s3_sse_kms_key_id="alias/x"
    )
    assert isinstance(store, S3ObjectStore)
    assert (store.bucket, store.prefix, store.endpoint_url) == ("photos", "clinic/", moto_endpoint)
    assert store.sse_params == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/x"}
    with pytest.raises(ValueError, match="CONSULTCAM_STORAGE_URL"):
        create_store("gs://photos", secret_key=b"k")


async def test_the_public_origin_is_where_browsers_are_sent(moto_endpoint):
    on_moto = S3ObjectStore("photos", endpoint_url=moto_endpoint)
    assert on_moto.public_origin == moto_endpoint

    # AWS: virtual-hosted on the regional endpoint (no redirect, which would break the CORS preflight).
    on_aws = S3ObjectStore("photos", "p")
    assert on_aws.public_origin == f"https://photos.s3.{REGION}.amazonaws.com"
    assert (await on_aws.presign_get("sessions/a/b.jpg", expires_in=60)).startswith(
        f"https://photos.s3.{REGION}.amazonaws.com/p/sessions/a/b.jpg?"
    )

    # Server inside a private network, browsers outside: URLs are signed for the public host.
    split = S3ObjectStore("photos", endpoint_url=moto_endpoint, public_endpoint_url="https://s3.example.org")
    assert split.public_origin == "https://s3.example.org"
    url = await split.presign_get("sessions/a/b.jpg", expires_in=60)
    assert url.startswith("https://s3.example.org/photos/sessions/a/b.jpg?")
    assert sigv4_matches(url, httpx.Request("GET", url))
    for store in (on_moto, on_aws, split):
        await store.close()
