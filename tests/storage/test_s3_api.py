"""The whole photo flow through the API with `CONSULTCAM_STORAGE_URL=s3://…` on moto: the phone PUTs straight
to the S3 server over real HTTP (not through the app), registration verifies the object there, galleries
load presigned GETs from it, and commit, cancel and the sweeper delete the objects in the bucket."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from consultcam.models import utcnow
from consultcam.retention.sweeper import sweep
from consultcam.storage.s3 import S3ObjectStore
from tests.conftest import jpeg_bytes, pair_phone, start_session

PREFIX = "clinic-a/"


@pytest.fixture
def app_bucket(bucket: str) -> str:
    """The app's bucket: a fresh one (a test parametrizes it to name a missing one)."""
    return bucket


@pytest.fixture
def settings_overrides(app_bucket: str, moto_endpoint: str) -> dict[str, Any]:
    """The shared app fixtures (tests/conftest.py), on the S3 store."""
    return {"storage_url": f"s3://{app_bucket}/clinic-a", "s3_endpoint_url": moto_endpoint}


def keys(s3_admin: Any, bucket: str, prefix: str = "") -> list[str]:
    pages = s3_admin.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


async def phone_upload(phone: httpx.AsyncClient, session_id: str, data: bytes) -> dict[str, Any]:
    """Presign through the app, then PUT to the S3 server as a browser does: real HTTP, the given headers."""
    response = await phone.post(
        f"/api/sessions/{session_id}/uploads", json={"contentType": "image/jpeg", "sizeBytes": len(data)}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    async with httpx.AsyncClient() as browser:
        put = await browser.request(body["method"], body["uploadUrl"], content=data, headers=body["headers"])
    assert put.status_code == 200, put.text
    return body


async def test_presign_put_register_view_commit_on_s3(
    clinician, new_client, runtime, bucket, moto_endpoint, s3_admin
):
    assert isinstance(runtime.store, S3ObjectStore)
    assert runtime.store.endpoint_url == moto_endpoint, "runtime.py must pass CONSULTCAM_S3_ENDPOINT_URL"
    session = await start_session(clinician)
    sid = session["id"]
    phone = await pair_phone(new_client, session)
    data = jpeg_bytes()

    upload = await phone_upload(phone, sid, data)

    image_id = upload["imageId"]
    assert upload["uploadUrl"].startswith(
        f"{moto_endpoint}/{bucket}/{PREFIX}sessions/{sid}/uploads/{image_id}?"
    )
    assert upload["headers"] == {"Content-Type": "image/jpeg", "x-amz-server-side-encryption": "AES256"}
    assert keys(s3_admin, bucket) == [f"{PREFIX}sessions/{sid}/uploads/{image_id}"]

    registered = await phone.post(f"/api/sessions/{sid}/images", json={"imageId": image_id})

    assert registered.status_code == 201, registered.text
    version = registered.json()["sha256"][:16]  # the objects are named by the photo's SHA-256
    stored = [f"{PREFIX}sessions/{sid}/{image_id}.{version}{end}" for end in (".jpg", ".thumb.jpg")]
    assert keys(s3_admin, bucket) == sorted(stored)  # the upload itself is gone
    for key in stored:
        assert s3_admin.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"

    listing = await clinician.get(f"/api/sessions/{sid}/images")
    [image] = listing.json()["images"]
    async with httpx.AsyncClient() as browser:
        for name, url in image["urls"].items():
            assert url.startswith(f"{moto_endpoint}/{bucket}/{PREFIX}sessions/{sid}/"), name
            assert int(dict(parse_qsl(urlsplit(url).query))["X-Amz-Expires"]) <= 900
            response = await browser.get(url)
            assert response.status_code == 200, name
            assert response.headers["cache-control"] == "no-store"
            assert response.content[:3] == b"\xff\xd8\xff"
    full = s3_admin.get_object(Bucket=bucket, Key=stored[0])["Body"].read()
    assert full[:3] == b"\xff\xd8\xff"

    committed = await clinician.post(f"/api/sessions/{sid}/commit", json={"all": True})

    assert committed.status_code == 200, committed.text
    assert committed.json()["status"] == "committed"
    assert keys(s3_admin, bucket) == []


async def test_the_pages_may_reach_the_s3_endpoint_and_readiness_checks_the_bucket(
    anonymous, moto_endpoint, bucket, s3_admin
):
    response = await anonymous.get("/readyz")
    assert response.json()["checks"]["store"] == "ok", response.text
    csp = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    assert csp["connect-src"].split() == ["'self'", moto_endpoint]
    assert moto_endpoint in csp["img-src"].split()
    assert "'self'" in csp["img-src"].split()
    assert keys(s3_admin, bucket) == []  # the readiness probe cleaned up


@pytest.mark.parametrize("app_bucket", ["consultcam-bucket-that-is-not-there"])
async def test_readiness_fails_when_the_bucket_is_missing(anonymous, moto_endpoint, runtime):
    assert runtime.store.endpoint_url == moto_endpoint
    response = await anonymous.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["store"] == "error: S3StoreError"


async def test_cancel_deletes_the_session_objects(clinician, new_client, bucket, s3_admin):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    upload = await phone_upload(phone, session["id"], jpeg_bytes("coffee.jpg"))
    assert (
        await phone.post(f"/api/sessions/{session['id']}/images", json={"imageId": upload["imageId"]})
    ).status_code == 201
    await phone_upload(phone, session["id"], jpeg_bytes("cat.jpg"))  # PUT, never registered
    assert len(keys(s3_admin, bucket)) == 3

    response = await clinician.delete(f"/api/sessions/{session['id']}")

    assert response.status_code in (200, 204), response.text
    assert keys(s3_admin, bucket) == []


async def test_an_upload_never_registered_is_removed_by_the_sweeper(
    clinician, new_client, runtime, bucket, s3_admin
):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    upload = await phone_upload(phone, session["id"], jpeg_bytes())
    key = f"{PREFIX}sessions/{session['id']}/uploads/{upload['imageId']}"
    assert keys(s3_admin, bucket) == [key]

    report = await sweep(runtime.unit_of_work, runtime, now=utcnow() + timedelta(hours=1))

    assert report.abandoned_uploads == 1
    assert keys(s3_admin, bucket) == []
    listing = await clinician.get(f"/api/sessions/{session['id']}/images")
    assert listing.json()["images"] == []
