"""End-to-end fixtures: the real `consultcam serve` in a subprocess, Debian's Chromium driven by Playwright
with a fake camera fed a real photo, a phone context (mobile emulation) and a desktop context.

Screenshots of every screen go to test-artifacts/screenshots/ (gitignored) to be looked at.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.e2e.harness import ROOT, Server, launch_chromium, start_server

PHOTOS = ROOT / "tests" / "photos"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"

PHONE_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36"
)
PATIENT = {"name": "Aroha Ngata", "nhi": "ZZZ0016", "birthDate": "1984-03-09"}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shared server on the embedded defaults."""
    srv = start_server(tmp_path_factory.mktemp("consultcam"))
    yield srv
    srv.stop()


@pytest.fixture
def server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Start extra servers with other settings (e.g. a short pairing TTL); stopped after the test."""
    started: list[Server] = []

    def make(**env: str) -> Server:
        srv = start_server(tmp_path_factory.mktemp("consultcam-extra"), **env)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def camera_feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake camera's input: the real fundus photo as a 4:3 MJPEG, as shared/photos/README.md describes."""
    out = tmp_path_factory.mktemp("camera") / "camera.mjpeg"
    subprocess.run(
        [
            shutil.which("ffmpeg") or "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-loop",
            "1",
            "-i",
            str(PHOTOS / "fundus-left-eye.jpg"),
            "-t",
            "2",
            "-r",
            "10",
            "-vf",
            "scale=-2:960,pad=1280:960:(ow-iw)/2:0:black",
            "-q:v",
            "3",
            str(out),
        ],
        check=True,
    )
    return out


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright, camera_feed: Path) -> Iterator[Browser]:
    browser = launch_chromium(playwright, camera_feed)
    yield browser
    browser.close()


def new_desktop(browser: Browser, server: Server) -> Page:
    """A 1280×800 desktop page signed in through the login link `consultcam serve` prints."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, locale="en-NZ", timezone_id="Pacific/Auckland"
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{server.url}/login?token={server.token}")
    return page


def new_phone(browser: Browser, *, camera: bool = True) -> Page:
    """A 360×740 Android phone with the camera permission granted (or not)."""
    context = browser.new_context(
        viewport={"width": 360, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        user_agent=PHONE_UA,
        locale="en-NZ",
        timezone_id="Pacific/Auckland",
        permissions=["camera"] if camera else [],
    )
    context.set_default_timeout(15_000)
    return context.new_page()


@pytest.fixture
def contexts() -> Iterator[list[BrowserContext]]:
    """Contexts opened by a test, closed after it."""
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        with contextlib.suppress(Exception):
            context.close()


@pytest.fixture
def desktop_factory(browser: Browser, contexts: list[BrowserContext]) -> object:
    def make(srv: Server) -> Page:
        page = new_desktop(browser, srv)
        contexts.append(page.context)
        return page

    return make


@pytest.fixture
def phone_factory(browser: Browser, contexts: list[BrowserContext]) -> object:
    def make(*, camera: bool = True) -> Page:
        page = new_phone(browser, camera=camera)
        contexts.append(page.context)
        return page

    return make


def shot(page: Page, name: str, *, full_page: bool = False) -> Path:
    """Save a screenshot of the page as test-artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled", caret="hide")
    return path
