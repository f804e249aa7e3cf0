"""Clinical images over HTTP: presign, PUT to the signed URL, register (verify and normalise), list, edit,
download and delete, on the real SQLite file and the real folder store. What a phone, the clinician or an
attacker would notice: status codes, `{error, detail}` bodies, headers, and what is left in the database
and in the store folder afterwards."""

from __future__ import annotations

import asyncio
import hashlib
import io
import struct
import time
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pillow_heif
import pytest
from PIL import Image
from sqlalchemy import select

from consultcam.models import AuditEvent, ClinicalImage
from consultcam.storage import local
from tests.conftest import (
    PHOTOS,
    assert_error,
    jpeg_bytes,
    pair_phone,
    phone_photo,
    start_session,
    upload,
)

pillow_heif.register_heif_opener()

ARM = {"system": "http://snomed.info/sct", "code": "40983000", "display": "Upper arm structure"}


# --- helpers -------------------------------------------------------------------------------------------


def encode(name: str, fmt: str, mode: str = "RGB", **save: Any) -> bytes:
    with Image.open(PHOTOS / name) as source:
        image = source.convert(mode)
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def with_segments(jpeg: bytes, *segments: tuple[int, bytes]) -> bytes:
    """`jpeg` with extra marker segments (e.g. 0xFE comment, 0xE1 XMP) inserted right after SOI."""
    extra = b"".join(
        b"\xff" + bytes([marker]) + struct.pack(">H", len(data) + 2) + data for marker, data in segments
    )
    return jpeg[:2] + extra + jpeg[2:]


def png_bomb(width: int, height: int) -> bytes:
    """A valid, small 1-bit greyscale PNG of `width` × `height` black pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


async def presign(
    client: httpx.AsyncClient, session_id: str, data: bytes | int, content_type: str = "image/jpeg"
) -> httpx.Response:
    size = data if isinstance(data, int) else len(data)
    return await client.post(
        f"/api/sessions/{session_id}/uploads", json={"contentType": content_type, "sizeBytes": size}
    )


async def put(client: httpx.AsyncClient, slot: dict[str, Any], data: bytes) -> httpx.Response:
    return await client.request(slot["method"], slot["uploadUrl"], content=data, headers=slot["headers"])


async def register(client: httpx.AsyncClient, session_id: str, image_id: str, **extra: Any) -> httpx.Response:
    return await client.post(f"/api/sessions/{session_id}/images", json={"imageId": image_id, **extra})


async def send(
    client: httpx.AsyncClient,
    session_id: str,
    data: bytes,
    content_type: str = "image/jpeg",
) -> tuple[dict[str, Any], httpx.Response]:
    """Presign and PUT; returns the slot and the registration response."""
    slot = await presign(client, session_id, data, content_type)
    assert slot.status_code == 201, slot.text
    assert (await put(client, slot.json(), data)).status_code == 200
    return slot.json(), await register(client, session_id, slot.json()["imageId"])


def stored_names(image: dict[str, Any]) -> list[str]:
    """The objects a registered image is stored as: keys named by the start of its SHA-256."""
    version = image["sha256"][:16]
    return [f"{image['id']}.{version}.jpg", f"{image['id']}.{version}.thumb.jpg"]


def store_files(runtime: Any, session_id: str) -> list[str]:
    root = Path(runtime.store.root) / "sessions" / session_id
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


async def image_rows(runtime: Any, session_id: str) -> list[ClinicalImage]:
    async with runtime.sessionmaker() as db:
        return list(
            (await db.execute(select(ClinicalImage).where(ClinicalImage.session_id == session_id)))
            .scalars()
            .all()
        )


async def audit_actions(runtime: Any, session_id: str) -> list[str]:
    async with runtime.sessionmaker() as db:
        return list(
            (
                await db.execute(
                    select(AuditEvent.action)
                    .where(AuditEvent.session_id == session_id)
                    .order_by(AuditEvent.id)
                )
            )
            .scalars()
            .all()
        )


async def events(runtime: Any, session_id: str) -> list[Any]:
    return await runtime.bus.read(session_id, None, timeout=0.01)


def tampered(url: str, **changes: str) -> str:
    """`url` with some of its signed query parameters changed (and the signature left as it was)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(changes)
    return f"{parts.path}?{urlencode(query)}"


