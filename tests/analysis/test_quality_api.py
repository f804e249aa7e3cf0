"""Quality figures are stored at registration: what the desktop and the phone show right after capture."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageFilter

from tests.conftest import PHOTOS, pair_phone, start_session, upload


def phone_jpeg(name: str, *, blur: float = 0, exposure: float = 1) -> bytes:
    """A sample photo as a phone sends it (2048 px long edge, JPEG), optionally blurred or darkened."""
    with Image.open(PHOTOS / name) as source:
        image = source.convert("RGB")
    scale = 2048 / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    if exposure != 1:
        image = image.point(lambda v: min(255, round(v * exposure)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.mark.parametrize(
    ("variant", "warnings"),
    [({}, []), ({"blur": 4}, ["blurry"]), ({"exposure": 0.25}, ["dark"])],
    ids=["sharp", "blurred", "darkened"],
)
async def test_registration_stores_the_quality_warnings(clinician, new_client, variant, warnings):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)

    registered = await upload(phone, session["id"], phone_jpeg("coffee.jpg", **variant))

    assert registered.status_code == 201, registered.text
    quality = registered.json()["quality"]
    assert quality["warnings"] == warnings
    assert (quality["width"], quality["height"]) == (2048, 1365)
    listed = (await clinician.get(f"/api/sessions/{session['id']}/images")).json()["images"]
    assert listed[0]["quality"] == quality
