"""The phone when things are not simple: no camera, a failing network, a full session, retakes."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Route, expect

from tests.e2e.conftest import Server
from tests.e2e.flows import pairing_url, phone_photo, start_session
from tests.e2e.test_phone_capture import describe_photo, pair, shots

pytestmark = pytest.mark.e2e

REFUSE_CAMERA = """
navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
"""


def test_camera_refused_falls_back_to_files(
    server: Server, desktop_factory, phone_factory, tmp_path: Path
) -> None:
    desktop = desktop_factory(server)
    start_session(desktop, server, encounter="enc-nocamera-1")
    phone = phone_factory(camera=False)
    phone.add_init_script(REFUSE_CAMERA)
    pair(phone, pairing_url(desktop))

    viewfinder = phone.locator("#viewfinder")
    expect(viewfinder).to_have_attribute("data-state", "unavailable")
    expect(viewfinder).to_contain_text("Camera access was refused")
    expect(phone.get_by_test_id("camera-capture")).to_be_disabled()
    shots(phone, "phone-camera-refused", axe="the camera refused")

    picked = tmp_path / "from-files.jpg"
    phone_photo(picked, "cat.jpg", orientation=1, size=(1800, 1200))
    with phone.expect_file_chooser() as chooser:
        viewfinder.get_by_role("button", name="Add photos").click()
    chooser.value.set_files(str(picked))
    expect(phone.get_by_test_id("photo-count")).to_have_text("1 photo")
    phone.get_by_test_id("upload-all").click()
    expect(phone.get_by_test_id("upload-done")).to_be_visible()
    expect(desktop.get_by_test_id("gallery").locator("figure[data-image-id]")).to_have_count(1)


def test_failed_upload_is_retried_and_does_not_stop_the_others(
    server: Server, desktop_factory, phone_factory, tmp_path: Path
) -> None:
    desktop = desktop_factory(server)
    start_session(desktop, server, encounter="enc-retry-1")
    phone = phone_factory()
    pair(phone, pairing_url(desktop))

    big = tmp_path / "big.jpg"  # becomes a ~300 KB upload; the camera frames are ~80 KB
    phone_photo(big, "rocket.jpg", orientation=1, size=(3000, 2000))
    attempts = {"small": 0, "big": 0}
    broken = {"big": True}

    def flaky_store(route: Route) -> None:
        size = len(route.request.post_data_buffer or b"")
        kind = "big" if size > 200_000 else "small"
        attempts[kind] += 1
        if (kind == "small" and attempts["small"] == 1) or (kind == "big" and broken["big"]):
            route.fulfill(
                status=503,
                content_type="application/json",
                body='{"error": "Unavailable", "detail": "The photo store is not answering."}',
            )
        else:
            route.continue_()

    phone.route("**/api/storage/**", flaky_store)
    phone.get_by_test_id("camera-capture").click()
    expect(phone.get_by_test_id("photo-count")).to_have_text("1 photo")
    phone.get_by_test_id("file-input").set_input_files(str(big))
    cards = phone.locator(".photo-card")
    expect(cards.nth(1)).to_have_attribute("data-status", "ready")
    phone.get_by_test_id("upload-all").click()

    # The camera photo's first PUT failed and was retried; the file photo failed three times and waits.
    failed = phone.locator('.photo-card[data-status="failed"]')
    expect(failed).to_have_count(1, timeout=20_000)
    expect(failed).to_contain_text("The photo store is not answering.")
    assert attempts["big"] == 3
    assert attempts["small"] == 2
    expect(cards).to_have_count(1)  # the sent one left the phone
    expect(phone.get_by_test_id("upload-done")).to_be_hidden()
    expect(desktop.get_by_test_id("gallery").locator("figure[data-image-id]")).to_have_count(1)
    shots(phone, "phone-upload-failed", axe="a failed upload")

    broken["big"] = False
    cards.first.get_by_role("button", name="Retry uploading photo 1").click()
    expect(phone.get_by_test_id("upload-done")).to_be_visible()
    expect(desktop.get_by_test_id("gallery").locator("figure[data-image-id]")).to_have_count(2)


def test_full_session_retake_and_delete(
    server_factory, desktop_factory, phone_factory, tmp_path: Path
) -> None:
    small = server_factory(CONSULTCAM_MAX_IMAGES="3")
    desktop = desktop_factory(small)
    start_session(desktop, small, encounter="enc-full-1")
    phone = phone_factory()
    pair(phone, pairing_url(desktop))
    shutter = phone.get_by_test_id("camera-capture")
    count = phone.get_by_test_id("photo-count")
    for n in (1, 2, 3):
        shutter.click()
        expect(count).to_have_text(f"{n} photo{'s' if n > 1 else ''}")

    # Full: no more photos, and the phone says why.
    expect(shutter).to_be_disabled()
    expect(phone.locator("#capture-capacity")).to_contain_text("This session is full (3 photos)")
    shots(phone, "phone-camera-full", axe="the camera screen of a full session")

    # Delete one; retake another in place.
    phone.locator("#review-btn").click()
    describe_photo(phone, 2, label="Keep this label")
    phone.get_by_role("button", name="Delete photo 3").click()
    expect(phone.locator(".photo-card")).to_have_count(2)
    phone.get_by_role("button", name="Retake photo 2").click()
    expect(phone.locator("#retake-chip")).to_be_visible()
    expect(shutter).to_be_enabled()
    old_src = phone.evaluate("window.__consultcam.state.photos[1].url")
    shutter.click()
    expect(phone.locator("#screen-review")).to_be_visible()
    phone.wait_for_function(
        "old => { const p = window.__consultcam.state.photos[1]; return p.url && p.url !== old; }",
        arg=old_src,
    )
    expect(phone.locator(".photo-card")).to_have_count(2)
    expect(phone.locator(".photo-card").nth(1)).to_contain_text("Keep this label")

    # Two photos fit with one place left: picking two files adds one and says the other did not fit.
    files = []
    for name in ("a.jpg", "b.jpg"):
        phone_photo(tmp_path / name, "coffee.jpg", orientation=1, size=(1200, 800))
        files.append(str(tmp_path / name))
    phone.get_by_test_id("file-input").set_input_files(files)
    expect(phone.locator(".photo-card")).to_have_count(3)
    expect(phone.locator("#review-capacity")).to_contain_text("1 photo was not added")

    phone.get_by_test_id("upload-all").click()
    expect(phone.get_by_test_id("upload-done")).to_be_visible()
    expect(desktop.get_by_test_id("gallery").locator("figure[data-image-id]")).to_have_count(3)
    expect(desktop.locator("#capacity-warning")).to_contain_text("This session is full (3 photos)")
    expect(desktop.get_by_test_id("gallery").get_by_label("Label for photo 2")).to_have_value(
        "Keep this label"
    )
    # Full: the phone says so, with the one next step, and offers no "Take more".
    done = phone.get_by_test_id("upload-done")
    expect(done.get_by_role("heading", name="Session full")).to_be_visible()
    expect(done.get_by_test_id("take-more")).to_be_hidden()