def open_jpeg(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    image.load()
    return image


@pytest.fixture
async def session(clinician: httpx.AsyncClient) -> dict[str, Any]:
    return await start_session(clinician)


@pytest.fixture
async def phone(new_client: Any, session: dict[str, Any]) -> httpx.AsyncClient:
    return await pair_phone(new_client, session)


# --- the main job ---------------------------------------------------------------------------------------


async def test_phone_photo_is_stored_upright_resized_and_without_exif(
    phone: httpx.AsyncClient, anonymous: httpx.AsyncClient, session: dict[str, Any], runtime: Any
) -> None:
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b"<rdf:Description>XmpSecretLocation</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    original = with_segments(
        phone_photo(orientation=6),
        (0xFE, b"CommentMereTester"),
        (0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + xmp),
    )
    with Image.open(io.BytesIO(original)) as source:
        assert source.size == (4032, 3024)
        assert source.getexif()[0x0112] == 6
        assert source.info["comment"] == b"CommentMereTester"
    assert b"TestPhone" in original
    # The phone's clock, with its offset: a few minutes ago in New Zealand summer time.
    captured = (
        (datetime.now(UTC) - timedelta(minutes=3)).astimezone(timezone(timedelta(hours=13))).isoformat()
    )
    slot = (await presign(phone, session["id"], original)).json()
    assert slot["method"] == "PUT"
    assert slot["headers"] == {"Content-Type": "image/jpeg"}
    assert (await put(phone, slot, original)).status_code == 200
    response = await register(phone, session["id"], slot["imageId"], capturedAt=captured)
    assert response.status_code == 201, response.text
    image = response.json()

    assert image["id"] == slot["imageId"]
    assert image["sessionId"] == session["id"]
    assert image["status"] == "ready"
    assert image["source"] == "phone"
    assert image["contentType"] == "image/jpeg"
    assert image["height"] > image["width"], "orientation 6 is a portrait photo"
    assert max(image["width"], image["height"]) <= 2048
    assert max(image["width"], image["height"]) >= 1900  # resized, not shrunk to a thumbnail
    assert datetime.fromisoformat(image["capturedAt"]) == datetime.fromisoformat(captured)
    assert image["analysis"]["status"] == "disabled"
    assert image["quality"]

    full = await anonymous.get(image["urls"]["full"])  # a capability URL: the signature is the permission
    assert full.status_code == 200
    assert full.headers["content-type"] == "image/jpeg"
    assert full.headers["cache-control"] == "no-store"
    stored = full.content
    assert len(stored) == image["sizeBytes"] <= runtime.settings.capture_max_bytes * 2
    assert hashlib.sha256(stored).hexdigest() == image["sha256"]
    picture = open_jpeg(stored)
    assert picture.size == (image["width"], image["height"])
    assert len(picture.getexif()) == 0
    assert "exif" not in picture.info
    assert "icc_profile" not in picture.info
    for trace in (
        b"Exif\x00\x00",
        b"TestPhone",
        b"GPS",
        b"CommentMereTester",
        b"XmpSecretLocation",
        b"xmpmeta",
    ):
        assert trace not in stored, trace
    assert "comment" not in picture.info
    assert "xmp" not in picture.info

    thumb = await anonymous.get(image["urls"]["thumbnail"])
    assert thumb.status_code == 200
    assert thumb.headers["cache-control"] == "no-store"
    thumbnail = open_jpeg(thumb.content)
    assert max(thumbnail.size) <= 400
    assert thumbnail.height > thumbnail.width
    assert len(thumb.content) < len(stored) / 4
    assert len(thumbnail.getexif()) == 0

    # The raw upload is gone; the store holds the normalised JPEG and its thumbnail only.
    assert store_files(runtime, session["id"]) == stored_names(image)
    assert [e.type for e in await events(runtime, session["id"])][-1] == "image.added"
    assert (await audit_actions(runtime, session["id"]))[-1] == "image.uploaded"


@pytest.mark.parametrize(
    ("orientation", "turn"),
    [
        (1, None),
        (3, Image.Transpose.ROTATE_180),
        (6, Image.Transpose.ROTATE_270),
        (8, Image.Transpose.ROTATE_90),
    ],
)
async def test_exif_orientation_is_applied_to_the_pixels(
    phone: httpx.AsyncClient, session: dict[str, Any], orientation: int, turn: Image.Transpose | None
) -> None:
    """The rocket photo is asymmetric: the stored pixels match the source turned as EXIF says, and not the
    source turned any other way."""
    data = phone_photo("rocket.jpg", orientation=orientation, size=(1200, 800))
    response = await upload(phone, session["id"], data)
    assert response.status_code == 201, response.text
    stored = open_jpeg((await phone.get(response.json()["urls"]["full"])).content).convert("L")
    with Image.open(PHOTOS / "rocket.jpg") as source:
        base = source.convert("L").resize((1200, 800))

    def distance(candidate: Image.Image) -> float:
        if candidate.size != stored.size:
            return float("inf")
        a, b = candidate.resize((60, 60)).tobytes(), stored.resize((60, 60)).tobytes()
        return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / 3600

    expected = base.transpose(turn) if turn else base
    others = [
        base.transpose(t)
        for t in (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)
        if t != turn
    ]
    if turn:
        others.append(base)
    assert distance(expected) < 8
    assert all(distance(other) > 2 * distance(expected) for other in others)


@pytest.mark.parametrize(
    ("content_type", "make"),
    [
        ("image/png", lambda: encode("cat.jpg", "PNG")),
        ("image/png", lambda: encode("cat.jpg", "PNG", mode="RGBA")),
        ("image/webp", lambda: encode("cat.jpg", "WEBP", quality=90)),
        ("image/heic", lambda: encode("cat.jpg", "HEIF", quality=90)),
        ("image/heif", lambda: encode("cat.jpg", "HEIF", quality=90)),
        ("image/jpg", lambda: jpeg_bytes("cat.jpg")),
    ],
    ids=["png", "png-alpha", "webp", "heic", "heic-as-heif", "jpg-alias"],
)
async def test_other_formats_are_stored_as_jpeg(
    phone: httpx.AsyncClient, session: dict[str, Any], content_type: str, make: Any, runtime: Any
) -> None:
    response = await upload(phone, session["id"], make(), content_type=content_type)
    assert response.status_code == 201, response.text
    image = response.json()
    assert image["contentType"] == "image/jpeg"
    assert (image["width"], image["height"]) == (451, 300)  # small photos are never enlarged
    stored = (await phone.get(image["urls"]["full"])).content
    assert stored.startswith(b"\xff\xd8\xff")
    picture = open_jpeg(stored)
    assert picture.mode == "RGB"
    assert picture.size == (451, 300)
    assert hashlib.sha256(stored).hexdigest() == image["sha256"]
    assert store_files(runtime, session["id"]) == stored_names(image)


