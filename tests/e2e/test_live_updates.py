"""The desktop's live updates: when the event stream drops, the page says so, reconnects by itself and
catches up on what happened meanwhile (Last-Event-ID replay, then a reload of the session)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Server, shot
from tests.e2e.flows import pair, pairing_url, phone_photo, start_session

pytestmark = pytest.mark.e2e


def _upload_one_file(phone: Page, path: Path) -> None:
    phone.get_by_test_id("file-input").set_input_files(str(path))
    phone.get_by_test_id("upload-all").click()
    expect(phone.get_by_test_id("upload-done")).to_be_visible(timeout=30_000)
    phone.get_by_test_id("take-more").click()


def test_desktop_catches_up_after_the_stream_drops(
    server: Server, desktop_factory, phone_factory, tmp_path: Path
) -> None:
    desktop = desktop_factory(server)
    start_session(desktop, server, encounter="enc-live-1")
    phone = phone_factory()
    pair(phone, pairing_url(desktop))
    live = desktop.get_by_test_id("live-status")
    expect(live).to_have_text("Live")
    items = desktop.get_by_test_id("gallery").locator("figure[data-image-id]")
    photo = tmp_path / "photo.jpg"
    phone_photo(photo, "coffee.jpg", orientation=1, size=(1200, 800))

    # 1. The network drops: the page shows it is not live, and a photo uploaded meanwhile does not appear.
    desktop.context.set_offline(True)
    expect(live).not_to_have_text("Live", timeout=20_000)
    shot(desktop, "desktop-7-reconnecting")
    _upload_one_file(phone, photo)
    time.sleep(1.0)
    expect(items).to_have_count(0)

    # The network comes back: the page reconnects by itself and the photo appears without a reload.
    desktop.context.set_offline(False)
    expect(live).to_have_text("Live", timeout=20_000)
    expect(items).to_have_count(1)
    expect(items.first).to_have_attribute("data-loaded", "true")

    # 2. The stream is cut while the network stays up (a proxy timeout, a server restart): same result.
    desktop.evaluate("window.__consultcam.events.pause()")
    expect(live).to_have_text("Reconnecting…")
    _upload_one_file(phone, photo)
    phone.get_by_test_id("camera-capture").click()
    phone.get_by_test_id("upload-all").click()
    expect(phone.get_by_test_id("upload-done")).to_be_visible(timeout=30_000)
    time.sleep(1.0)
    expect(items).to_have_count(1)
    desktop.evaluate("window.__consultcam.events.resume()")
    expect(live).to_have_text("Live")
    expect(items).to_have_count(3)
    for index in range(3):
        expect(items.nth(index)).to_have_attribute("data-loaded", "true")
    shot(desktop, "desktop-8-caught-up")
