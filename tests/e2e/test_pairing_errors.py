"""QR codes that cannot be used: the phone says why, and what to do, on a page of its own."""

from __future__ import annotations

import re
import secrets
import time

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PATIENT, Server, shot
from tests.e2e.flows import pair, pairing_url, start_session

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
    shot(phone, "phone-error-unknown-code")

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
    shot(second, "phone-error-used-code")

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
    shot(phone, "phone-error-replaced-code")
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
    shot(phone, "phone-error-expired-code")

    desktop.get_by_test_id("new-code").click()
    expect(qr).to_contain_text(re.compile(r"Code expires in 0:(30|2\d)"))
    expect(desktop.locator("#qr-overlay")).to_be_hidden()
    pair(phone, pairing_url(desktop))
    expect(desktop.get_by_test_id("phone-status")).to_contain_text("Phone connected")