async def test_a_phone_resized_jpeg_is_stored_without_reencoding(
    phone: httpx.AsyncClient, session: dict[str, Any]
) -> None:
    """Issue 15: an upright, untagged 2048 px JPEG (what the phone page sends) keeps its pixels exactly;
    a comment and XMP sent with it are gone."""
    with Image.open(PHOTOS / "fundus-left-eye.jpg") as source:
        resized = source.convert("RGB").resize((2048, 2048), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    resized.save(out, "JPEG", quality=90)
    sent = with_segments(out.getvalue(), (0xFE, b"CommentMereTester"), (0xE1, b"XmpSecretLocation"))

    response = await upload(phone, session["id"], sent)

    assert response.status_code == 201, response.text
    image = response.json()
    assert (image["width"], image["height"]) == (2048, 2048)
    stored = (await phone.get(image["urls"]["full"])).content
    assert b"CommentMereTester" not in stored
    assert b"XmpSecretLocation" not in stored
    assert len(stored) == len(sent) - len(b"CommentMereTester") - len(b"XmpSecretLocation") - 8
    assert (open_jpeg(stored).tobytes(), image["sha256"]) == (
        open_jpeg(sent).tobytes(),
        hashlib.sha256(stored).hexdigest(),
    )


async def test_clinician_can_upload_from_the_desktop(
    clinician: httpx.AsyncClient, session: dict[str, Any]
) -> None:
    response = await upload(
        clinician,
        session["id"],
        jpeg_bytes("coffee.jpg"),
        metadata={"label": "desk upload", "laterality": "right"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["source"] == "desktop"
    assert response.json()["metadata"] == {"label": "desk upload", "laterality": "right"}


# --- refused at presign ---------------------------------------------------------------------------------


async def test_too_large_is_413_before_any_byte(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any, settings: Any
) -> None:
    response = await presign(phone, session["id"], settings.max_upload_bytes + 1)
    assert_error(response, 413, "UploadTooLarge", "MB", "resize")
    assert await image_rows(runtime, session["id"]) == []
    assert store_files(runtime, session["id"]) == []
    exactly = await presign(phone, session["id"], settings.max_upload_bytes)
    assert exactly.status_code == 201, exactly.text


@pytest.mark.parametrize(
    "content_type",
    ["image/svg+xml", "image/gif", "application/pdf", "text/html", "image/avif", "image/tiff", ""],
)
async def test_unaccepted_types_are_415_at_presign(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any, content_type: str
) -> None:
    response = await presign(phone, session["id"], 1000, content_type)
    assert_error(response, 415, "UnsupportedImageType", "JPEG", "PNG", "WebP", "HEIC")
    assert await image_rows(runtime, session["id"]) == []


@pytest.mark.parametrize(
    "body",
    [
        {"contentType": "image/jpeg", "sizeBytes": 0},
        {"contentType": "image/jpeg", "sizeBytes": -5},
        {"contentType": "image/jpeg"},
        {"sizeBytes": 100},
        {"contentType": "image/jpeg", "sizeBytes": "big"},
    ],
)
async def test_malformed_presign_is_422(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any, body: dict[str, Any]
) -> None:
    assert_error(await phone.post(f"/api/sessions/{session['id']}/uploads", json=body), 422, "InvalidRequest")
    assert await image_rows(runtime, session["id"]) == []


# --- refused at registration: the object and the slot are deleted -------------------------------------


async def assert_rejected_and_gone(
    client: httpx.AsyncClient,
    runtime: Any,
    session_id: str,
    slot: dict[str, Any],
    response: httpx.Response,
    status: int,
    error: str,
    *words: str,
) -> None:
    assert_error(response, status, error, *words)
    assert await image_rows(runtime, session_id) == []
    assert store_files(runtime, session_id) == []
    assert_error(await register(client, session_id, slot["imageId"]), 404, "ImageNotFound")
    assert "image.rejected" in await audit_actions(runtime, session_id)
    assert not [e for e in await events(runtime, session_id) if e.type == "image.added"]


async def test_text_file_sent_as_jpeg_is_refused_and_deleted(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any
) -> None:
    text = b"Dear Dr Smith, please find attached the referral letter.\n" * 40
    slot, response = await send(phone, session["id"], text)
    assert response.status_code in (415, 422), response.text
    await assert_rejected_and_gone(
        phone,
        runtime,
        session["id"],
        slot,
        response,
        response.status_code,
        "UnsupportedImageType",
        "text file",
        "JPEG",
    )


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "SVG",
        ),
        (b"GIF89a" + bytes(200), "GIF"),
        (b"%PDF-1.7\n" + bytes(200), "PDF"),
    ],
    ids=["svg", "gif", "pdf"],
)
async def test_other_files_disguised_as_jpeg_are_415(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any, data: bytes, what: str
) -> None:
    slot, response = await send(phone, session["id"], data)
    await assert_rejected_and_gone(
        phone, runtime, session["id"], slot, response, 415, "UnsupportedImageType", what
    )


async def test_png_declared_as_jpeg_is_422(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any
) -> None:
    slot, response = await send(phone, session["id"], encode("cat.jpg", "PNG"), "image/jpeg")
    await assert_rejected_and_gone(
        phone, runtime, session["id"], slot, response, 422, "ImageTypeMismatch", "image/jpeg", "PNG"
    )


async def test_pixel_flood_is_422_quickly_and_deleted(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any
) -> None:
    bomb = png_bomb(20000, 20000)
    assert len(bomb) < 200_000  # 400 megapixels in a small file
    started = time.perf_counter()
    slot, response = await send(phone, session["id"], bomb, "image/png")
    assert time.perf_counter() - started < 3
    await assert_rejected_and_gone(
        phone, runtime, session["id"], slot, response, 422, "ImageTooManyPixels", "megapixel"
    )


