"""QR codes that cannot be used: the phone says why, and what to do, on a page of its own."""

from __future__ import annotations

import re
import secrets
import time

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PATIENT, PHOTOS, Server, shot
from tests.e2e.flows import pairing_url, start_session
from tests.e2e.test_phone_capture import pair, shots

pytestmark = pytest.mark.e2e

SCAN_AGAIN = "Ask for a new code on the desktop and scan it again."


def _expect_error_page(phone: Page, title: str, next_step: str = SCAN_AGAIN) -> None:
    screen = phone.get_by_test_id("error-screen")
    expect(screen).to_be_visible()
    expect(screen.get_by_role("heading", level=1)).to_have_text(title)
    expect(screen).to_contain_text(next_step)
    # An unusable code reveals nothing about any patient, and offers no camera.
    expect(phone.get_by_test_id("patient-banner")).to_be_hidden()
    expect(phone.get_by_test_id("camera-capture")).to_be_hidden()


def test_unknown_code(server: Server, phone_factory) -> None:
    phone = phone_factory()
    phone.goto(f"{server.url}/m/{secrets.token_urlsafe(32)}")
    _expect_error_page(phone, "This code isn't recognised")
    shots(phone, "phone-error-unknown-code", axe="the unknown code error")

    phone.goto(f"{server.url}/m/short")  # a truncated link
    _expect_error_page(phone, "This code isn't recognised")


def test_used_code(server: Server, desktop_factory, phone_factory) -> None:
    desktop = desktop_factory(server)
    start_session(desktop, server, encounter="enc-used-1")
    url = pairing_url(desktop)
    first = phone_factory()
    pair(first, url)

    second = phone_factory()
    second.goto(url)
    _expect_error_page(second, "This code has already been used")
    shots(second, "phone-error-used-code", axe="the used code error")

    # The phone that paired can reload its page and carry on (it is the same phone, not a second one).
    first.reload()
    expect(first.get_by_test_id("camera-capture")).to_be_visible()
    expect(first.get_by_test_id("patient-banner")).to_contain_text(PATIENT["name"])


def test_replaced_code(server: Server, desktop_factory, phone_factory) -> None:
    desktop = desktop_factory(server)
    start_session(desktop, server, encounter="enc-replaced-1")
    old = pairing_url(desktop)
    desktop.get_by_test_id("new-code").click()
    expect(desktop.get_by_test_id("qr")).not_to_contain_text(old)
    new = pairing_url(desktop)
    assert new != old

    phone = phone_factory()
    phone.goto(old)
    _expect_error_page(phone, "This code was replaced", "Scan the code now shown on the desktop.")
    shots(phone, "phone-error-replaced-code", axe="the replaced code error")
    pair(phone, new)
    expect(desktop.get_by_test_id("phone-status")).to_contain_text("Phone connected")


def test_expired_code(server_factory, desktop_factory, phone_factory) -> None:
    """With a 30-second code life: the desktop counts down to "Code expired", the phone refuses the old
    code, and "New code" makes one that works."""
    short = server_factory(CONSULTCAM_PAIRING_TTL_SECONDS="30")
    desktop = desktop_factory(short)
    started = time.monotonic()
    start_session(desktop, short, encounter="enc-expired-1")
    qr = desktop.get_by_test_id("qr")
    expect(qr).to_contain_text(re.compile(r"Code expires in 0:(30|2\d)"))
    url = pairing_url(desktop)
    expect(desktop.locator("#qr-overlay")).to_be_visible(timeout=40_000)
    expect(desktop.locator("#qr-overlay")).to_contain_text("Code expired")
    expect(qr).to_have_attribute("data-state", "expired")
    expect(desktop.get_by_test_id("new-code")).to_be_enabled()
    shot(desktop, "desktop-9-code-expired")

    time.sleep(max(0.0, 31 - (time.monotonic() - started)))
    phone = phone_factory()
    phone.goto(url)
    _expect_error_page(phone, "This code has expired")
    shots(phone, "phone-error-expired-code", axe="the expired code error")

    desktop.get_by_test_id("new-code").click()
    expect(qr).to_contain_text(re.compile(r"Code expires in 0:(30|2\d)"))
    expect(desktop.locator("#qr-overlay")).to_be_hidden()
    pair(phone, pairing_url(desktop))
    expect(desktop.get_by_test_id("phone-status")).to_contain_text("Phone connected")


def test_code_of_a_committed_session(server: Server, desktop_factory, phone_factory, tmp_path) -> None:
    """A code shown before the session was committed, scanned after: the phone says the session has ended,
    shows no patient, and says what to do."""
    desktop = desktop_factory(server)
    session_id = start_session(desktop, server, encounter="enc-committed-code")
    url = pairing_url(desktop)
    data = _jpeg(tmp_path)
    with server.api() as api:
        api.put(f"/api/sessions/{session_id}/consent", json={"scope": "clinical", "givenBy": "patient"})
        target = api.post(
            f"/api/sessions/{session_id}/uploads", json={"contentType": "image/jpeg", "sizeBytes": len(data)}
        ).json()
        put_url = (
            target["uploadUrl"]
            if target["uploadUrl"].startswith("http")
            else server.url + target["uploadUrl"]
        )
        httpx.request(target["method"], put_url, content=data, headers=target["headers"]).raise_for_status()
        site = {"system": "http://snomed.info/sct", "code": "89545001", "display": "Face structure"}
        api.post(
            f"/api/sessions/{session_id}/images",
            json={"imageId": target["imageId"], "metadata": {"bodySite": site}},
        ).raise_for_status()
        assert api.post(f"/api/sessions/{session_id}/commit", json={"all": True}).status_code == 200

    phone = phone_factory()
    phone.goto(url)
    _expect_error_page(phone, "This session has ended", "ask the clinician to start a new session")
    shots(phone, "phone-error-session-committed", axe="the session committed error")


def _jpeg(tmp_path) -> bytes:
    path = tmp_path / "photo.jpg"
    Image.open(PHOTOS / "cat.jpg").convert("RGB").resize((1200, 800)).save(path, "JPEG", quality=85)
    return path.read_bytes()
