"""The main job in real Chromium: pair by the QR link, capture by camera and by file, upload, watch the
photos arrive on the desktop, commit, and check the FHIR Bundle that reached the outbox."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
from fhir.resources.R4B.bundle import Bundle
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.conftest import PATIENT, Server, shot
from tests.e2e.flows import decode_jpeg, pairing_url, phone_photo, start_session
from tests.e2e.test_phone_capture import describe_photo, pair, shots

pytestmark = pytest.mark.e2e

MAX_EDGE = 2048
MAX_BYTES = 1024 * 1024


def _difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two pictures at 256×256 greyscale (0 = identical, 255 = opposite)."""
    size = (256, 256)
    left = np.asarray(a.convert("L").resize(size), dtype=np.float32)
    right = np.asarray(b.convert("L").resize(size), dtype=np.float32)
    return float(np.abs(left - right).mean())


def test_pair_capture_upload_commit(server: Server, desktop_factory, phone_factory, tmp_path: Path) -> None:
    desktop = desktop_factory(server)
    expect(desktop.get_by_role("heading", name="Start a photo session")).to_be_visible()
    shot(desktop, "desktop-1-start-form")

    encounter = f"enc-{uuid.uuid4().hex[:8]}"
    start_session(desktop, server, encounter=encounter)
    banner = desktop.get_by_test_id("patient-banner")
    expect(banner).to_contain_text(PATIENT["name"])
    expect(banner).to_contain_text("ZZZ0016")
    expect(desktop.get_by_role("img", name="QR code for pairing the phone").locator("svg")).to_be_visible()
    expect(desktop.get_by_test_id("qr")).to_contain_text(re.compile(r"Code expires in (10:00|9:5\d)"))
    expect(desktop.get_by_test_id("phone-status")).to_have_text("Waiting for phone…")
    expect(desktop.get_by_test_id("live-status")).to_have_text("Live")
    shot(desktop, "desktop-2-waiting-for-phone")

    # Pair: the phone opens the link the QR code carries and shows the patient it is bound to.
    url = pairing_url(desktop)
    assert url.startswith(f"{server.url}/m/")
    phone = phone_factory()
    pair(phone, url)
    phone_banner = phone.get_by_test_id("patient-banner")
    expect(phone_banner).to_contain_text(PATIENT["name"])
    expect(phone_banner).to_contain_text("ZZZ0016")
    expect(phone_banner).to_contain_text("9 Mar 1984")
    expect(desktop.get_by_test_id("phone-status")).to_contain_text(
        re.compile(r"Phone connected · Chrome on Android phone · \d{1,2}:\d{2}")
    )
    expect(desktop.get_by_test_id("qr")).to_be_hidden()  # the code is spent
    expect(phone.locator("#viewfinder")).to_have_attribute("data-state", "live")
    shots(phone, "phone-1-camera", axe="the camera")
    shot(desktop, "desktop-3-phone-connected")

    # Capture twice with the camera.
    shutter = phone.get_by_test_id("camera-capture")
    count = phone.get_by_test_id("photo-count")
    shutter.click()
    expect(count).to_have_text("1 photo")
    expect(shutter).to_be_enabled()
    shutter.click()
    expect(count).to_have_text("2 photos")
    expect(phone.get_by_test_id("upload-all")).to_be_visible()
    shots(phone, "phone-2-two-taken", axe="two photos taken")

    # And a 12-megapixel photo from the files, stored sideways with EXIF Orientation 6 and GPS tags.
    picked = tmp_path / "IMG_4032.jpg"
    upright = phone_photo(picked, "rocket.jpg", orientation=6)
    with Image.open(picked) as raw:
        assert raw.size == (4032, 3024)
        assert raw.getexif()[0x0112] == 6
        assert raw.getexif().get_ifd(0x8825)
    phone.get_by_test_id("file-input").set_input_files(str(picked))
    expect(count).to_have_text("3 photos")
    cards = phone.locator(".photo-card")
    expect(cards).to_have_count(3)
    for index in range(3):
        expect(cards.nth(index)).to_have_attribute("data-status", "ready", timeout=20_000)
    # Details with the chips: the body site is required to commit (CONSULTCAM_REQUIRED_METADATA default).
    describe_photo(
        phone, 1, label="Fundus, left eye", side="Left", site="Eye region", view="Close-up", apply_to_all=True
    )
    describe_photo(phone, 3, label="Rocket, from files")
    expect(cards.nth(0)).to_contain_text("Left eye region · Close-up · Fundus, left eye")
    shots(phone, "phone-3-review", axe="the review")

    # Upload all, then each photo shows on the desktop without a reload.
    blob_urls = phone.evaluate("window.__consultcam.state.photos.map(p => p.url)")
    assert len(blob_urls) == 3
    assert all(url.startswith("blob:") for url in blob_urls)
    phone.get_by_test_id("upload-all").click()
    expect(phone.get_by_test_id("upload-done")).to_be_visible(timeout=30_000)
    expect(phone.get_by_test_id("upload-done")).to_contain_text("3 photos sent")
    shots(phone, "phone-4-sent", axe="photos sent")
    # Nothing is kept on the phone: no photos in memory, no blob: images, and the object URLs are revoked.
    assert phone.evaluate("window.__consultcam.state.photos.length") == 0
    assert phone.locator('img[src^="blob:"]').count() == 0
    revoked = phone.evaluate(
        "urls => Promise.all(urls.map(u => fetch(u).then(() => 'alive', () => 'revoked')))", blob_urls
    )
    assert revoked == ["revoked"] * 3
    assert phone.locator("a[download]").count() == 0

    gallery = desktop.get_by_test_id("gallery")
    items = gallery.locator("figure[data-image-id]")
    expect(items).to_have_count(3)
    for index in range(3):
        expect(items.nth(index)).to_have_attribute("data-loaded", "true")
    # In the order they were taken, as numbered on the phone, with the labels given there.
    expect(gallery.get_by_label("Label for photo 1")).to_have_value("Fundus, left eye")
    expect(gallery.get_by_label("Label for photo 3")).to_have_value("Rocket, from files")
    expect(items.nth(2)).to_contain_text("1536 × 2048")
    expect(desktop.get_by_test_id("commit")).to_have_text("Commit 3 photos")
    # Fixed boxes: a portrait photo takes the same space as a landscape one, so nothing moves as they arrive.
    boxes = [items.nth(i).locator(".g-thumb").bounding_box() for i in range(3)]
    for box in boxes:
        assert box is not None
        assert abs(box["width"] - boxes[0]["width"]) < 1, boxes
        assert abs(box["height"] - box["width"] * 3 / 4) < 1, boxes
    shot(desktop, "desktop-4-gallery")

    # Commit through the confirmation dialog.
    desktop.get_by_test_id("commit").click()
    dialog = desktop.get_by_test_id("commit-confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(PATIENT["name"])
    shot(desktop, "desktop-5-commit-confirm")
    dialog.get_by_role("button", name="Commit 3 photos").click()
    result = desktop.get_by_test_id("commit-result")
    expect(result).to_be_visible(timeout=30_000)
    expect(result).to_contain_text(f"3 photos saved to {PATIENT['name']}'s record")
    expect(result.locator(".result-item.is-ok")).to_have_count(3)
    expect(result.locator(".result-item").first).to_contain_text("Photo 1 · Fundus, left eye")
    expect(result.locator(".result-item").last).to_contain_text("Photo 3 · Rocket, from files")
    expect(desktop.locator("#session-status")).to_have_text("Committed")
    # Not launched from an EMR: the next session starts here.
    expect(desktop.get_by_role("link", name="Start a new session")).to_be_visible()
    shot(desktop, "desktop-6-committed")

    # The phone is told, and drops everything.
    final = phone.get_by_test_id("final-screen")
    expect(final).to_be_visible()
    expect(final).to_contain_text("Saved to the record")
    expect(phone.get_by_test_id("patient-banner")).to_contain_text(PATIENT["name"])
    shots(phone, "phone-5-committed", axe="committed")

    _check_bundle(server, encounter, upright)


def _check_bundle(server: Server, encounter: str, upright: Image.Image) -> None:
    """The outbox holds one valid FHIR R4 transaction Bundle with one Media per photo: JPEG, no EXIF,
    upright, long edge ≤ 2048 px, ≤ 1 MB, hashed."""
    # The shared server commits other sessions too: this one's file carries its encounter id.
    files = [path for path in server.outbox() if f"-{encounter}-" in path.name]
    assert len(files) == 1, files
    bundle = Bundle.model_validate_json(files[0].read_text())
    assert bundle.type == "transaction"
    media = [entry.resource for entry in bundle.entry]
    assert [m.get_resource_type() for m in media] == ["Media"] * 3

    by_label: dict[str, tuple[object, Image.Image, bytes]] = {}
    for resource in media:
        content = resource.content
        data = content.data if isinstance(content.data, bytes) else base64.b64decode(content.data)
        assert content.contentType == "image/jpeg"
        assert content.size == len(data) <= MAX_BYTES
        digest = content.hash if isinstance(content.hash, bytes) else base64.b64decode(content.hash)
        assert digest == hashlib.sha1(data).digest()  # FHIR R4 Attachment.hash is SHA-1
        image = decode_jpeg(data)
        assert image.format == "JPEG"
        assert max(image.size) <= MAX_EDGE
        assert (resource.width, resource.height) == image.size
        assert "exif" not in image.info, "EXIF must be stripped"
        assert len(image.getexif()) == 0
        assert b"Exif\x00\x00" not in data
        assert resource.subject.display == PATIENT["name"]
        notes = " ".join(note.text for note in resource.note or [])
        label = (
            "Rocket, from files" if "Rocket" in notes else "Fundus, left eye" if "Fundus" in notes else "none"
        )
        by_label.setdefault(label, (resource, image, data))

    assert set(by_label) == {"Rocket, from files", "Fundus, left eye", "none"}, by_label.keys()

    # The file-picked photo: portrait after Orientation 6, at the size limit, and the right way up.
    _, picked, _ = by_label["Rocket, from files"]
    assert picked.size == (1536, 2048)
    assert picked.height > picked.width
    right_way = _difference(picked, upright)
    for wrong in (
        upright.transpose(Image.Transpose.ROTATE_180),
        upright.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    ):
        assert right_way < 12 < _difference(picked, wrong), (right_way, _difference(picked, wrong))

    # The camera photos: the fake camera's 1280×960 frames of the fundus photograph.
    _, camera, _ = by_label["Fundus, left eye"]
    assert camera.size == (1280, 960)
    red, green, _ = np.asarray(camera.convert("RGB"), dtype=np.float32)[400:560, 560:720].mean(axis=(0, 1))
    assert red > green + 40, "the fundus is red-orange in the middle of the frame"
