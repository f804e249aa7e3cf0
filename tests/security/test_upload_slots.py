"""Upload slots (issue 10, "Load and faults"), over real HTTP to a served app, on both object stores.

- A presigned upload URL stays in the hands of the phone (and of anyone who saw it) for its lifetime. Once
  its photo is registered it must not change that photo: on the folder store the URL stops working (409);
  an S3 presigned URL cannot be revoked, so there a PUT lands in an upload key that is never read again and
  the sweeper deletes it. Either way the registered image, its download and the committed Bundle carry the
  original bytes, even when the PUT races a registration and a second registration is sent with it.
- A client asking for slots it never uses must not fill the session: each credential holds at most
  CONSULTCAM_MAX_PENDING_UPLOADS unregistered slots, and a slot stops counting against MAX_IMAGES when its
  upload URL expires.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from PIL import Image, ImageDraw

from consultcam.models import utcnow
from consultcam.retention.sweeper import sweep
from tests.conftest import CLINICIAN_TOKEN, CsrfToken, jpeg_bytes, serving, start_session, token_of
from tests.storage.conftest import aws_env, bucket, moto_endpoint, moto_server, s3_admin  # noqa: F401

STORES = ["folder", "s3"]
#: CONSULTCAM_MAX_PENDING_UPLOADS, as the test sets it (the default).
PENDING = 10


@pytest.fixture(params=STORES)
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The folder store (the app serves the signed URLs) or S3 on moto's server (the client PUTs to it)."""
    if request.param == "folder":
        return {}
    return {
        "storage_url": f"s3://{request.getfixturevalue('bucket')}/clinic",
        "s3_endpoint_url": request.getfixturevalue("moto_endpoint"),
    }


@pytest.fixture
async def origin(app: Any) -> Any:
    async with serving(app) as url:
        yield url


@pytest.fixture
async def clinician_http(origin: str) -> Any:
    async with httpx.AsyncClient(
        base_url=origin, headers={"Authorization": f"Bearer {CLINICIAN_TOKEN}"}, timeout=60
    ) as client:
        yield client


@pytest.fixture
async def session_id(clinician_http: httpx.AsyncClient) -> str:
    """An open capture session with the patient's consent recorded."""
    return str((await start_session(clinician_http))["id"])


@pytest.fixture
async def phone_http(origin: str, clinician_http: httpx.AsyncClient, session_id: str) -> Any:
    """A phone that redeemed the session's QR code (its cookie authenticates it)."""
    pairing = await clinician_http.post(f"/api/sessions/{session_id}/pairing")
    assert pairing.status_code == 201, pairing.text
    async with httpx.AsyncClient(base_url=origin, timeout=60, event_hooks=CsrfToken().hooks()) as phone:
        paired = await phone.post("/api/pair", json={"token": token_of(pairing.json()["url"])})
        assert paired.status_code == 200, paired.text
        yield phone


async def presign(
    client: httpx.AsyncClient, session_id: str, data: bytes, content_type: str
) -> httpx.Response:
    return await client.post(
        f"/api/sessions/{session_id}/uploads", json={"contentType": content_type, "sizeBytes": len(data)}
    )


async def put(client: httpx.AsyncClient, slot: dict[str, Any], data: bytes) -> httpx.Response:
    """PUT to the slot's URL as a browser does: the folder store's URL is relative to the app."""
    url = urljoin(str(client.base_url), slot["uploadUrl"])
    async with httpx.AsyncClient(timeout=60) as browser:
        return await browser.request(slot["method"], url, content=data, headers=slot["headers"])


async def register(client: httpx.AsyncClient, session_id: str, image_id: str) -> httpx.Response:
    return await client.post(f"/api/sessions/{session_id}/images", json={"imageId": image_id})


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def same_length_photo(length: int, fmt: str = "JPEG") -> bytes:
    """Another valid photo (a red square) padded to exactly `length` bytes, as a replayed URL demands:
    decoders stop at the image's end (JPEG's EOI marker, PNG's IEND chunk)."""
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (220, 0, 0)).save(out, fmt)
    data = out.getvalue()
    assert len(data) <= length
    return data + b"\0" * (length - len(data))


def slow_png() -> bytes:
    """A flat 45-megapixel PNG (about 150 KB): its registration decodes for a second or more, long enough
    for a PUT and a second registration to arrive in the middle of it."""
    image = Image.new("RGB", (7744, 5808), (40, 160, 90))
    draw = ImageDraw.Draw(image)
    for x in range(0, 7744, 400):
        draw.line([(x, 0), (x, 5808)], fill=(250, 250, 250), width=9)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def assert_photo_is(
    clinician: httpx.AsyncClient, session_id: str, image: dict[str, Any], size: tuple[int, int]
) -> bytes:
    """The registered image still says `size` and its SHA-256, and what the gallery URL and the download
    serve is exactly those bytes. Returns them."""
    current = (await clinician.get(f"/api/sessions/{session_id}/images/{image['id']}")).json()
    assert (current["sha256"], current["width"], current["height"]) == (image["sha256"], *size)
    async with httpx.AsyncClient(timeout=60) as browser:
        full = await browser.get(urljoin(str(clinician.base_url), current["urls"]["full"]))
    assert full.status_code == 200
    assert sha256(full.content) == image["sha256"]
    download = await clinician.get(f"/api/sessions/{session_id}/images/{image['id']}/download")
    assert download.status_code == 200
    assert sha256(download.content) == image["sha256"]
    return full.content


