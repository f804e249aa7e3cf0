"""Steps a user takes, shared by the end-to-end tests."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PATIENT, PHOTOS, Server

PAIRING_URL = re.compile(r"https?://\S+/m/[A-Za-z0-9_-]{16,}")


def start_session(
    desktop: Page, server: Server, patient: dict[str, str] = PATIENT, encounter: str | None = None
) -> str:
    """Fill in the start form on `/` and return the new capture session id."""
    desktop.goto(f"{server.url}/")
    desktop.get_by_label("Patient name").fill(patient["name"])
    desktop.get_by_label("NHI number").fill(patient["nhi"])
    desktop.get_by_label("Date of birth").fill(patient["birthDate"])
    if encounter:
        desktop.get_by_label("Encounter ID").fill(encounter)
    desktop.get_by_test_id("start-session").click()
    desktop.wait_for_url(re.compile(r"/sessions/[^/]+$"))
    return desktop.url.rsplit("/", 1)[1]


def pairing_url(desktop: Page) -> str:
    """The pairing link as the QR panel shows it in text."""
    qr = desktop.get_by_test_id("qr")
    expect(qr).to_contain_text("/m/")
    match = PAIRING_URL.search(qr.inner_text())
    assert match, qr.inner_text()
    return match.group(0)


def pair(phone: Page, url: str, *, consent: bool = True) -> None:
    """Open the QR link on the phone and wait until it shows the camera screen; when the phone asks for
    consent first (CONSULTCAM_CONSENT_REQUIRED), give it with the defaults (`consent=False`: stop there)."""
    phone.goto(url)
    accept, shutter = phone.get_by_test_id("consent-accept"), phone.get_by_test_id("camera-capture")
    expect(accept.or_(shutter).filter(visible=True)).to_be_visible()  # both are in the page; one is shown
    if accept.is_visible():
        if not consent:
            return
        accept.click()
    expect(shutter).to_be_visible()


def phone_photo(
    path: Path, source: str = "rocket.jpg", orientation: int = 6, size: tuple[int, int] = (4032, 3024)
) -> Image.Image:
    """Write a 12-megapixel JPEG as a phone camera does: landscape sensor pixels, EXIF Orientation and GPS.

    Returns the upright picture a viewer should show (the display image). For orientation 6 the stored
    pixels are the display image turned 90° anticlockwise, and a viewer turns them back clockwise.
    """
    with Image.open(PHOTOS / source) as src:
        upright = src.convert("RGB").resize((size[1], size[0]) if orientation in (6, 8) else size)
    stored = {
        6: upright.transpose(Image.Transpose.ROTATE_90),
        8: upright.transpose(Image.Transpose.ROTATE_270),
        3: upright.transpose(Image.Transpose.ROTATE_180),
    }.get(orientation, upright)
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestPhone"
    exif[0x0110] = "TestPhone 12"
    gps = exif.get_ifd(0x8825)
    gps.update({1: "S", 2: (36.0, 50.0, 30.0), 3: "E", 4: (174.0, 45.0, 50.0)})
    stored.save(path, "JPEG", quality=90, exif=exif)
    return upright


def decode_jpeg(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def record_consent(
    server: Server, session_id: str, scope: str = "clinical", given_by: str = "patient"
) -> None:
    """Record the patient's consent as the clinician (PUT …/consent), as the desktop's dialog does."""
    with server.api() as client:
        response = client.put(
            f"/api/sessions/{session_id}/consent", json={"scope": scope, "givenBy": given_by}
        )
    assert response.status_code == 200, response.text


def add_photo(server: Server, session_id: str, data: bytes, metadata: dict[str, Any] | None = None) -> dict:
    """Put a photo into the session as the clinician through the HTTP API (uploads → PUT → images)."""
    with server.api() as client:
        target = client.post(
            f"/api/sessions/{session_id}/uploads", json={"contentType": "image/jpeg", "sizeBytes": len(data)}
        )
        assert target.status_code == 201, target.text
        upload = target.json()
        url = (
            upload["uploadUrl"]
            if upload["uploadUrl"].startswith("http")
            else server.url + upload["uploadUrl"]
        )
        put = httpx.request(upload["method"], url, content=data, headers=upload["headers"], timeout=10)
        assert put.status_code < 300, put.text
        body: dict[str, Any] = {"imageId": upload["imageId"]}
        if metadata:
            body["metadata"] = metadata
        registered = client.post(f"/api/sessions/{session_id}/images", json=body)
    assert registered.status_code == 201, registered.text
    return registered.json()