async def test_image_over_the_pixel_cap_but_under_pillows_is_422(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any
) -> None:
    slot, response = await send(phone, session["id"], png_bomb(8000, 8000), "image/png")  # 64 MP > 50 MP
    await assert_rejected_and_gone(
        phone, runtime, session["id"], slot, response, 422, "ImageTooManyPixels", "8000"
    )


async def test_truncated_jpeg_is_422_and_deleted(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any
) -> None:
    whole = jpeg_bytes()
    slot, response = await send(phone, session["id"], whole[: len(whole) // 2])
    await assert_rejected_and_gone(
        phone, runtime, session["id"], slot, response, 422, "ImageUndecodable", "truncated"
    )


async def test_register_before_put_is_422_and_the_slot_still_works(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any
) -> None:
    data = jpeg_bytes("cat.jpg")
    slot = (await presign(phone, session["id"], data)).json()
    assert_error(
        await register(phone, session["id"], slot["imageId"]), 422, "UploadMissing", "upload it again"
    )
    rows = await image_rows(runtime, session["id"])
    assert [row.status for row in rows] == ["pending"]
    assert (await put(phone, slot, data)).status_code == 200
    response = await register(phone, session["id"], slot["imageId"])
    assert response.status_code == 201, response.text
    assert response.json()["id"] == slot["imageId"]


async def test_registering_twice_returns_the_same_image(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any
) -> None:
    slot, first = await send(phone, session["id"], jpeg_bytes("cat.jpg"))
    assert first.status_code == 201
    second = await register(phone, session["id"], slot["imageId"])
    assert second.status_code == 200, second.text
    assert {k: v for k, v in second.json().items() if k != "urls"} == {
        k: v for k, v in first.json().items() if k != "urls"
    }
    assert len(await image_rows(runtime, session["id"])) == 1
    assert [e.type for e in await events(runtime, session["id"])].count("image.added") == 1


async def test_concurrent_registrations_record_one_image(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any
) -> None:
    data = jpeg_bytes("coffee.jpg")
    slot = (await presign(phone, session["id"], data)).json()
    assert (await put(phone, slot, data)).status_code == 200
    responses = await asyncio.gather(*(register(phone, session["id"], slot["imageId"]) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
    assert len({r.json()["sha256"] for r in responses}) == 1
    assert len(await image_rows(runtime, session["id"])) == 1
    assert [e.type for e in await events(runtime, session["id"])].count("image.added") == 1
    assert len(store_files(runtime, session["id"])) == 2


async def test_stored_object_of_another_size_is_422_and_deleted(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any
) -> None:
    """A store that does not enforce the signed length (some S3-compatible ones) is caught at registration."""
    data = jpeg_bytes("cat.jpg")
    slot = (await presign(phone, session["id"], data)).json()
    rows = await image_rows(runtime, session["id"])
    await runtime.store.put(rows[0].upload_key, data + b"extra", content_type="image/jpeg")
    response = await register(phone, session["id"], slot["imageId"])
    await assert_rejected_and_gone(
        phone, runtime, session["id"], slot, response, 422, "UploadSizeMismatch", str(len(data))
    )


async def test_replayed_put_cannot_swap_a_registered_photo(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any
) -> None:
    data = jpeg_bytes("cat.jpg")
    slot, registered = await send(phone, session["id"], data)
    assert registered.status_code == 201
    swapped = encode("cat.jpg", "JPEG", quality=20)[: len(data)]
    swapped += b"\0" * (len(data) - len(swapped))
    replay = await put(phone, slot, swapped)  # the URL is still within its lifetime, but used
    assert_error(replay, 409, "UploadAlreadyRegistered", "already registered")
    assert store_files(runtime, session["id"]) == stored_names(registered.json())  # nothing was written
    again = await register(phone, session["id"], slot["imageId"])
    assert again.status_code == 200
    assert again.json()["sha256"] == registered.json()["sha256"]
    stored = (await phone.get(again.json()["urls"]["full"])).content
    assert hashlib.sha256(stored).hexdigest() == registered.json()["sha256"]


async def test_register_in_another_session_is_404(
    clinician: httpx.AsyncClient, phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any
) -> None:
    data = jpeg_bytes("cat.jpg")
    slot = (await presign(phone, session["id"], data)).json()
    assert (await put(phone, slot, data)).status_code == 200
    other = await start_session(clinician, "enc-other")
    assert_error(await register(clinician, other["id"], slot["imageId"]), 404, "ImageNotFound")
    assert [row.status for row in await image_rows(runtime, session["id"])] == ["pending"]
    assert await image_rows(runtime, other["id"]) == []


@pytest.mark.parametrize(
    ("captured", "expected"),
    [
        ("2025-03-01T09:30:00", None),  # no time zone: ambiguous, dropped
        ("2999-01-01T00:00:00Z", None),  # in the future: a wrong phone clock, dropped
        ("2025-03-01T09:30:00Z", None),  # long before the session: a wrong phone clock, dropped
        ("recent", "recent"),
    ],
)
async def test_capture_time_is_kept_only_when_plausible(
    phone: httpx.AsyncClient, session: dict[str, Any], captured: str, expected: str | None
) -> None:
    """Outside the session's window (tests/security/test_clinical_safety.py) the upload time stands."""
    if captured == "recent":
        captured = expected = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    data = jpeg_bytes("cat.jpg")
    slot = (await presign(phone, session["id"], data)).json()
    assert (await put(phone, slot, data)).status_code == 200
    response = await register(phone, session["id"], slot["imageId"], capturedAt=captured)
    assert response.status_code == 201, response.text
    value = response.json()["capturedAt"]
    warnings = response.json()["quality"]["warnings"]
    assert ("capture-time-ignored" in warnings) == (expected is None)
    if expected is None:
        assert value is None
    else:
        assert datetime.fromisoformat(value) == datetime.fromisoformat(expected)


async def test_register_unknown_image_is_404(phone: httpx.AsyncClient, session: dict[str, Any]) -> None:
    assert_error(
        await register(phone, session["id"], "00000000-0000-0000-0000-000000000000"), 404, "ImageNotFound"
    )


# --- the signed PUT URL ---------------------------------------------------------------------------------


async def test_put_with_another_content_type_is_400(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any
) -> None:
    data = jpeg_bytes("cat.jpg")
    slot = (await presign(phone, session["id"], data)).json()
    response = await phone.put(slot["uploadUrl"], content=data, headers={"Content-Type": "image/png"})
    assert_error(response, 400, "ContentTypeMismatch", "image/jpeg")
    response = await phone.put(slot["uploadUrl"], content=data)
    assert_error(response, 400, "ContentTypeMismatch")
    assert store_files(runtime, session["id"]) == []


@pytest.mark.parametrize("delta", [-1, 1, 5000])
async def test_put_with_another_length_is_400(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any, delta: int
) -> None:
    data = jpeg_bytes("cat.jpg")
    slot = (await presign(phone, session["id"], data)).json()
    response = await put(phone, slot, data + b"\0" * delta if delta > 0 else data[:delta])
    assert_error(response, 400, "ContentLengthMismatch", str(len(data)))
    assert store_files(runtime, session["id"]) == []


async def test_put_streamed_without_length_must_still_match(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any
) -> None:
    data = jpeg_bytes("cat.jpg")
    slot = (await presign(phone, session["id"], data)).json()

    async def body(payload: bytes) -> AsyncIterator[bytes]:
        yield payload

    too_much = await phone.put(slot["uploadUrl"], content=body(data + b"x" * 10), headers=slot["headers"])
    assert_error(too_much, 413, "UploadTooLarge", str(len(data)))
    too_little = await phone.put(slot["uploadUrl"], content=body(data[:100]), headers=slot["headers"])
    assert_error(too_little, 400, "ContentLengthMismatch")
    assert store_files(runtime, session["id"]) == []
    exact = await phone.put(slot["uploadUrl"], content=body(data), headers=slot["headers"])
    assert exact.status_code == 200, exact.text


@pytest.mark.parametrize(
    "change",
    [
        {"sig": "A" * 43},
        {"exp": "9999999999"},
        {"ct": "image/png"},
        {"len": "10"},
        {"method": "GET"},
        {"sig": ""},
    ],
    ids=["sig", "exp", "ct", "len", "method", "no-sig"],
)
async def test_tampered_put_url_is_403(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any, change: dict[str, str]
) -> None:
    data = jpeg_bytes("cat.jpg")
    slot = (await presign(phone, session["id"], data)).json()
    headers = {"Content-Type": change.get("ct", "image/jpeg")}
    response = await phone.put(tampered(slot["uploadUrl"], **change), content=data, headers=headers)
    assert_error(response, 403, "InvalidUploadUrl", "new upload URL")
    assert store_files(runtime, session["id"]) == []


async def test_put_url_cannot_write_another_key(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any
) -> None:
    data = jpeg_bytes("cat.jpg")
    first = (await presign(phone, session["id"], data)).json()
    second = (await presign(phone, session["id"], data)).json()
    stolen = first["uploadUrl"].replace(first["imageId"], second["imageId"])
    assert_error(await phone.put(stolen, content=data, headers=first["headers"]), 403, "InvalidUploadUrl")
    escape = first["uploadUrl"].replace(f"sessions/{session['id']}/uploads/{first['imageId']}", "secret.key")
    assert (await phone.put(escape, content=data, headers=first["headers"])).status_code == 403
    assert store_files(runtime, session["id"]) == []


async def test_expired_put_url_is_403(
    phone: httpx.AsyncClient,
    session: dict[str, Any],
    runtime: Any,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    data = jpeg_bytes("cat.jpg")
    slot = (await presign(phone, session["id"], data)).json()
    later = time.time() + settings.upload_url_ttl_seconds + 5
    monkeypatch.setattr(local, "time", SimpleNamespace(time=lambda: later))
    assert_error(await put(phone, slot, data), 403, "InvalidUploadUrl", "expired")
    assert store_files(runtime, session["id"]) == []


async def test_get_url_is_not_a_put_url(phone: httpx.AsyncClient, session: dict[str, Any]) -> None:
    response = await upload(phone, session["id"], jpeg_bytes("cat.jpg"))
    full = response.json()["urls"]["full"]
    overwrite = await phone.put(full, content=b"x" * 10, headers={"Content-Type": "image/jpeg"})
    assert overwrite.status_code == 403
    assert hashlib.sha256((await phone.get(full)).content).hexdigest() == response.json()["sha256"]


async def test_expired_or_tampered_get_url_is_403(
    phone: httpx.AsyncClient, session: dict[str, Any], monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    response = await upload(phone, session["id"], jpeg_bytes("cat.jpg"))
    full = response.json()["urls"]["full"]
    other = full.replace(".jpg?", ".thumb.jpg?")
    assert_error(await phone.get(other), 403, "InvalidDownloadUrl")
    later = time.time() + settings.download_url_ttl_seconds + 5
    monkeypatch.setattr(local, "time", SimpleNamespace(time=lambda: later))
    assert_error(await phone.get(full), 403, "InvalidDownloadUrl", "expired")


# --- session full ---------------------------------------------------------------------------------------


CAPPED = pytest.mark.parametrize("settings_overrides", [{"max_images": 3}])


@CAPPED
async def test_fourth_photo_is_409_session_full(clinician: httpx.AsyncClient, runtime: Any) -> None:
    session = await start_session(clinician)
    assert session["maxImages"] == 3
    ids = []
    for _ in range(2):
        ids.append((await upload(clinician, session["id"], jpeg_bytes("cat.jpg"))).json()["id"])
    pending = await presign(clinician, session["id"], 1000)  # uploads in flight count too
    assert pending.status_code == 201
    assert_error(await presign(clinician, session["id"], 1000), 409, "SessionFull", "3 photos", "delete")
    assert len(await image_rows(runtime, session["id"])) == 3
    # Deleting one frees its place.
    assert (await clinician.delete(f"/api/sessions/{session['id']}/images/{ids[0]}")).status_code == 204
    assert (await presign(clinician, session["id"], 1000)).status_code == 201
    assert_error(await presign(clinician, session["id"], 1000), 409, "SessionFull")


@CAPPED
async def test_concurrent_presigns_never_exceed_the_cap(clinician: httpx.AsyncClient, runtime: Any) -> None:
    session = await start_session(clinician)
    responses = await asyncio.gather(*(presign(clinician, session["id"], 1000) for _ in range(10)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 3 + [409] * 7, statuses
    assert {r.json()["error"] for r in responses if r.status_code == 409} == {"SessionFull"}
    assert len(await image_rows(runtime, session["id"])) == 3


# --- caching --------------------------------------------------------------------------------------------


async def test_every_api_and_image_response_is_no_store(
    clinician: httpx.AsyncClient, phone: httpx.AsyncClient, session: dict[str, Any]
) -> None:
    seen: list[httpx.Response] = []
    data = jpeg_bytes("cat.jpg")
    slot = await presign(phone, session["id"], data)
    seen.append(slot)
    seen.append(await register(phone, session["id"], slot.json()["imageId"]))  # 422, not arrived yet
    seen.append(await put(phone, slot.json(), data))
    registered = await register(phone, session["id"], slot.json()["imageId"])
    seen.append(registered)
    image = registered.json()
    base = f"/api/sessions/{session['id']}"
    download = await clinician.get(f"{base}/images/{image['id']}/download")
    seen += [
        download,
        await phone.get(base),
        await clinician.get(base),
        await phone.get(f"{base}/images"),
        await clinician.get(f"{base}/images/{image['id']}"),
        await clinician.patch(f"{base}/images/{image['id']}", json={"metadata": {"label": "x"}}),
        await phone.get(image["urls"]["full"]),
        await phone.get(image["urls"]["thumbnail"]),
        await clinician.post(f"{base}/pairing"),
        await clinician.get("/api/sessions/nope"),
        await phone.post(f"{base}/commit", json={"all": True}),
        await presign(phone, session["id"], 1000, "image/gif"),
        await clinician.delete(f"{base}/images/{image['id']}"),
    ]
    for response in seen:
        assert response.headers.get("cache-control") == "no-store", (response.request.url, response.headers)
    assert download.status_code == 200
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["x-content-type-options"] == "nosniff"


# --- metadata and edits ---------------------------------------------------------------------------------


@pytest.fixture
async def photo(phone: httpx.AsyncClient, session: dict[str, Any]) -> dict[str, Any]:
    """A registered 451 × 300 photo (cat.jpg)."""
    response = await upload(phone, session["id"], jpeg_bytes("cat.jpg"))
    assert response.status_code == 201, response.text
    return response.json()


async def test_patch_metadata_is_stored_and_shown(
    clinician: httpx.AsyncClient,
    phone: httpx.AsyncClient,
    session: dict[str, Any],
    photo: dict[str, Any],
    runtime: Any,
) -> None:
    url = f"/api/sessions/{session['id']}/images/{photo['id']}"
    metadata = {
        "bodySite": ARM,
        "laterality": "left",
        "view": "close-up",
        "label": "Lesion A",
        "notes": "Raised, 6 mm, irregular border.",
    }
    response = await clinician.patch(url, json={"metadata": metadata})
    assert response.status_code == 200, response.text
    assert response.json()["metadata"] == metadata
    assert (await clinician.get(url)).json()["metadata"] == metadata
    listed = (await phone.get(f"/api/sessions/{session['id']}/images")).json()["images"]
    assert [i["metadata"] for i in listed] == [metadata]

    # Fields given replace stored ones, null clears one, the rest stay.
    response = await clinician.patch(url, json={"metadata": {"label": "Lesion B", "notes": None}})
    assert response.status_code == 200, response.text
    expected = {**metadata, "label": "Lesion B"}
    del expected["notes"]
    assert (await clinician.get(url)).json()["metadata"] == expected
    updated = [e for e in await events(runtime, session["id"]) if e.type == "image.updated"]
    assert updated[-1].data["image"]["metadata"] == expected
    assert "urls" not in updated[-1].data["image"]


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        ({"bodySite": {**ARM, "code": "368208007"}}, ("368208007", "/api/terminology/body-sites")),
        ({"bodySite": {**ARM, "system": "http://loinc.org"}}, ("system",)),
        ({"bodySite": {**ARM, "display": ""}}, ("display",)),
        ({"laterality": "sideways"}, ("laterality",)),
        ({"label": "x" * 121}, ("label",)),
        ({"colour": "red"}, ("colour",)),
    ],
    ids=["check-digit", "system", "display", "laterality", "label-length", "unknown-field"],
)
async def test_invalid_metadata_is_422(
    clinician: httpx.AsyncClient,
    session: dict[str, Any],
    photo: dict[str, Any],
    metadata: dict[str, Any],
    words: tuple[str, ...],
) -> None:
    url = f"/api/sessions/{session['id']}/images/{photo['id']}"
    assert_error(await clinician.patch(url, json={"metadata": metadata}), 422, "InvalidRequest", *words)
    assert (await clinician.get(url)).json()["metadata"] == {}


async def test_edits_are_burned_in_on_download_only(
    clinician: httpx.AsyncClient, session: dict[str, Any], photo: dict[str, Any]
) -> None:
    url = f"/api/sessions/{session['id']}/images/{photo['id']}"
    plain = await clinician.get(f"{url}/download")
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "image/jpeg"
    assert open_jpeg(plain.content).size == (451, 300)
    assert hashlib.sha256(plain.content).hexdigest() == photo["sha256"]  # no edits: the stored JPEG itself

    rotated = await clinician.patch(url, json={"edits": {"rotation": 90}})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["edits"] == {"rotation": 90, "crop": None, "annotations": []}
    assert open_jpeg((await clinician.get(f"{url}/download")).content).size == (300, 451)

    crop = {"x": 0.0, "y": 0.5, "width": 0.5, "height": 0.5}
    arrow = {"type": "arrow", "x1": 0.1, "y1": 0.1, "x2": 0.6, "y2": 0.6, "color": "#FF0000"}
    edits = {"rotation": 90, "crop": crop, "annotations": [arrow]}
    edited = await clinician.patch(url, json={"edits": edits})
    assert edited.status_code == 200, edited.text
    assert edited.json()["edits"]["annotations"] == [{**arrow, "color": "#ff0000"}]
    download = await clinician.get(f"{url}/download")
    picture = open_jpeg(download.content).convert("RGB")
    assert picture.size == (150, 225)  # 300 × 451 after the turn, then its bottom-left quarter
    without_arrow = await clinician.patch(url, json={"edits": {"rotation": 90, "crop": crop}})
    assert without_arrow.status_code == 200
    bare = open_jpeg((await clinician.get(f"{url}/download")).content).convert("RGB")
    # The arrow's shaft crosses the middle of the cropped picture: red there, not in the bare copy.
    middle = (round(0.35 * 149), round(0.35 * 224))
    red, green, blue = picture.getpixel(middle)
    assert red > 180, picture.getpixel(middle)
    assert max(green, blue) < 90, picture.getpixel(middle)
    assert bare.getpixel(middle) != picture.getpixel(middle)

    # The stored photo is untouched: edits are non-destructive.
    current = (await clinician.get(url)).json()
    assert current["sha256"] == photo["sha256"]
    assert (current["width"], current["height"]) == (451, 300)
    stored = (await clinician.get(current["urls"]["full"])).content
    assert hashlib.sha256(stored).hexdigest() == photo["sha256"]


@pytest.mark.parametrize(
    ("edits", "words"),
    [
        ({"rotation": 45}, ("rotation", "45")),
        ({"crop": {"x": 0.8, "y": 0, "width": 0.5, "height": 1}}, ("crop", "outside")),
        ({"crop": {"x": 0, "y": 0, "width": 0, "height": 1}}, ("crop", "too small")),
        ({"annotations": [{"type": "scribble", "x1": 0, "y1": 0, "x2": 1, "y2": 1}]}, ("type", "scribble")),
        (
            {"annotations": [{"type": "arrow", "x1": 0.5, "y1": 0.5, "x2": 0.5, "y2": 0.5}]},
            ("two different points",),
        ),
        ({"annotations": [{"type": "circle", "x1": -0.1, "y1": 0, "x2": 1, "y2": 1}]}, ("x1", "0 to 1")),
        ({"annotations": [{"type": "text", "x1": 0.1, "y1": 0.1, "text": " "}]}, ("text",)),
        (
            {"annotations": [{"type": "arrow", "x1": 0, "y1": 0, "x2": 1, "y2": 1, "color": "red"}]},
            ("color",),
        ),
        ({"brightness": 2}, ("unknown", "brightness")),
    ],
    ids=[
        "rotation",
        "crop-outside",
        "crop-empty",
        "type",
        "arrow-point",
        "range",
        "empty-text",
        "colour",
        "unknown",
    ],
)
async def test_invalid_edits_are_422_with_the_reason(
    clinician: httpx.AsyncClient,
    session: dict[str, Any],
    photo: dict[str, Any],
    edits: dict[str, Any],
    words: tuple[str, ...],
) -> None:
    url = f"/api/sessions/{session['id']}/images/{photo['id']}"
    assert (await clinician.patch(url, json={"edits": {"rotation": 180}})).status_code == 200
    assert_error(await clinician.patch(url, json={"edits": edits}), 422, "InvalidEdits", *words)
    assert (await clinician.get(url)).json()["edits"]["rotation"] == 180  # unchanged


async def test_patch_unknown_image_is_404(clinician: httpx.AsyncClient, session: dict[str, Any]) -> None:
    assert_error(
        await clinician.patch(f"/api/sessions/{session['id']}/images/nope", json={"metadata": {}}),
        404,
        "ImageNotFound",
    )


# --- deleting -------------------------------------------------------------------------------------------


async def test_phone_deletes_its_own_photo(
    phone: httpx.AsyncClient, session: dict[str, Any], photo: dict[str, Any], runtime: Any
) -> None:
    assert len(store_files(runtime, session["id"])) == 2
    response = await phone.delete(f"/api/sessions/{session['id']}/images/{photo['id']}")
    assert response.status_code == 204, response.text
    assert response.headers["cache-control"] == "no-store"
    assert store_files(runtime, session["id"]) == []
    assert await image_rows(runtime, session["id"]) == []
    assert (await phone.get(photo["urls"]["full"])).status_code == 404
    again = await phone.delete(f"/api/sessions/{session['id']}/images/{photo['id']}")
    assert_error(again, 404, "ImageNotFound")
    assert [e.type for e in await events(runtime, session["id"])][-1] == "image.deleted"


async def test_phone_can_cancel_an_upload_in_flight(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any
) -> None:
    data = jpeg_bytes("cat.jpg")
    slot = (await presign(phone, session["id"], data)).json()
    assert (await put(phone, slot, data)).status_code == 200
    assert (await phone.delete(f"/api/sessions/{session['id']}/images/{slot['imageId']}")).status_code == 204
    assert store_files(runtime, session["id"]) == []
    assert await image_rows(runtime, session["id"]) == []


async def test_another_phone_cannot_delete_it(
    clinician: httpx.AsyncClient,
    new_client: Any,
    session: dict[str, Any],
    photo: dict[str, Any],
    runtime: Any,
) -> None:
    code = (await clinician.post(f"/api/sessions/{session['id']}/pairing")).json()
    other = await pair_phone(new_client, {"pairing": code})
    refused = await other.delete(f"/api/sessions/{session['id']}/images/{photo['id']}")
    assert_error(refused, 404, "ImageNotFound")
    assert len(store_files(runtime, session["id"])) == 2
    assert len(await image_rows(runtime, session["id"])) == 1
    # The clinician can.
    assert (await clinician.delete(f"/api/sessions/{session['id']}/images/{photo['id']}")).status_code == 204
    assert store_files(runtime, session["id"]) == []


async def test_deleting_after_commit_is_409(
    clinician: httpx.AsyncClient, phone: httpx.AsyncClient, session: dict[str, Any], photo: dict[str, Any]
) -> None:
    commit = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    assert commit.status_code == 200, commit.text
    assert commit.json()["results"][0]["status"] == "committed"
    for client in (clinician, phone):  # the phone stays signed in after a commit, to show the outcome
        response = await client.delete(f"/api/sessions/{session['id']}/images/{photo['id']}")
        assert_error(response, 409, "SessionClosed", "committed")
    assert_error(
        await clinician.patch(
            f"/api/sessions/{session['id']}/images/{photo['id']}", json={"metadata": {"label": "late"}}
        ),
        409,
        "SessionClosed",
    )
    assert_error(await presign(clinician, session["id"], 1000), 409, "SessionClosed")


async def test_image_reads_are_scoped_to_the_session(
    clinician: httpx.AsyncClient, session: dict[str, Any], photo: dict[str, Any]
) -> None:
    other = await start_session(clinician, "enc-other")
    wrong = f"/api/sessions/{other['id']}/images/{photo['id']}"
    assert_error(await clinician.get(wrong), 404, "ImageNotFound")
    assert_error(await clinician.delete(wrong), 404, "ImageNotFound")
    assert_error(
        await clinician.patch(
            f"/api/sessions/{other['id']}/images/{photo['id']}", json={"metadata": {"label": "x"}}
        ),
        404,
        "ImageNotFound",
    )
    assert (await clinician.get(f"/api/sessions/{other['id']}/images")).json() == {"images": []}


async def test_a_failed_write_of_the_thumbnail_leaves_no_photo_and_the_slot_retries(
    phone: httpx.AsyncClient, session: dict[str, Any], runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The photo and its thumbnail are written at once; when one write fails the other is removed (no
    object without a row), the upload stays for a retry, and the retry records the photo."""
    data = jpeg_bytes("cat.jpg")
    slot = (await presign(phone, session["id"], data)).json()
    assert (await put(phone, slot, data)).status_code == 200
    real_put = runtime.store.put

    async def failing_put(key: str, body: bytes, *, content_type: str) -> None:
        if key.endswith(".thumb.jpg"):
            raise OSError(28, "No space left on device")
        await real_put(key, body, content_type=content_type)

    monkeypatch.setattr(runtime.store, "put", failing_put)
    with pytest.raises(OSError, match="No space left"):  # the app's 500 (the test client re-raises it)
        await register(phone, session["id"], slot["imageId"])
    rows = await image_rows(runtime, session["id"])
    upload = rows[0].upload_key.removeprefix(f"sessions/{session['id']}/")
    assert store_files(runtime, session["id"]) == [upload]  # the photo written beside it is gone
    assert [row.status for row in rows] == ["pending"]

    monkeypatch.setattr(runtime.store, "put", real_put)
    again = await register(phone, session["id"], slot["imageId"])
    assert again.status_code == 201, again.text
    assert store_files(runtime, session["id"]) == stored_names(again.json())


async def test_a_stored_photo_damaged_since_registration_is_a_clear_422(
    clinician: httpx.AsyncClient, session: dict[str, Any], photo: dict[str, Any], runtime: Any
) -> None:
    """The store corrupted a registered photo: its download with edits says so (not "change your edits")."""
    url = f"/api/sessions/{session['id']}/images/{photo['id']}"
    assert (await clinician.patch(url, json={"edits": {"rotation": 90}})).status_code == 200
    (row,) = await image_rows(runtime, session["id"])
    stored = runtime.store.path(row.object_key)
    stored.write_bytes(stored.read_bytes()[:200] + b"\0" * 64)  # the headers, then nothing of the picture
    assert_error(await clinician.get(f"{url}/download"), 422, "StoredPhotoDamaged", "take it again")
