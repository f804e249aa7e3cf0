"""The whole session as one ZIP (issue 5): every ready photo with its edits burned in, named by its number
and its label or body site, for the clinician only, never cached."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops
from sqlalchemy import select

from consultcam.images import archive
from consultcam.images.archive import photo_slug, slugify
from consultcam.images.processing import render as rendering
from consultcam.images.service import IMAGE_WORK
from consultcam.models import AuditEvent, ClinicalImage
from tests.conftest import assert_error, jpeg_bytes, pair_phone, start_session, upload

ARM = {"system": "http://snomed.info/sct", "code": "40983000", "display": "Upper arm structure"}
SNOMED = "http://snomed.info/sct"
CROP = {"x": 0.0, "y": 0.5, "width": 0.5, "height": 0.5}
ARROW = {"type": "arrow", "x1": 0.1, "y1": 0.1, "x2": 0.6, "y2": 0.6, "color": "#ff0000"}
EDITS = {"rotation": 90, "crop": CROP, "annotations": [ARROW]}


async def add_photos(client: httpx.AsyncClient, session_id: str, photos: list[tuple[str, Any]]) -> list[str]:
    ids = []
    for name, metadata in photos:
        response = await upload(client, session_id, jpeg_bytes(name), metadata=metadata)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def download(client: httpx.AsyncClient, session_id: str) -> httpx.Response:
    return await client.get(f"/api/sessions/{session_id}/download")


def entries(response: httpx.Response) -> dict[str, tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(response.content)) as zipped:
        assert zipped.testzip() is None  # every CRC checks out
        return {info.filename: (info, zipped.read(info)) for info in zipped.infolist()}


async def stored_jpeg(runtime: Any, image_id: str) -> bytes:
    """The normalised JPEG the store holds for an image (under the key its row names)."""
    async with runtime.sessionmaker() as db:
        image = await db.get(ClinicalImage, image_id)
    return await runtime.store.get(image.object_key)


def pixels_equal(a: bytes, b: bytes) -> bool:
    with Image.open(io.BytesIO(a)) as first, Image.open(io.BytesIO(b)) as second:
        if first.size != second.size:
            return False
        return ImageChops.difference(first.convert("RGB"), second.convert("RGB")).getbbox() is None


async def test_the_zip_holds_every_photo_with_its_edits_burned_in(clinician, new_client, runtime):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    ids = await add_photos(
        phone,
        session["id"],
        [
            ("cat.jpg", {"label": "Lesion A — Ārai"}),
            ("coffee.jpg", {"bodySite": ARM, "laterality": "left"}),
            ("rocket.jpg", None),
        ],
    )
    edited = await clinician.patch(f"/api/sessions/{session['id']}/images/{ids[0]}", json={"edits": EDITS})
    assert edited.status_code == 200, edited.text

    response = await download(clinician, session["id"])

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == 'attachment; filename="consultcam-enc-1.zip"'
    assert response.headers["cache-control"] == "no-store"
    assert int(response.headers["content-length"]) == len(response.content)
    files = entries(response)
    assert list(files) == ["01-lesion-a-arai.jpg", "02-left-upper-arm.jpg", "03-photo.jpg"]
    assert {info.compress_type for info, _ in files.values()} == {zipfile.ZIP_STORED}
    stored = [await stored_jpeg(runtime, image_id) for image_id in ids]
    # The edited photo is exactly what the renderer makes of the stored original (turned, cropped, arrow).
    lesion = files["01-lesion-a-arai.jpg"][1]
    assert pixels_equal(lesion, rendering.render(stored[0], EDITS))
    with Image.open(io.BytesIO(lesion)) as picture, Image.open(io.BytesIO(stored[0])) as original:
        assert picture.format == "JPEG"
        assert original.size == (451, 300)
        assert picture.size == (150, 225)  # 300 × 451 after the turn, then its bottom-left quarter
        red, green, blue = picture.convert("RGB").getpixel(
            (round(0.35 * (picture.width - 1)), round(0.35 * (picture.height - 1)))
        )
        assert red > 180  # the arrow's shaft
        assert max(green, blue) < 90
    assert not pixels_equal(lesion, stored[0])
    # Unedited photos are the stored JPEGs themselves, byte for byte.
    assert files["02-left-upper-arm.jpg"][1] == stored[1]
    assert hashlib.sha256(files["03-photo.jpg"][1]).hexdigest() == hashlib.sha256(stored[2]).hexdigest()
    # The originals are untouched and the download is in the audit trail.
    assert await stored_jpeg(runtime, ids[0]) == stored[0]
    async with runtime.sessionmaker() as db:
        [row] = (
            await db.execute(select(AuditEvent).where(AuditEvent.action == "session.downloaded"))
        ).scalars()
    assert (row.actor_type, row.session_id, row.detail["images"]) == ("clinician", session["id"], 3)
    assert row.detail["size_bytes"] == len(response.content)


async def test_only_ready_photos_go_in_numbered_in_gallery_order(clinician, runtime):
    session = await start_session(clinician)
    ids = await add_photos(
        clinician,
        session["id"],
        [("cat.jpg", {"label": "first"}), ("coffee.jpg", None), ("rocket.jpg", None)],
    )
    assert (await clinician.delete(f"/api/sessions/{session['id']}/images/{ids[1]}")).status_code == 204
    pending = await clinician.post(
        f"/api/sessions/{session['id']}/uploads", json={"contentType": "image/jpeg", "sizeBytes": 1000}
    )
    assert pending.status_code == 201  # an upload in flight is not a photo yet
    files = entries(await download(clinician, session["id"]))
    assert list(files) == ["01-first.jpg", "02-photo.jpg"]


async def test_a_large_session_is_built_on_disk_not_in_memory(
    clinician, runtime, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(archive, "ARCHIVE_SPOOL_BYTES", 64 * 1024)  # on disk after the first photo
    session = await start_session(clinician)
    names = ["cat.jpg", "coffee.jpg", "rocket.jpg", "fundus-left-eye.jpg"]
    ids = await add_photos(clinician, session["id"], [(name, None) for name in names])
    files = entries(await download(clinician, session["id"]))
    assert list(files) == ["01-photo.jpg", "02-photo.jpg", "03-photo.jpg", "04-photo.jpg"]
    stored = [await stored_jpeg(runtime, image_id) for image_id in ids]
    assert [data for _, data in files.values()] == stored


async def test_rendering_runs_in_a_worker_thread_under_the_image_limiter(
    clinician, monkeypatch: pytest.MonkeyPatch
):
    seen: list[tuple[bool, int]] = []
    real_render = rendering.render

    def render(jpeg: bytes, edits: Any, **kwargs: Any) -> bytes:
        seen.append((threading.current_thread() is threading.main_thread(), IMAGE_WORK.borrowed_tokens))
        return real_render(jpeg, edits, **kwargs)

    monkeypatch.setattr(rendering, "render", render)
    session = await start_session(clinician)
    [image_id] = await add_photos(clinician, session["id"], [("cat.jpg", None)])
    patched = await clinician.patch(
        f"/api/sessions/{session['id']}/images/{image_id}", json={"edits": {"rotation": 180}}
    )
    assert patched.status_code == 200
    assert (await download(clinician, session["id"])).status_code == 200
    assert seen == [(False, 1)]  # off the event loop's thread, holding one of IMAGE_WORK's tokens


async def test_no_photos_is_409(clinician):
    session = await start_session(clinician)
    assert_error(await download(clinician, session["id"]), 409, "NoPhotos", "photo")
    assert_error(await download(clinician, "no-such-session"), 404, "SessionNotFound")


async def test_a_committed_session_has_nothing_left_to_download(clinician):
    session = await start_session(clinician)
    await add_photos(clinician, session["id"], [("cat.jpg", None)])
    assert (
        await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    ).status_code == 200
    assert_error(await download(clinician, session["id"]), 409, "NoPhotos", "committed")


async def test_the_zip_is_for_the_clinician_only(clinician, new_client, anonymous, runtime):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    await add_photos(phone, session["id"], [("cat.jpg", None)])
    assert_error(await download(phone, session["id"]), 403, "ClinicianOnly", "clinician")
    assert_error(await download(anonymous, session["id"]), 401)
    async with runtime.sessionmaker() as db:
        rows = (await db.execute(select(AuditEvent).where(AuditEvent.action == "session.downloaded"))).all()
    assert rows == []


async def test_the_file_name_is_safe_whatever_the_encounter_id(clinician):
    session = await start_session(clinician, "Enc.42..Clinic")  # a FHIR id: letters, digits, '-' and '.'
    await add_photos(clinician, session["id"], [("cat.jpg", None)])
    response = await download(clinician, session["id"])
    assert response.headers["content-disposition"] == 'attachment; filename="consultcam-enc-42-clinic.zip"'


@pytest.mark.parametrize(
    ("metadata", "slug"),
    [
        ({"label": "Lesion A"}, "lesion-a"),
        ({"label": "  Mole  #2 (back) "}, "mole-2-back"),
        ({"label": "Ārai — left arm"}, "arai-left-arm"),
        ({"label": "../../etc/passwd"}, "etc-passwd"),
        ({"label": "!!!", "bodySite": ARM}, "upper-arm"),  # nothing left of the label: the body site
        ({"bodySite": ARM}, "upper-arm"),
        ({"bodySite": ARM, "laterality": "right"}, "right-upper-arm"),
        ({"bodySite": ARM, "laterality": "not-applicable"}, "upper-arm"),
        # The words are the data file's, looked up from the code: stored words are never read.
        (
            {
                "bodySite": {"system": SNOMED, "code": "14975008", "display": "Right arm"},
                "laterality": "left",
            },
            "left-forearm",
        ),
        ({"bodySite": {"system": SNOMED, "code": "77568009"}}, "back-of-trunk"),
        (
            {"bodySite": {"system": SNOMED, "code": "818983003"}, "laterality": "bilateral"},
            "bilateral-abdomen",
        ),
        (
            {"bodySite": {"system": SNOMED, "code": "22298006", "display": "Upper arm"}},
            "photo",
        ),  # no body site
        ({"laterality": "left"}, "photo"),
        ({}, "photo"),
        ({"label": "x" * 200}, "x" * 60),
    ],
)
def test_photo_names(metadata: dict[str, Any], slug: str) -> None:
    assert photo_slug(metadata) == slug


def test_slugify_keeps_letters_digits_and_single_hyphens() -> None:
    assert slugify("Enc_2025-01-15 / GP") == "enc-2025-01-15-gp"
    assert slugify("日本語") == ""
    assert slugify("日本語", fallback="session") == "session"