async def assert_committed_as(clinician: httpx.AsyncClient, runtime: Any, session_id: str, sha: str) -> None:
    """Commit the session; the export Bundle carries the photo with that SHA-256."""
    committed = await clinician.post(f"/api/sessions/{session_id}/commit", json={"all": True})
    assert committed.status_code == 200, committed.text
    [path] = sorted((runtime.settings.data_dir / "outbox").glob("*.json"))
    [entry] = json.loads(path.read_text())["entry"]
    assert sha256(base64.b64decode(entry["resource"]["content"]["data"])) == sha


async def test_a_put_after_registration_never_changes_the_photo(
    phone_http: httpx.AsyncClient,
    clinician_http: httpx.AsyncClient,
    session_id: str,
    runtime: Any,
    settings_overrides: Any,
) -> None:
    data = jpeg_bytes("cat.jpg")
    slot = (await presign(phone_http, session_id, data, "image/jpeg")).json()
    assert (await put(phone_http, slot, data)).status_code == 200
    registered = await register(phone_http, session_id, slot["imageId"])
    assert registered.status_code == 201, registered.text
    image = registered.json()

    replay = await put(phone_http, slot, same_length_photo(len(data)))  # within the URL's lifetime

    if settings_overrides:  # S3: a presigned URL cannot be revoked; the PUT lands in a dead upload key
        assert replay.status_code == 200
    else:  # the folder store: the URL stopped working when its photo was registered
        assert replay.status_code == 409, replay.text
        assert replay.json()["error"] == "UploadAlreadyRegistered"
    again = await register(phone_http, session_id, slot["imageId"])
    assert again.status_code == 200, again.text
    assert again.json()["sha256"] == image["sha256"]
    await assert_photo_is(clinician_http, session_id, image, (451, 300))

    # The sweeper deletes what the PUT left (on S3) once it is older than an upload can be in flight.
    await sweep(runtime.unit_of_work, runtime, now=utcnow() + timedelta(minutes=6))
    left = [obj.key for obj in await runtime.store.list(f"sessions/{session_id}/")]
    assert len(left) == 2, left  # the photo and its thumbnail
    assert not [key for key in left if "/uploads/" in key], left
    await assert_photo_is(clinician_http, session_id, image, (451, 300))
    await assert_committed_as(clinician_http, runtime, session_id, image["sha256"])


async def test_a_put_racing_a_registration_never_swaps_the_photo(
    phone_http: httpx.AsyncClient, clinician_http: httpx.AsyncClient, session_id: str, runtime: Any
) -> None:
    """The attacker PUTs other bytes while the photo is being read and registers again at once: the second
    registration reads the new bytes, but the image the first one recorded keeps its own."""
    original = await asyncio.to_thread(slow_png)
    slot = (await presign(phone_http, session_id, original, "image/png")).json()
    assert (await put(phone_http, slot, original)).status_code == 200

    first = asyncio.create_task(register(phone_http, session_id, slot["imageId"]))
    await asyncio.sleep(0.3)  # the first registration has read the upload and is decoding it
    swapped = await put(phone_http, slot, same_length_photo(len(original), "PNG"))
    second = await register(phone_http, session_id, slot["imageId"])
    first_response = await first

    assert swapped.status_code == 200, "the slot is still waiting for its registration to finish"
    assert first_response.status_code == 201, first_response.text
    image = first_response.json()
    assert second.status_code == 200, second.text
    assert second.json()["sha256"] == image["sha256"]
    stored = await assert_photo_is(clinician_http, session_id, image, (2048, 1536))
    with Image.open(io.BytesIO(stored)) as picture:
        assert picture.getpixel((5, 5))[1] > 120  # the green photo, not the red square
    await assert_committed_as(clinician_http, runtime, session_id, image["sha256"])


@pytest.mark.parametrize("settings_overrides", [{"max_pending_uploads": PENDING}])
async def test_unused_slots_from_one_phone_do_not_block_the_clinician(
    phone_http: httpx.AsyncClient, clinician_http: httpx.AsyncClient, session_id: str, settings: Any
) -> None:
    data = jpeg_bytes("cat.jpg")
    asked = [await presign(phone_http, session_id, data, "image/jpeg") for _ in range(settings.max_images)]

    statuses = [response.status_code for response in asked]
    assert statuses.count(201) == PENDING < settings.max_images
    refused = asked[PENDING]
    assert refused.status_code == 429
    assert refused.json()["error"] == "TooManyPendingUploads"
    assert 0 < int(refused.headers["retry-after"]) <= settings.upload_url_ttl_seconds

    started = time.monotonic()
    slot = await presign(clinician_http, session_id, data, "image/jpeg")
    assert slot.status_code == 201, slot.text
    assert (await put(clinician_http, slot.json(), data)).status_code == 200
    added = await register(clinician_http, session_id, slot.json()["imageId"])
    assert added.status_code == 201, added.text
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("settings_overrides", [{"max_pending_uploads": 50, "upload_url_ttl_seconds": 30}])
async def test_unregistered_slots_stop_counting_when_their_upload_url_expires(
    phone_http: httpx.AsyncClient, clinician_http: httpx.AsyncClient, session_id: str, settings: Any
) -> None:
    data = jpeg_bytes("cat.jpg")
    for _ in range(settings.max_images):
        assert (await presign(phone_http, session_id, data, "image/jpeg")).status_code == 201
    full = await presign(clinician_http, session_id, data, "image/jpeg")
    assert full.status_code == 409
    assert full.json()["error"] == "SessionFull"

    await asyncio.sleep(settings.upload_url_ttl_seconds + 1)  # the phone's URLs have all expired

    slot = await presign(clinician_http, session_id, data, "image/jpeg")
    assert slot.status_code == 201, slot.text
    assert (await put(clinician_http, slot.json(), data)).status_code == 200
    added = await register(clinician_http, session_id, slot.json()["imageId"])
    assert added.status_code == 201, added.text
